"""The training loop both stages share: run folder, optimizer and schedule, gradient
accumulation, periodic evaluation with best-model selection, checkpoints and exact resume.

Run folder:
    config.yaml                  the resolved configuration
    metrics.jsonl                one line per logged/evaluated step: step, epoch, loss, lr, samples_per_s, val_*
    train.log                    the log
    checkpoints/step-N/          adapters (core.loader.save_adapters) + trainer_state.pt
    best/                        adapters with the best selection metric so far (train.evaluate.selection_key)
    final/                       adapters after the last step

Multi-GPU: `accelerate launch -m train.stage1 ...` runs one process per GPU; accelerate wraps the
model in DDP and places it on the process's GPU; every process reads its own share of each
epoch's shuffled order (data.EpochBatchSampler). Evaluation and saving happen on the main process.
"""
from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from core.device import resolve_device, set_threads
from core.loader import ADAPTERS, save_adapters
from core.lora import load_adapter_state_dict
from core.model import StrokeModel
from train.config import TrainConfig
from train.data import Collator, EpochBatchSampler, model_inputs
from train.evaluate import scalar_metrics, selection_key

log = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.pt"
# Options a resumed run must share with the run it continues (others, e.g. max_steps, may change).
RESUME_KEYS = ("data", "base", "num_frames", "batch_size", "grad_accum", "seed", "epochs", "lr", "schedule",
               "warmup_steps", "precision", "experiment", "qformer_parts", "qformer_r", "qformer_alpha",
               "llm_part", "llm_r", "llm_alpha", "init", "train_qformer", "schedule_steps")


class TrainError(RuntimeError):
    """A problem that stops training, reported without a traceback."""


def error_message(err: Exception) -> str:
    """The message of an error for the command line; an error raised in a data-loader worker
    arrives with the worker's traceback in its text, of which only the last line is kept."""
    text = str(err).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        return last.split(": ", 1)[1] if last.startswith(type(err).__name__ + ": ") else last
    return text


# ---------------------------------------------------------------- setup helpers


