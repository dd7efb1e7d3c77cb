"""Training runs as separate processes: start, watch, stop, list.

A run is `python -m train.stage1|stage2 ...` in its own process group, with stdout and stderr
going straight to `RUN/console.log` (so the run's output survives the app, and the app survives
the run). `RUN/run.json` records the command, pid and, once it has ended, the exit code and
whether it was stopped. The training recipe writes `RUN/metrics.jsonl` (one JSON object per
line: step, loss, lr, eval metrics); the app reads it for the live plot and the run list.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
LOG_FILE = "console.log"  # the recipe itself writes train.log (its logger) beside it
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
STOP_GRACE_S = 10.0
NOT_METRICS = {"step", "epoch", "lr", "time", "elapsed_s", "total_steps", "max_steps", "samples", "tokens",
               "samples_per_s"}


class RunError(RuntimeError):
    """A run that cannot be started or found; the message says why."""


@dataclass
class RunRequest:
    """What the Train tab asks for; `command()` turns it into the recipe's command line."""

    stage: int
    data: str
    out: str
    epochs: int = 1
    lr: float | None = None
    max_steps: int = 0
    experiment: int | None = 1  # stage 1 preset; None: the explicit Q-Former settings below
    qformer_parts: tuple[str, ...] = ()
    qformer_r: int | None = None
    qformer_alpha: int | None = None
    llm_part: str | None = None  # stage 2 default "all"
    llm_r: int | None = None
    init: str | None = None  # stage 2: the stage-1 run folder
    negative_share: float | None = None  # stage 2: impossible questions repeated up to this share
    base: str | None = None
    tiny: bool = False
    extra: dict = field(default_factory=dict)  # any other recipe option, e.g. {"batch_size": 2}

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise RunError(f"stage must be 1 or 2, got {self.stage}")
        if self.stage == 2 and not self.init:
            raise RunError("stage 2 starts from a stage-1 run: choose one")
        if self.epochs < 1:
            raise RunError("epochs must be at least 1")
        if self.max_steps < 0:
            raise RunError("max steps must be 0 (no limit) or more")
        if self.lr is not None and not self.lr > 0:
            raise RunError("the learning rate must be > 0")
        if self.base and self.tiny:
            raise RunError("choose a base model or the tiny smoke-test base, not both")
        if self.negative_share is not None:
            if self.stage != 2:
                raise RunError("the impossible-question share is a stage-2 setting")
            if not 0 < self.negative_share < 1:
                raise RunError(f"the impossible-question share must be between 0 and 1, got {self.negative_share}")

    def command(self, python: str = sys.executable) -> list[str]:
        cmd = [python, "-m", f"train.stage{self.stage}", "--data", str(self.data), "--out", str(self.out),
               "--epochs", str(self.epochs), "--progress", "false"]
        if self.lr is not None:
            cmd += ["--lr", repr(float(self.lr))]
        if self.max_steps:
            cmd += ["--max-steps", str(self.max_steps)]
        if self.stage == 1:
            if self.experiment is not None:
                cmd += ["--experiment", str(self.experiment)]
            if self.qformer_parts:
                cmd += ["--qformer-parts", ",".join(self.qformer_parts)]
            if self.qformer_r is not None:
                cmd += ["--qformer-r", str(self.qformer_r)]
            if self.qformer_alpha is not None:
                cmd += ["--qformer-alpha", str(self.qformer_alpha)]
        else:
            cmd += ["--init", str(self.init)]
            if self.negative_share is not None:
                cmd += ["--negative-share", repr(float(self.negative_share))]
        if self.llm_part:
            cmd += ["--llm-part", self.llm_part]
        if self.llm_r is not None:
            cmd += ["--llm-r", str(self.llm_r)]
        if self.tiny:
            cmd += ["--tiny"]
        elif self.base:
            cmd += ["--base", str(self.base)]
        for key, value in self.extra.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        return cmd


@dataclass
class RunStatus:
    name: str
    path: str
    state: str  # running | finished | failed | stopped | unknown
    returncode: int | None = None
    step: int = 0
    total_steps: int | None = None
    last: dict = field(default_factory=dict)  # the newest value of each metric
    started: str | None = None
    epoch: float = 0.0
    epochs: int | None = None

    @property
    def progress(self) -> float | None:
        """Done fraction: steps of a step-limited run, else epochs; 1 once it has finished."""
        if self.state == "finished":
            return 1.0
        parts = []
        if self.total_steps:
            parts.append(self.step / self.total_steps)
        if self.epochs:
            parts.append(self.epoch / self.epochs)
        return min(1.0, max(parts)) if parts else None

    def summary(self) -> str:
        bits = [f"**{self.name}**: {self.state}"]
        if self.returncode not in (None, 0) and self.state != "stopped":
            bits.append(f"(exit code {self.returncode})")
        bits.append(f"step {self.step}" + (f"/{self.total_steps}" if self.total_steps else ""))
        bits += [f"{k} {_fmt(v)}" for k, v in self.last.items()]
        return " — ".join([bits[0], ", ".join(bits[1:])]) if len(bits) > 1 else bits[0]


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The run's metrics.jsonl rows; a half-written last line (the run is writing it) is skipped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def latest_metrics(rows: list[dict]) -> dict:
    """The newest value of every numeric metric (loss, eval scores), in first-seen order."""
    last: dict = {}
    for row in rows:
        for k, v in row.items():
            if k not in NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool):
                last[k] = v
    return last


