"""The training loop of every recipe: both stages (`Trainer`) and each phase of base pretraining
(train/pretrain_base.py) run through `Loop`: AdamW over parameter groups, a learning-rate factor
per step (warm-up and decay), a step budget and an optional time budget (whichever ends first),
gradient clipping, metrics.jsonl records, periodic evaluation, checkpoints and exact resume.

Run folder of a stage:
    config.yaml                  the resolved configuration
    metrics.jsonl                one line per logged/evaluated step: step, epoch, loss, lr, samples_per_s, val_*
    train.log                    the log
    checkpoints/step-N/          adapters (core.loader.save_adapters) + trainer_state.pt
    best/                        adapters with the best selection metric so far (train.evaluate.selection_key)
    final/                       adapters after the last step

A checkpoint's trainer_state.pt holds the step, the optimizer, the seconds spent and every random
state (Python, NumPy, torch, CUDA and the recipe's own generators); the data order follows from
the step, so `--resume` reads the batches the interrupted run would have read.

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
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from safetensors.torch import load_file
from torch import nn
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
METRICS = "metrics.jsonl"
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


# ---------------------------------------------------------------- the loop


Schedule = Callable[[int, float], float]
"""(optimizer step, 0-based; share of the time budget spent, 0 without one) -> learning-rate multiplier."""


@dataclass
class Plan:
    """How long a loop runs and when it logs, evaluates and saves, in optimizer steps."""

    stop: int  # the last step
    steps_per_epoch: int
    budget_s: float | None = None  # also stop once this many seconds are spent (whichever comes first)
    log_every: int = 10
    eval_every: int = 0  # 0: at the end of each epoch; the last step is always evaluated
    save_every: int = 0  # 0: at the end of each epoch; the last step is always saved
    keep_checkpoints: int = 0  # the newest N (0: all)
    grad_clip: float = 0.0  # 0: no clipping


def adamw(params: list[nn.Parameter], lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
          decay_vectors: bool = True) -> torch.optim.AdamW:
    """AdamW; without `decay_vectors` only matrices decay (biases and norms get no weight decay)."""
    if decay_vectors:
        groups = [{"params": params, "weight_decay": weight_decay}]
    else:
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def rng_states(own: dict) -> dict:
    """The global random states (Python, NumPy, torch, CUDA) and those of a recipe's own generators."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "own": {k: g.bit_generator.state if isinstance(g, np.random.Generator) else g.getstate()
                    for k, g in own.items()}}