def check_output(out: str | Path) -> Path:
    """Create the run folder and prove it is writable (before any slow work)."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise TrainError(f"output folder {path} is not writable ({err.strerror or err})") from None
    return path


def make_accelerator(cfg: TrainConfig) -> tuple[Accelerator, str]:
    """The accelerator (DDP under `accelerate launch`, bf16 autocast on GPU) and the model's device."""
    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    device = resolve_device(cfg.device)  # raises for a GPU that is not there
    mixed = "bf16" if cfg.precision == "bf16" and device.type == "cuda" else "no"
    acc = Accelerator(cpu=cpu, mixed_precision=mixed, device_placement=False)
    if acc.num_processes > 1 or cfg.device == "auto":
        return acc, str(acc.device)
    return acc, str(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_logging(run_dir: Path, main_process: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root.setLevel(logging.INFO)
    if main_process:
        target = str((run_dir / "train.log").resolve())
        for h in list(root.handlers):  # one file handler per run (tests run several in one process)
            if isinstance(h, logging.FileHandler) and getattr(h, "_run_log", False):
                root.removeHandler(h)
                h.close()
        handler = logging.FileHandler(target)
        handler._run_log = True
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)


def prepare_model_for_training(model: StrokeModel, trainable: list[str], cfg: TrainConfig) -> None:
    """Trainable weights in fp32 (the frozen ones may be bf16/int8); optional gradient checkpointing."""
    params = dict(model.vlm.named_parameters())
    for name in trainable:
        if params[name].dtype != torch.float32:
            params[name].data = params[name].data.float()
    if cfg.gradient_checkpointing:
        model.vlm.base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    n = sum(params[k].numel() for k in trainable)
    total = sum(p.numel() for p in params.values())
    log.info("trainable: %d tensors, %d parameters (%.3f%% of %d)", len(trainable), n, 100 * n / total, total)


def lr_factor(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Multiplier of cfg.lr at optimizer step `step` (0-based): linear warm-up from warmup_start_lr,
    then cosine / linear decay to 0 at `total_steps`, or constant."""
    if step < cfg.warmup_steps:
        start = cfg.warmup_start_lr / cfg.lr
        return start + (1 - start) * step / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "linear":
        return 1 - progress
    return 1.0


# ---------------------------------------------------------------- the trainer


class Trainer:
    """Runs `cfg`'s optimisation of `model` (already set trainable) on `train_set`; `evaluate(model)`
    returns the stage's metrics on val (None: no validation data)."""

    def __init__(self, cfg: TrainConfig, model: StrokeModel, trainable: list[str], train_set: Dataset,
                 evaluate: Callable[[StrokeModel], dict] | None, accelerator: Accelerator, run_dir: Path):
        self.cfg, self.model, self.train_set, self.evaluate = cfg, model, train_set, evaluate
        self.acc, self.run_dir, self.trainable = accelerator, run_dir, trainable
        self.stage = cfg.stage
        prepare_model_for_training(model, trainable, cfg)
        params = dict(model.vlm.named_parameters())
        self.params = [params[n] for n in trainable]
        decay = [p for p in self.params if p.ndim >= 2]
        no_decay = [p for p in self.params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}],
                                           lr=cfg.lr, betas=tuple(cfg.betas))
        self.sampler = EpochBatchSampler(len(train_set), cfg.batch_size, cfg.seed, True,
                                         accelerator.process_index, accelerator.num_processes)
        self.steps_per_epoch = math.ceil(self.sampler.batches_per_epoch / cfg.grad_accum)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.stop = min(self.total_steps, cfg.max_steps) if cfg.max_steps else self.total_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg, cfg.schedule_steps or self.total_steps))
        self.loader = DataLoader(train_set, batch_sampler=self.sampler, num_workers=cfg.num_workers,
                                 collate_fn=Collator(model.processor, cfg.max_target_len),
                                 persistent_workers=cfg.num_workers > 0, pin_memory=model.device.type == "cuda",
                                 generator=torch.Generator().manual_seed(cfg.seed))  # keeps the global RNG untouched
        self.ddp = accelerator.prepare(model.vlm)  # DDP with several processes; the model itself otherwise
        self.step, self.best_key, self.best_metrics = 0, None, None

    # ------------------------------------------------------------ state

    def resume(self) -> bool:
        """Load the newest complete checkpoint; False when there is none."""
        ckpts = checkpoints(self.run_dir)
        if not ckpts:
            log.warning("--resume: no checkpoint in %s; starting from step 0", self.run_dir / "checkpoints")
            return False
        ckpt = ckpts[-1]
        state = torch.load(ckpt / TRAINER_STATE, map_location="cpu", weights_only=False)
        if state["trainable"] != self.trainable:
            raise TrainError(f"{ckpt}: its trainable parameters differ from this run's; resume with the same options")
        try:
            load_adapter_state_dict(self.model.vlm, load_file(str(ckpt / ADAPTERS), device=str(self.model.device)))
        except ValueError as err:
            raise TrainError(f"{ckpt}: {err}") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.best_key, self.best_metrics = state["step"], state["best_key"], state["best_metrics"]
        if self.best_key is not None:
            self.best_key = tuple(self.best_key)
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if torch.cuda.is_available() and rng.get("cuda") is not None:
            torch.cuda.set_rng_state_all(rng["cuda"])
        self._truncate_metrics(self.step)
        log.info("resumed from %s (step %d of %d)", ckpt, self.step, self.stop)
        return True

    def _truncate_metrics(self, step: int) -> None:
        path = self.run_dir / "metrics.jsonl"
        if self.acc.is_main_process and path.is_file():
            keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in keep))

    def save_checkpoint(self) -> Path:
        ckpt = self.run_dir / "checkpoints" / f"step-{self.step}"
        save_adapters(self.model, ckpt, extra={"train": {"step": self.step, "epoch": self.step / self.steps_per_epoch}})
        state = {"step": self.step, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "best_key": list(self.best_key) if self.best_key else None, "best_metrics": self.best_metrics,
                 "trainable": self.trainable,
                 "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                         "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}}
        tmp = ckpt / (TRAINER_STATE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(ckpt / TRAINER_STATE)  # written last: a checkpoint without it is incomplete
        if self.cfg.keep_checkpoints:
            for old in checkpoints(self.run_dir)[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        return ckpt

    # ------------------------------------------------------------ the loop

    def fit(self) -> dict:
        cfg = self.cfg
        if cfg.resume:
            self.resume()
        log.info("stage %d: %d samples, %d steps per epoch, %d epochs (%d steps); running steps %d..%d",
                 self.stage, len(self.train_set), self.steps_per_epoch, cfg.epochs, self.total_steps,
                 self.step + 1, self.stop)
        bar = tqdm(total=self.stop, initial=self.step, desc=f"stage {self.stage}", unit="step",
                   disable=not (cfg.progress and self.acc.is_main_process), dynamic_ncols=True)
        window = {"loss": 0.0, "steps": 0, "samples": 0, "t0": time.perf_counter()}
        last_loss = float("nan")
        while self.step < self.stop:
            epoch = self.step // self.steps_per_epoch
            first = self.step % self.steps_per_epoch
            self.sampler.set_epoch(epoch, first * cfg.grad_accum)
            batches = iter(self.loader)
            try:
                self._run_epoch(batches, first, window, bar)
            finally:
                # An error leaves the iterator referenced from the traceback, and its worker
                # processes (holding copies of every inherited pipe) alive: stop them now.
                getattr(batches, "_shutdown_workers", lambda: None)()
            last_loss = window.get("last", last_loss)
        bar.close()
        return self._finish(last_loss)

    def _run_epoch(self, batches, first: int, window: dict, bar) -> None:
        cfg = self.cfg
        for k in range(first, self.steps_per_epoch):
            n = min(cfg.grad_accum, self.sampler.batches_per_epoch - k * cfg.grad_accum)
            lr = self.optimizer.param_groups[0]["lr"]
            loss, samples = self._optimizer_step(batches, n)
            self.step += 1
            window["last"] = loss
            window["loss"] += loss
            window["steps"] += 1
            window["samples"] += samples
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            self._after_step(lr, window, end_of_epoch=k == self.steps_per_epoch - 1)
            if self.step >= self.stop:
                break

    def _optimizer_step(self, batches, n: int) -> tuple[float, int]:
        """One update from `n` micro-batches; returns (mean loss, samples seen by all processes)."""
        self.ddp.train()
        total = torch.zeros((), device=self.model.device)
        samples = 0
        for j in range(n):
            batch = next(batches)
            sync = j == n - 1
            with (nullcontext() if sync else self.acc.no_sync(self.ddp)), self.acc.autocast():
                loss = self.ddp(**model_inputs(batch, self.model.device)).loss
                self.acc.backward(loss / n)
            total += loss.detach().float() / n
            samples += len(batch["ids"])
        if self.cfg.grad_clip:
            self.acc.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        mean = self.acc.reduce(total, "mean") if self.acc.num_processes > 1 else total
        value = float(mean)
        if not math.isfinite(value):
            raise TrainError(f"the loss is {value} at step {self.step + 1}; lower --lr, or train in fp32")
        return value, samples * self.acc.num_processes

    def _after_step(self, lr: float, window: dict, end_of_epoch: bool) -> None:
        cfg, step = self.cfg, self.step
        final = step >= self.stop
        record: dict = {}
        if step % cfg.log_every == 0 or final:
            elapsed = time.perf_counter() - window["t0"]
            record.update(loss=window["loss"] / window["steps"], lr=lr,
                          samples_per_s=window["samples"] / elapsed if elapsed > 0 else 0.0)
            window.update(loss=0.0, steps=0, samples=0, t0=time.perf_counter())
        due = (step % cfg.eval_every == 0) if cfg.eval_every else end_of_epoch
        if self.evaluate is not None and (due or final):
            record.update({f"val_{k}": v for k, v in self._evaluate().items()})
        if record and self.acc.is_main_process:
            record = {"step": step, "epoch": round(step / self.steps_per_epoch, 4), **record}
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if "val_" + ("cider" if self.stage == 1 else "f1") in record:
                log.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in record.items()
                                                         if k.startswith("val_") or k == "loss"))
        due_save = (step % cfg.save_every == 0) if cfg.save_every else end_of_epoch
        if due_save or final:
            if self.acc.is_main_process:
                self.save_checkpoint()
            self.acc.wait_for_everyone()

    def _evaluate(self) -> dict:
        """Validation on the main process; saves best/ when the selection metric improves."""
        scalars: dict = {}
        if self.acc.is_main_process:
            # Evaluation must not move the training's random state (dropout), or a resumed run would differ.
            cuda = [self.model.device] if self.model.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):
                metrics = self.evaluate(self.model)
            scalars = scalar_metrics(self.stage, metrics)
            key = selection_key(self.stage, metrics)
            if self.best_key is None or key > self.best_key:
                self.best_key, self.best_metrics = key, {"step": self.step, **scalars}
                save_adapters(self.model, self.run_dir / "best", extra={"train": self.best_metrics})
                log.info("step %d: new best (%s)", self.step, ", ".join(f"{v:.4g}" for v in key))
        self.acc.wait_for_everyone()
        return scalars

    def _finish(self, last_loss: float) -> dict:
        if self.acc.is_main_process:
            save_adapters(self.model, self.run_dir / "final", extra={"train": {"step": self.step, "loss": last_loss}})
            if not (self.run_dir / "best" / "manifest.json").is_file():  # no validation data
                log.warning("no validation samples: best/ is the final model")
                save_adapters(self.model, self.run_dir / "best", extra={"train": {"step": self.step}})
        self.acc.wait_for_everyone()
        return {"run": str(self.run_dir), "steps": self.step, "loss": last_loss, "best": self.best_metrics,
                "main_process": self.acc.is_main_process}


