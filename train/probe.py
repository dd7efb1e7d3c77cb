"""How much of a stroke do the renders show? A learnability probe for the replay renderer.

    python -m train.probe [--train-sets 40] [--heldout-sets 4] [--steps 3000] [--device cuda]

Renders training and validation looks exactly as `train.demo` does (a look per rally; other
matches and other seeds for the held-out validation looks, at 640x360), then trains a small 3D CNN (temporal convolutions see motion directly) with
side / stroke / zone heads on the clips and prints held-out accuracy beside the majority class
every 500 steps. It is not part of the product's model: it tells whether a model that fails on
the renders lacks capacity or the renders lack the information.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from train.clip_cache import ClipSet
from train.demo import DEFAULT_SHUTTLESET, choose_sets, match_sets, plan_splits, render_looks
from train.pretrain_base import FIELDS, labels


def cnn3d(fields: dict[str, list]) -> tuple[nn.Module, nn.ModuleDict]:
    def block(i: int, o: int) -> nn.Module:
        return nn.Sequential(nn.Conv3d(i, o, 3, padding=1), nn.BatchNorm3d(o), nn.ReLU(), nn.MaxPool3d((1, 2, 2)))

    body = nn.Sequential(block(3, 24), block(24, 48), block(48, 64), block(64, 96), nn.AdaptiveAvgPool3d(1),
                         nn.Flatten())
    return body, nn.ModuleDict({k: nn.Linear(96, len(v)) for k, v in fields.items()})


def accuracy(body, heads, clips: ClipSet, y: dict, device: str) -> dict[str, float]:
    body.eval()
    right = {k: 0 for k in heads}
    with torch.no_grad():
        for i in range(0, len(clips), 256):
            f = body(_x(clips.frames[i:i + 256], device))
            for k, head in heads.items():
                right[k] += int((head(f).argmax(-1).cpu() == y[k][i:i + 256]).sum())
    body.train()
    return {k: round(v / len(clips), 3) for k, v in right.items()}


def _x(frames: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(frames).to(device).permute(0, 4, 1, 2, 3).float().div_(255.0)  # (B, 3, T, S, S)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--shuttleset", type=Path, default=DEFAULT_SHUTTLESET)
    p.add_argument("--train-sets", type=int, default=40)
    p.add_argument("--heldout-sets", type=int, default=4)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--processes", type=int, default=2, help="render processes")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    # the demo's test matches stay out of the probe too (chosen first, never rendered)
    sets = choose_sets(match_sets(args.shuttleset), {"train": args.train_sets, "val": args.heldout_sets, "test": 4},
                       args.seed)
    looks = plan_splits({k: sets[k] for k in ("train", "val")}, 1, {})
    with tempfile.TemporaryDirectory() as tmp:
        _, train = render_looks(looks["train"], Path(tmp) / "train", args.processes)
        _, held = render_looks(looks["val"], Path(tmp) / "heldout", args.processes)
    y_train, y_held = labels(train), labels(held)
    majority = {k: round(float((y_held[k] == torch.bincount(y_train[k]).argmax()).float().mean()), 3) for k in FIELDS}
    print(f"{len(train)} training clips, {len(held)} held-out clips; majority class {majority}", flush=True)
    torch.manual_seed(args.seed)
    body, heads = cnn3d(FIELDS)
    body, heads = body.to(args.device), heads.to(args.device)
    opt = torch.optim.AdamW([*body.parameters(), *heads.parameters()], lr=2e-3)
    start, rng = time.time(), np.random.default_rng(args.seed)
    for step in range(1, args.steps + 1):
        idx = np.sort(rng.integers(0, len(train), args.batch_size))
        f = body(_x(train.frames[idx], args.device))
        loss = sum(nn.functional.cross_entropy(h(f), y_train[k][idx].to(args.device)) for k, h in heads.items())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 500 == 0 or step == args.steps:
            print(f"step {step} ({time.time() - start:.0f} s) loss {loss.item():.3f} held-out "
                  f"{accuracy(body, heads, held, y_held, args.device)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
