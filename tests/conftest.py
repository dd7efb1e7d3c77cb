"""Shared fixtures: a tiny model folder and a synthetic video whose frames carry their index."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from core.video import write_video

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a test that reaches for the network fails

BITS = 10
BLOCK = 8


def index_frame(i: int, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """An RGB frame whose top row of 8x8 blocks spells `i` in binary (survives lossy coding)."""
    w, h = size
    frame = np.full((h, w, 3), 40, np.uint8)
    for b in range(BITS):
        if (i >> b) & 1:
            frame[:BLOCK, b * BLOCK:(b + 1) * BLOCK] = 235
    frame[BLOCK + 4:, :, 1] = (i * 7) % 200  # some content below the code
    return frame


def read_index(frame: np.ndarray) -> int:
    """Decode the index that `index_frame` drew."""
    return sum(1 << b for b in range(BITS) if frame[2:BLOCK - 2, b * BLOCK + 2:(b + 1) * BLOCK - 2].mean() > 128)


@pytest.fixture(scope="session")
def index_video(tmp_path_factory) -> Path:
    """A 120-frame mp4 at 25 fps whose frame i shows the number i."""
    path = tmp_path_factory.mktemp("video") / "indexed.mp4"
    return write_video(path, (index_frame(i) for i in range(120)), fps=25)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny matrices: on a busy 2-core machine several torch threads spin against each other and
    run many times slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_spec():
    from core.tiny import TinySpec

    # Vision and Q-Former widths differ so that parameter counts catch a wrong target.
    return TinySpec(vision_hidden=48, qformer_hidden=32, llm_width=32, llm_ffn=64)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, tiny_spec) -> Path:
    """A tiny random base checkpoint saved in the Hugging Face folder format."""
    from core.tiny import build_tiny_base

    return build_tiny_base(tmp_path_factory.mktemp("tiny_base"), tiny_spec)


def random_clips(n: int, seed: int = 0, frames: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (frames, 36, 64, 3), dtype=np.uint8) for _ in range(n)]


def pytest_configure(config) -> None:
    config.addinivalue_line("filterwarnings", "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