# ---------------------------------------------------------------- run folder and config


def checkpoints(run_dir: Path) -> list[Path]:
    """A run's complete checkpoints, oldest first."""
    found = [p for p in (run_dir / "checkpoints").glob("step-*") if (p / TRAINER_STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def start_run(cfg: TrainConfig) -> tuple[Path, Accelerator, str]:
    """Check the output folder, set the CPU threads, set up accelerate, seeding and logging.

    A resumed run must keep the options in RESUME_KEYS (TrainError names the ones that changed)."""
    run_dir = check_output(cfg.out)
    set_threads(cfg.threads)
    acc, device = make_accelerator(cfg)
    setup_logging(run_dir, acc.is_main_process)
    seed_everything(cfg.seed)
    return run_dir, acc, device


def write_config(cfg: TrainConfig, run_dir: Path, acc: Accelerator) -> None:
    path = run_dir / "config.yaml"
    if cfg.resume and path.is_file():
        old = yaml.safe_load(path.read_text()) or {}
        new = cfg.to_dict()
        changed = [k for k in RESUME_KEYS if k in new and k in old and old[k] != new[k]]
        if changed:
            raise TrainError("--resume: these options differ from the run in " + str(run_dir) + ": " +
                             ", ".join(f"{k} ({old[k]!r} -> {new[k]!r})" for k in changed))
    if acc.is_main_process:
        cfg.save(path)


def run_cli(cls: type[TrainConfig], argv: list[str] | None, prog: str, description: str,
            train: Callable[[TrainConfig], dict], metric: str, metric_name: str, stage: int) -> int:
    """A recipe's command line: parse the config, train, print a one-line summary; errors in
    config, data, model or output come out as one line and exit code 1, not a traceback."""
    from core.loader import ModelLoadError
    from train.config import ConfigError, build_parser, parse_config
    from train.data import DataError

    parser = build_parser(cls, prog, description)
    try:
        summary = train(parse_config(cls, argv, prog, description, parser))
    except (ConfigError, DataError, ModelLoadError, TrainError) as err:
        parser.exit(1, f"{prog}: error: {error_message(err)}\n")
    if not summary["main_process"]:
        return 0
    best = summary["best"] or {}
    print(f"stage {stage} done: {summary['steps']} steps, last loss {summary['loss']:.4f}, "
          f"best {metric_name} {best.get(metric, float('nan')):.4f} at step {best.get('step', '-')}; adapters in "
          f"{summary['run']}/best and {summary['run']}/final")
    return 0