def set_rng_states(states: dict, own: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if torch.cuda.is_available() and states.get("cuda") is not None:
        torch.cuda.set_rng_state_all(states["cuda"])
    for k, g in own.items():
        if isinstance(g, np.random.Generator):
            g.bit_generator.state = states["own"][k]
        else:
            g.setstate(states["own"][k])


class Loop:
    """The optimisation every recipe runs: per step a learning rate from `schedule`, one update
    from the recipe's loss (`accumulate`), clipping, then records, evaluation and checkpoints as
    `plan` says; `resume()` continues at the exact step of the newest checkpoint.

    A recipe subclasses it and supplies its data (`open_epoch`: each epoch's order follows from
    the seed and the epoch, so a checkpoint needs only the step), its loss (`accumulate`), its
    scores (`scores`) and what a checkpoint holds besides the optimizer and the random states
    (`save_weights`/`load_weights`, `extra_state`/`load_extra_state`). `phase` names a loop that
    shares its run folder with others (base pretraining's A, B, C): its records carry
    "phase" and its checkpoints go to checkpoints/<phase>/. `rngs` are the recipe's own random
    generators (numpy.random.Generator or random.Random), restored with the global ones."""

    def __init__(self, run_dir: Path, optimizer: torch.optim.Optimizer, schedule: Schedule, plan: Plan, *,
                 device: torch.device, phase: str = "", rngs: dict | None = None, main_process: bool = True,
                 progress: bool = False, desc: str = "train"):
        self.run_dir, self.optimizer, self.schedule, self.plan = run_dir, optimizer, schedule, plan
        self.device, self.phase, self.rngs, self.main_process = device, phase, rngs or {}, main_process
        self.progress, self.desc = progress, desc
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.step, self.ended, self.spent_s, self.t0 = 0, False, 0.0, time.perf_counter()
        self.window = {"loss": 0.0, "steps": 0, "samples": 0}  # the steps since the last loss record

    # ------------------------------------------------------------ what a recipe supplies

    def open_epoch(self, epoch: int, first: int) -> Iterator:
        """The batches of epoch `epoch` from its optimizer step `first` on."""
        raise NotImplementedError

    def close_epoch(self, batches: Iterator) -> None:
        """Called after each epoch, also when a step raised."""

    def accumulate(self, batches: Iterator, k: int) -> tuple[torch.Tensor, int]:
        """Forward and backward of optimizer step `k` of the epoch: (mean loss, samples)."""
        raise NotImplementedError

    def scores(self) -> dict | None:
        """The evaluation's scalars for the record (None: nothing to evaluate)."""
        return None

    def save_weights(self, ckpt: Path) -> None:
        raise NotImplementedError

    def load_weights(self, ckpt: Path) -> None:
        raise NotImplementedError

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict, ckpt: Path) -> None:
        """Checks and restores what `extra_state` wrote (before the weights are loaded)."""

    def record(self, fields: dict) -> dict:
        """A metrics.jsonl line from the step's loss/lr/speed fields and scores."""
        return {"phase": self.phase, "step": self.step, **fields} if self.phase else {"step": self.step, **fields}

    def loss_fields(self, loss: float, lr: float, samples_per_s: float) -> dict:
        return {"loss": loss, "lr": lr, "samples_per_s": samples_per_s}

    def report(self, record: dict) -> None:
        """Log a written record."""

    def log_due(self, step: int) -> bool:
        return step % self.plan.log_every == 0

    def clip_gradients(self, max_norm: float) -> None:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, max_norm)

    def barrier(self) -> None:
        """Wait for the other processes (one process: nothing to wait for)."""

    # ------------------------------------------------------------ state

    def elapsed(self) -> float:
        """Seconds this loop has run, earlier sessions of a resumed run included."""
        return self.spent_s + time.perf_counter() - self.t0

    def _checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints" / self.phase

    def resume(self) -> bool:
        """Load the newest complete checkpoint; False when there is none. Either way the records of
        steps after the one it continues at are dropped from metrics.jsonl."""
        found = checkpoints(self.run_dir, self.phase)
        if not found:
            log.log(logging.INFO if self.phase else logging.WARNING, "--resume: no checkpoint in %s; starting "
                    "from step 0", self._checkpoint_dir())
            self._truncate_metrics()
            return False
        ckpt = found[-1]
        state = torch.load(ckpt / TRAINER_STATE, map_location="cpu", weights_only=False)
        self.load_extra_state(state, ckpt)
        self.load_weights(ckpt)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.ended, self.spent_s = state["step"], state.get("ended", False), state.get("spent_s", 0.0)
        self.window.update(state.get("window", {}))
        set_rng_states(state["rng"], self.rngs)
        self._truncate_metrics()
        log.info("resumed from %s (step %d of %d)", ckpt, self.step, self.plan.stop)
        return True

    def _truncate_metrics(self) -> None:
        path = self.run_dir / METRICS
        if not (self.main_process and path.is_file()):
            return

        def kept(line: str) -> bool:  # another phase's, or not after the step this run continues at
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the line a killed run was writing
                return False
            return record.get("phase", "") != self.phase or record.get("step", 0) <= self.step
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip() and kept(line)]
        path.write_text("".join(line + "\n" for line in lines))

    def save_checkpoint(self) -> Path:
        ckpt = self._checkpoint_dir() / f"step-{self.step}"
        ckpt.mkdir(parents=True, exist_ok=True)
        self.save_weights(ckpt)
        state = {"step": self.step, "ended": self.ended, "spent_s": self.elapsed(),
                 "window": {k: self.window[k] for k in ("loss", "steps")},  # the speed restarts with the run
                 "optimizer": self.optimizer.state_dict(), "rng": rng_states(self.rngs), **self.extra_state()}
        tmp = ckpt / (TRAINER_STATE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(ckpt / TRAINER_STATE)  # written last: a checkpoint without it is incomplete
        if self.plan.keep_checkpoints:
            for old in checkpoints(self.run_dir, self.phase)[: -self.plan.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        return ckpt

    # ------------------------------------------------------------ the loop

    def run(self) -> float:
        """Steps from the current one to the plan's stop (or until the time budget is spent);
        returns the last step's loss (NaN when no step ran)."""
        self.t0 = time.perf_counter()
        spe = self.plan.steps_per_epoch
        bar = tqdm(total=self.plan.stop, initial=self.step, desc=self.desc, unit="step",
                   disable=not (self.progress and self.main_process), dynamic_ncols=True)
        window = self.window
        window.update(t0=time.perf_counter(), last=float("nan"))
        while self.step < self.plan.stop and not self.ended:
            epoch, first = divmod(self.step, spe)
            batches = self.open_epoch(epoch, first)
            try:
                for k in range(first, spe):
                    lr = self._set_lr()
                    loss, samples = self._optimizer_step(batches, k)
                    self.step += 1
                    self.ended = self.plan.budget_s is not None and self.elapsed() > self.plan.budget_s
                    window.update(last=loss, loss=window["loss"] + loss, steps=window["steps"] + 1,
                                  samples=window["samples"] + samples)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
                    self._after_step(lr, end_of_epoch=k == spe - 1)
                    if self.step >= self.plan.stop or self.ended:
                        break
            finally:
                self.close_epoch(batches)
        bar.close()
        return window["last"]

    def _set_lr(self) -> float:
        spent = self.elapsed() / self.plan.budget_s if self.plan.budget_s else 0.0
        factor = self.schedule(self.step, spent)
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * factor
        return self.optimizer.param_groups[0]["lr"]

    def _optimizer_step(self, batches: Iterator, k: int) -> tuple[float, int]:
        loss, samples = self.accumulate(batches, k)
        if self.plan.grad_clip:
            self.clip_gradients(self.plan.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        value = float(loss)
        if not math.isfinite(value):
            where = f"phase {self.phase}, " if self.phase else ""
            raise TrainError(f"the loss is {value} at {where}step {self.step + 1}; lower --lr, or train in fp32")
        return value, samples

    def _after_step(self, lr: float, end_of_epoch: bool) -> None:
        plan, step, window = self.plan, self.step, self.window
        final = step >= plan.stop or self.ended
        fields: dict = {}
        if self.log_due(step) or final:
            seconds = time.perf_counter() - window["t0"]
            fields.update(self.loss_fields(window["loss"] / window["steps"], lr,
                                           window["samples"] / seconds if seconds > 0 else 0.0))
            window.update(loss=0.0, steps=0, samples=0, t0=time.perf_counter())
        if final or ((step % plan.eval_every == 0) if plan.eval_every else end_of_epoch):
            # Evaluation must not move the training's random state (dropout), or a resumed run would differ.
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                fields.update(self.scores() or {})
        if fields and self.main_process:
            record = self.record(fields)
            with open(self.run_dir / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")
            self.report(record)
        if final or ((step % plan.save_every == 0) if plan.save_every else end_of_epoch):
            if self.main_process:
                self.save_checkpoint()
            self.barrier()


# ---------------------------------------------------------------- the stages' trainer


class Trainer(Loop):
    """Runs `cfg`'s optimisation of `model` (already set trainable) on `train_set`; `evaluate(model)`
    returns the stage's metrics on val (None: no validation data). The best selection metric
    so far (train.evaluate.selection_key) saves best/."""

    def __init__(self, cfg: TrainConfig, model: StrokeModel, trainable: list[str], train_set: Dataset,
                 evaluate: Callable[[StrokeModel], dict] | None, accelerator: Accelerator, run_dir: Path):
        self.cfg, self.model, self.train_set, self.evaluate = cfg, model, train_set, evaluate
        self.acc, self.trainable = accelerator, trainable
        self.stage = cfg.stage
        prepare_model_for_training(model, trainable, cfg)
        params = dict(model.vlm.named_parameters())
        self.params = [params[n] for n in trainable]
        self.sampler = EpochBatchSampler(len(train_set), cfg.batch_size, cfg.seed, True,
                                         accelerator.process_index, accelerator.num_processes)
        self.steps_per_epoch = math.ceil(self.sampler.batches_per_epoch / cfg.grad_accum)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.stop = min(self.total_steps, cfg.max_steps) if cfg.max_steps else self.total_steps
        span = cfg.schedule_steps or self.total_steps
        plan = Plan(self.stop, self.steps_per_epoch, log_every=cfg.log_every, eval_every=cfg.eval_every,
                    save_every=cfg.save_every, keep_checkpoints=cfg.keep_checkpoints, grad_clip=cfg.grad_clip)
        super().__init__(run_dir, adamw(self.params, cfg.lr, cfg.weight_decay, tuple(cfg.betas), decay_vectors=False),
                         lambda step, _: lr_factor(step, cfg, span), plan, device=model.device,
                         main_process=accelerator.is_main_process, progress=cfg.progress, desc=f"stage {self.stage}")
        self.loader = DataLoader(train_set, batch_sampler=self.sampler, num_workers=cfg.num_workers,
                                 collate_fn=Collator(model.processor, cfg.max_target_len),
                                 persistent_workers=cfg.num_workers > 0, pin_memory=model.device.type == "cuda",
                                 generator=torch.Generator().manual_seed(cfg.seed))  # keeps the global RNG untouched
        self.ddp = accelerator.prepare(model.vlm)  # DDP with several processes; the model itself otherwise
        self.best_key, self.best_metrics = None, None

    def fit(self) -> dict:
        cfg = self.cfg
        if cfg.resume:
            self.resume()
        log.info("stage %d: %d samples, %d steps per epoch, %d epochs (%d steps); running steps %d..%d",
                 self.stage, len(self.train_set), self.steps_per_epoch, cfg.epochs, self.total_steps,
                 self.step + 1, self.stop)
        return self._finish(self.run())

    # ------------------------------------------------------------ the loop's parts

    def open_epoch(self, epoch: int, first: int) -> Iterator:
        self.sampler.set_epoch(epoch, first * self.cfg.grad_accum)
        return iter(self.loader)

    def close_epoch(self, batches: Iterator) -> None:
        # An error leaves the iterator referenced from the traceback, and its worker
        # processes (holding copies of every inherited pipe) alive: stop them now.
        getattr(batches, "_shutdown_workers", lambda: None)()

    def accumulate(self, batches: Iterator, k: int) -> tuple[torch.Tensor, int]:
        """Up to grad_accum micro-batches; returns (mean loss, samples seen by all processes)."""
        n = min(self.cfg.grad_accum, self.sampler.batches_per_epoch - k * self.cfg.grad_accum)
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
        mean = self.acc.reduce(total, "mean") if self.acc.num_processes > 1 else total
        return mean, samples * self.acc.num_processes

    def clip_gradients(self, max_norm: float) -> None:
        self.acc.clip_grad_norm_(self.params, max_norm)

    def barrier(self) -> None:
        self.acc.wait_for_everyone()

    def record(self, fields: dict) -> dict:
        return {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4), **fields}

    def report(self, record: dict) -> None:
        if "val_" + ("cider" if self.stage == 1 else "f1") in record:
            log.info("step %d: %s", self.step, ", ".join(f"{k} {v:.4g}" for k, v in record.items()
                                                         if k.startswith("val_") or k == "loss"))

    def scores(self) -> dict | None:
        """Validation on the main process; saves best/ when the selection metric improves."""
        if self.evaluate is None:
            return None
        scalars: dict = {}
        if self.acc.is_main_process:
            metrics = self.evaluate(self.model)
            scalars = scalar_metrics(self.stage, metrics)
            key = selection_key(self.stage, metrics)
            if self.best_key is None or key > self.best_key:
                self.best_key, self.best_metrics = key, {"step": self.step, **scalars}
                save_adapters(self.model, self.run_dir / "best", extra={"train": self.best_metrics})
                log.info("step %d: new best (%s)", self.step, ", ".join(f"{v:.4g}" for v in key))
        self.acc.wait_for_everyone()
        return {f"val_{k}": v for k, v in scalars.items()}

    # ------------------------------------------------------------ checkpoints

    def save_weights(self, ckpt: Path) -> None:
        save_adapters(self.model, ckpt, extra={"train": {"step": self.step, "epoch": self.step / self.steps_per_epoch}})

    def load_weights(self, ckpt: Path) -> None:
        try:
            load_adapter_state_dict(self.model.vlm, load_file(str(ckpt / ADAPTERS), device=str(self.model.device)))
        except ValueError as err:
            raise TrainError(f"{ckpt}: {err}") from None

    def extra_state(self) -> dict:
        return {"best_key": list(self.best_key) if self.best_key else None, "best_metrics": self.best_metrics,
                "trainable": self.trainable}

    def load_extra_state(self, state: dict, ckpt: Path) -> None:
        if state["trainable"] != self.trainable:
            raise TrainError(f"{ckpt}: its trainable parameters differ from this run's; resume with the same options")
        self.best_key, self.best_metrics = state["best_key"], state["best_metrics"]
        if self.best_key is not None:
            self.best_key = tuple(self.best_key)

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


def checkpoints(run_dir: Path, phase: str = "") -> list[Path]:
    """A run's complete checkpoints (of one phase, with `phase`), oldest first."""
    found = [p for p in (run_dir / "checkpoints" / phase).glob("step-*") if (p / TRAINER_STATE).is_file()]
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
    scored = (f"best {metric_name} {best[metric]:.4f} at step {best.get('step', '-')}" if metric in best
              else f"{metric_name} not evaluated (no validation samples)")
    print(f"stage {stage} done: {summary['steps']} steps, last loss {summary['loss']:.4f}, {scored}; adapters in "
          f"{summary['run']}/best and {summary['run']}/final")
    return 0
