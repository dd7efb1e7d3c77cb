"""Training killed with SIGKILL at several points (inside the first checkpoint, between a
checkpoint's weights and its trainer state, just after a complete checkpoint): an incomplete
checkpoint is never resumed from, and `--resume` reaches the weights and the metric records of
an uninterrupted run exactly, each step recorded once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from train import stage1
from train.loop import checkpoints
from tests.test_train import FAST, make_dataset

ROOT = Path(__file__).resolve().parents[1]
STEPS = 5


def child(out: str, data: str, kill_at: str) -> None:
    """Stage 1 in this process, killed with SIGKILL at `kill_at`: 'weights@N' (step N's checkpoint
    has its weights, not yet its trainer state) or 'checkpoint@N' (step N's checkpoint complete)."""
    from train.loop import Trainer

    where, step = kill_at.split("@")
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)  # noqa: E731
    if where == "weights":
        save_weights = Trainer.save_weights

        def weights_then_die(self, ckpt):
            save_weights(self, ckpt)
            if self.step == int(step):
                die()
        Trainer.save_weights = weights_then_die
    else:
        save_checkpoint = Trainer.save_checkpoint

        def checkpoint_then_die(self):
            out = save_checkpoint(self)
            if self.step == int(step):
                die()
            return out
        Trainer.save_checkpoint = checkpoint_then_die
    stage1.main(_args(out, data))


def _args(out, data, *extra) -> list[str]:
    return ["--tiny", "--data", str(data), "--grad-accum", "2", *FAST, "--out", str(out), "--max-steps", str(STEPS),
            *extra]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, dataset) -> Path:
    out = tmp_path_factory.mktemp("whole") / "run"
    assert stage1.main(_args(out, dataset)) == 0
    return out


@pytest.mark.parametrize("kill_at", ["weights@1", "weights@3", "checkpoint@2"])
def test_a_killed_run_resumes_from_its_last_complete_checkpoint_to_the_same_weights(tmp_path, dataset, uninterrupted,
                                                                                   kill_at):
    out = tmp_path / "run"
    code = "import sys; from tests.test_train_crash import child; child(*sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, str(out), str(dataset), kill_at], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    where, step = kill_at.split("@")
    complete = [int(p.name.split("-")[1]) for p in checkpoints(out)]
    assert complete == list(range(1, int(step) + (where == "checkpoint")))  # the cut one is not counted
    assert not (out / "final").exists()
    assert stage1.main(_args(out, dataset, "--resume")) == 0
    whole, resumed = (load_file(str(r / "final" / "adapters.safetensors")) for r in (uninterrupted, out))
    assert whole.keys() == resumed.keys()
    for k in whole:
        torch.testing.assert_close(whole[k], resumed[k], rtol=0, atol=1e-6)
    a, b = _records(uninterrupted), _records(out)
    assert [r["step"] for r in b if "loss" in r] == list(range(1, STEPS + 1))  # each step recorded once
    for ra, rb in zip((r for r in a if "loss" in r), (r for r in b if "loss" in r)):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-6)  # float32 losses near 19: a few ulps
