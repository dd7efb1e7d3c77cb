"""Training runs as separate processes: start, watch, stop, list.

A run is `python -m train.stage1|stage2 --config RUN/request.yaml` in its own process group, with
stdout and stderr going straight to `RUN/console.log` (so the run's output survives the app, and
the app survives the run). The options are the recipe's own: a builder the app passes in
(train.config.run_config) validates them into the stage's config dataclass before any process
starts, and that config writes `RUN/request.yaml`. `RUN/run.json` records the command, the config,
the pid and, once it has ended, the exit code and whether it was stopped. The training recipe
writes `RUN/metrics.jsonl` (one JSON object per line: step, loss, lr, eval metrics); the app reads
it for the live plot and the run list.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
LOG_FILE = "console.log"  # the recipe itself writes train.log (its logger) beside it
RUN_FILE = "run.json"
REQUEST_FILE = "request.yaml"  # the validated options the recipe starts from (--config)
METRICS_FILE = "metrics.jsonl"
STOP_GRACE_S = 10.0
NOT_METRICS = {"step", "epoch", "lr", "time", "elapsed_s", "total_steps", "max_steps", "samples", "tokens",
               "samples_per_s"}


class RunError(RuntimeError):
    """A run that cannot be started or found; the message says why."""


class RunConfig(Protocol):
    """A recipe's validated options: train.config's Stage1Config / Stage2Config."""

    stage: int
    out: str

    def to_dict(self) -> dict: ...

    def save(self, path: str | Path) -> None: ...


# (stage, options by field name) -> the validated config; raises ValueError naming the bad option.
# The app passes train.config.run_config: core never imports train/, and declares no option itself.
ConfigBuilder = Callable[[int, dict], RunConfig]


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
        if self.state == "finished" and set(self.last) <= {"loss"}:
            bits.append("not evaluated (no validation samples)")
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
            if k not in NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
                last[k] = v  # (NaN, a metric not computed, is left out)
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

    def start(self, stage: int, options: dict, run_config: ConfigBuilder) -> Path:
        """Start `python -m train.stage{stage}` on `options` (the recipe's option names; `out` is
        the run folder), once `run_config` has validated them."""
        try:
            config = run_config(stage, options)
        except ValueError as err:
            raise RunError(f"cannot start a stage-{stage} run: {err}") from None
        with self._lock:
            busy = [n for n, p in self._procs.items() if p.poll() is None]
            if busy:
                raise RunError(f"run {busy[0]} is still going; stop it first")
            run_dir = Path(config.out)
            if (run_dir / RUN_FILE).exists():
                raise RunError(f"{run_dir.name} already exists; choose another run name")
            run_dir.mkdir(parents=True, exist_ok=True)
            config.save(run_dir / REQUEST_FILE)
            cmd = [self.python, "-m", f"train.stage{config.stage}", "--config", str(run_dir / REQUEST_FILE)]
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
            info = {"command": cmd, "pid": proc.pid, "stage": config.stage, "request": _jsonable(config.to_dict()),
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
        request = info.get("request") or {}
        # the steps the run stops at: its max_steps when it has one (the schedule may be longer)
        total = request.get("max_steps") or next((int(r[k]) for r in reversed(rows) for k in ("max_steps", "total_steps")
                                                  if isinstance(r.get(k), (int, float)) and r[k]), None)
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
