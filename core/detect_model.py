"""The stroke detector's vision model: per-frame motion maps -> per-frame hit, side and rally scores.

    frame encoder  (B*T, 3, 18, 32) -> (B*T, D)   two 3x3 convolutions, pooling, a projection
    temporal net   (B, D, T)        -> (B, D, T)  residual dilated 1-D convolutions (5 s of context)
    head           (B, D, T)        -> (B, 3, T)  logits: hit here, hitter in the upper half, in a rally

The frame encoder runs once per frame, chunk by chunk during decoding (`encode_frames`), so a
long file keeps only D floats per frame. `DetectorConfig` is saved in detector.json beside the
weights (detector.safetensors-like `.pt` state dict) and rebuilds the exact model.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.detect_features import CHANNELS, GRID

HEADS = ("hit", "upper", "rally")
GREY_STD_FLOOR = 0.01  # a flat frame (a fade to black) is not blown up into noise


@dataclass
class DetectorConfig:
    dim: int = 48
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16)
    kernel: int = 5
    # post-processing (tuned on validation renders by train.detector)
    hit_threshold: float = 0.35  # on the fused score (with sound)
    picture_threshold: float = 0.55  # on P(hit) when there is no usable sound
    fusion: str = "add"  # "add": P(hit) + audio_weight * onset term; "gate": see core.detect.fuse
    audio_weight: float = 0.0  # "add": weight of the onset term; "gate": 1 - the picture-only share
    audio_z: float = 4.0  # normalised flux at which the onset term is 0.5
    snap_z: float = 6.0  # an onset this strong within snap frames moves the hit to it
    snap_frames: int = 2
    rally_threshold: float = 0.5
    min_rally_s: float = 0.8
    nms_s: float = 0.12
    split_gap_s: float = 3.1  # hits further apart than this in one live shot belong to two rallies
    rally_pad_s: tuple[float, float] = (0.0, 0.0)  # added to a rally segment's (start, end)
    recover_threshold: float = 0.0  # a hit the alternation says is missing counts from this (0: off)
    picture_recover_threshold: float = 0.0  # the same without usable sound
    cut_guard_s: float = 0.0  # no hit is judged this soon after a camera cut
    serve_reach_s: float = 2.0  # how far before a rally's first hit its serve is looked for
    alternation_p: float = 0.92  # sides: a rally's hitters alternate unless a hit was missed
    side_floor: float = 1e-4  # sides: P(upper) is held within this of 0 and 1
    trained_on: dict = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | Path) -> "DetectorConfig":
        raw = json.loads(Path(path).read_text())
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        for k in ("dilations", "rally_pad_s"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")


def normalise(maps: np.ndarray | torch.Tensor) -> torch.Tensor:
    """float16 motion maps -> the encoder's input scale: log of the differences, and the grey map
    standardised per frame, so that the court's layout counts and not its brightness (a light court
    under bright lights is still a court)."""
    x = torch.as_tensor(np.asarray(maps, dtype=np.float32))
    grey = x[:, 2:]
    mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    std = grey.std(dim=(1, 2, 3), keepdim=True)
    return torch.cat([torch.log1p(40.0 * x[:, :2]), (grey - mean) / (std + GREY_STD_FLOOR)], dim=1)


class FrameEncoder(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        rows, cols = GRID
        self.net = nn.Sequential(
            nn.Conv2d(CHANNELS, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (16, 9, 16)
            nn.Conv2d(16, 24, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (24, 4, 8)
            nn.Flatten(), nn.Linear(24 * (rows // 4) * (cols // 4), dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 18, 32) -> (N, D)
        return self.net(x)


class TemporalBlock(nn.Module):
    def __init__(self, dim: int, kernel: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.mix = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, T)
        return x + self.mix(torch.relu(self.conv(x)))


class DetectorNet(nn.Module):
    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        self.encoder = FrameEncoder(cfg.dim)
        self.temporal = nn.Sequential(*[TemporalBlock(cfg.dim, cfg.kernel, d) for d in cfg.dilations])
        self.head = nn.Conv1d(cfg.dim, len(HEADS), 1)

    def encode_frames(self, maps: np.ndarray) -> torch.Tensor:
        """(n, 3, 18, 32) float16 maps -> (n, D) frame embeddings."""
        return self.encoder(normalise(maps))

    def sequence(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, T, D) frame embeddings -> (B, 3, T) logits."""
        return self.head(self.temporal(emb.transpose(1, 2)))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:  # (B, T, 3, 18, 32) normalised -> (B, 3, T)
        b, t = maps.shape[:2]
        emb = self.encoder(maps.reshape(b * t, *maps.shape[2:])).reshape(b, t, -1)
        return self.sequence(emb)


def load_detector(folder: str | Path) -> tuple[DetectorNet, DetectorConfig]:
    folder = Path(folder)
    cfg = DetectorConfig.from_file(folder / "detector.json")
    net = DetectorNet(cfg)
    state = torch.load(folder / "detector.pt", map_location="cpu", weights_only=True)
    net.load_state_dict({k: v.float() for k, v in state.items()})
    net.eval()
    return net, cfg


def save_detector(net: DetectorNet, cfg: DetectorConfig, folder: str | Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().half() for k, v in net.state_dict().items()}, folder / "detector.pt")
    cfg.save(folder / "detector.json")
