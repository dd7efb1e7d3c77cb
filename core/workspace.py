"""The app's workspace: where the index, uploads, runs and exports live, and which paths a user
may name.

Every path typed into the app goes through `Workspace.resolve`: it is resolved (symlinks and
`..` included) and must lie inside the workspace or the shipped `assets/` folder. Paths read from
a file the user gave (a set file's match.csv and homography.csv, a manifest's base model) pass
`Workspace.allows`, the same test. Anything that
looks like a URL is refused outright: the app never fetches from the network.

Layout:
    WORKSPACE/index.sqlite    stroke index and token cache
    WORKSPACE/uploads/        videos and annotation files added from the browser
    WORKSPACE/media/          browser-playable copies of match videos, clip previews
    WORKSPACE/runs/           training runs (one folder each)
    WORKSPACE/exports/        result CSVs, highlight videos, caption exports
    WORKSPACE/data/           training data folders
"""
from __future__ import annotations

import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = ROOT / "assets"
DEFAULT_WORKSPACE = ROOT / "workspace"
DEMO_MATCH_DIR = ASSETS_DIR / "demo-match"
DEMO_MODEL_DIR = ASSETS_DIR / "demo-model"
INDEX_FILE = "index.sqlite"  # the app and `python -m core.index` share it
MAX_UPLOAD_BYTES = 2 * 1024**3  # a broadcast match at 720p is well under this
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://|^(www\.|//)")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class PathNotAllowed(ValueError):
    """A path outside the workspace and assets, or a URL; the message says which and why."""


def is_url(text: str) -> bool:
    return bool(_URL.match(str(text).strip()))


def safe_name(text: str, default: str = "item") -> str:
    """A file or folder name made of letters, digits, '.', '_' and '-' only (no separators, no '..')."""
    name = _SAFE_NAME.sub("_", str(text).strip()).strip("._")
    return name[:80] or default


def is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


class Workspace:
    """The folders the app reads and writes; `resolve` is the one gate for user-typed paths."""

    def __init__(self, root: str | Path = DEFAULT_WORKSPACE, extra_allowed: tuple[str | Path, ...] = ()) -> None:
        self.root = Path(root).expanduser().resolve()
        self.assets = ASSETS_DIR.resolve()
        # folders the app was started with (demo assets given on the command line) are readable too
        self.allowed = [self.root, self.assets, *(Path(p).expanduser().resolve() for p in extra_allowed)]
        for sub in ("uploads", "media", "runs", "exports", "data", "playlists"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_FILE

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def media(self) -> Path:
        return self.root / "media"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def playlists(self) -> Path:
        return self.root / "playlists"

    def resolve(self, text: str | Path, must_exist: bool = True, what: str = "path") -> Path:
        """A user-typed path, resolved; relative paths are taken inside the workspace.

        Raises PathNotAllowed for URLs, empty input, paths outside the allowed folders and (with
        `must_exist`) paths that do not exist.
        """
        raw = str(text).strip().strip('"').strip("'")
        if not raw:
            raise PathNotAllowed(f"give a {what}")
        if is_url(raw):
            raise PathNotAllowed(f"{raw}: URLs are not accepted; give a file inside the workspace ({self.root})")
        if "\x00" in raw:
            raise PathNotAllowed(f"{what}: invalid character in path")
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = self.root / path
        path = path.resolve()
        if not self.allows(path):
            raise PathNotAllowed(f"{raw}: outside the workspace; the app reads files only under "
                                 + " or ".join(str(f) for f in self.allowed))
        if must_exist and not path.exists():
            raise PathNotAllowed(f"{raw}: no such {what}")
        return path

    def allows(self, path: str | Path) -> bool:
        """The path, resolved (symlinks and `..` included), lies inside the workspace or assets."""
        resolved = Path(path).expanduser().resolve()
        return any(is_within(resolved, folder) for folder in self.allowed)

    def new_run_dir(self, stage: int, label: str = "") -> Path:
        """A fresh run folder name: runs/stage1-20250101-120000[-label][-n]."""
        stem = f"stage{stage}-{time.strftime('%Y%m%d-%H%M%S')}" + (f"-{safe_name(label)}" if label else "")
        path, n = self.runs / stem, 1
        while path.exists():
            n += 1
            path = self.runs / f"{stem}-{n}"
        return path

    def upload_dir(self, name: str) -> Path:
        """A new folder under uploads/ for one added match."""
        base = self.uploads / safe_name(name, "match")
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        path.mkdir(parents=True)
        return path