def tail(path: str | Path, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last lines of a text file (carriage-return progress bars reduced to their last state)."""
    path = Path(path)
    if not path.is_file():
        return ""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        text = f.read().decode("utf-8", errors="replace")
    out = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
    return "\n".join(out[-lines:])


class Runner:
    """Starts training processes into `runs_dir`, one at a time, and reports on every run there."""

    def __init__(self, runs_dir: str | Path, python: str = sys.executable) -> None:
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self._procs: dict[str, subprocess.Popen] = {}
        self._stopped: set[str] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ start / stop

    def start(self, request: RunRequest) -> Path:
        with self._lock:
            busy = [n for n, p in self._procs.items() if p.poll() is None]
            if busy:
                raise RunError(f"run {busy[0]} is still going; stop it first")
            run_dir = Path(request.out)
            if (run_dir / RUN_FILE).exists():
                raise RunError(f"{run_dir.name} already exists; choose another run name")
            run_dir.mkdir(parents=True, exist_ok=True)
            cmd = request.command(self.python)
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
            logf = open(run_dir / LOG_FILE, "ab")
            try:
                logf.write(("$ " + " ".join(cmd[1:]) + "\n").encode())
                logf.flush()
                proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as err:
                raise RunError(f"cannot start the training process: {err}") from None
            finally:
                logf.close()
            info = {"command": cmd, "pid": proc.pid, "stage": request.stage, "request": _jsonable(asdict(request)),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S"), "returncode": None, "stopped": False}
            _write_json(run_dir / RUN_FILE, info)
            self._procs[run_dir.name] = proc
        threading.Thread(target=self._watch, args=(run_dir, proc), daemon=True).start()
        log.info("started run %s (pid %d)", run_dir.name, proc.pid)
        return run_dir

    def _watch(self, run_dir: Path, proc: subprocess.Popen) -> None:
        code = proc.wait()
        info = _read_json(run_dir / RUN_FILE)
        info.update(returncode=code, stopped=run_dir.name in self._stopped,
                    ended=time.strftime("%Y-%m-%d %H:%M:%S"))
        _write_json(run_dir / RUN_FILE, info)
        log.info("run %s ended with exit code %s", run_dir.name, code)

    def stop(self, name: str | None = None) -> str:
        """Terminate the run's whole process group (data-loader workers included)."""
        with self._lock:
            running = {n: p for n, p in self._procs.items() if p.poll() is None}
            if name is None and running:
                name = next(iter(running))
            proc = running.get(name or "")
            if proc is None:
                return "No run is going."
            self._stopped.add(name)
        _kill_group(proc)
        return f"Stopped {name}."

    def active(self) -> str | None:
        with self._lock:
            return next((n for n, p in self._procs.items() if p.poll() is None), None)

    def shutdown(self) -> None:
        for name in list(self._procs):
            self.stop(name)

    # ------------------------------------------------------------ reading runs

    def run_dir(self, name: str) -> Path:
        path = (self.runs_dir / name).resolve()
        if path.parent != self.runs_dir.resolve() or not path.is_dir():
            raise RunError(f"no run named {name!r}")
        return path

    def status(self, name: str) -> RunStatus:
        run_dir = self.run_dir(name)
        info = _read_json(run_dir / RUN_FILE)
        rows = read_metrics(run_dir)
        proc = self._procs.get(name)
        code = proc.poll() if proc is not None else info.get("returncode")
        if proc is not None and code is None:
            state = "running"
        elif name in self._stopped or info.get("stopped"):
            state = "stopped"
        elif code is None:
            state = "finished" if (run_dir / "final").is_dir() else "unknown"
        else:
            state = "finished" if code == 0 else "failed"
        steps = [int(r["step"]) for r in rows if isinstance(r.get("step"), (int, float))]
        total = next((int(r[k]) for r in reversed(rows) for k in ("total_steps", "max_steps")
                      if isinstance(r.get(k), (int, float)) and r[k]), None)
        request = info.get("request") or {}
        total = total or request.get("max_steps") or None
        epoch = max((float(r["epoch"]) for r in rows if isinstance(r.get("epoch"), (int, float))), default=0.0)
        return RunStatus(name, str(run_dir), state, code, max(steps, default=0), total, latest_metrics(rows),
                         info.get("started"), epoch, request.get("epochs"))

    def log_tail(self, name: str, lines: int = 40) -> str:
        return tail(self.run_dir(name) / LOG_FILE, lines)

    def metrics(self, name: str) -> list[dict]:
        return read_metrics(self.run_dir(name))

    def list_runs(self) -> list[RunStatus]:
        """Every run folder (newest first), whether started by this app or from a terminal."""
        dirs = [d for d in self.runs_dir.iterdir() if d.is_dir() and
                any((d / f).exists() for f in (RUN_FILE, METRICS_FILE, "final", "config.yaml"))]
        dirs.sort(key=lambda d: d.stat().st_mtime, reverse=True)
        return [self.status(d.name) for d in dirs]

    def adapters(self, name: str) -> Path:
        """The run's best adapters, else its final ones, else its newest checkpoint."""
        run_dir = self.run_dir(name)
        for sub in ("best", "final"):
            if (run_dir / sub / "manifest.json").is_file():
                return run_dir / sub
        ckpts = sorted((run_dir / "checkpoints").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
        if ckpts:
            return ckpts[-1].parent
        raise RunError(f"run {name} has no saved adapters yet")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
