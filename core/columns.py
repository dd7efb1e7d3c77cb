"""The query engine's stroke columns kept on disk beside the index, so that a fresh process reads
them in a fraction of a second instead of rebuilding them from every stroke row (seconds at
100,000 strokes, about 20 s at a million).

A file holds the columns of one state of one index: its key names the index (a random id kept in
the index), its generation (core.store: it changes with every change of strokes, captions or
corrections), the caption sources and the code that computes the columns, so a key that matches
means the same columns. Numeric columns are numpy arrays; the few lists and maps (names, caption
texts, matches, sets) are one JSON text. Anything unreadable is rebuilt, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# the code whose output the columns are: a change to any of these is a different file
_CODE = ("query.py", "fields.py", "outcome.py", "court.py", "vocab.py", "synonyms.toml", "columns.py")


@lru_cache(maxsize=1)
def code_hash() -> str:
    h = hashlib.sha256()
    for name in _CODE:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def load(path: Path, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """(arrays, JSON objects) saved under `key`, or None when the file is missing, stale or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            objects = json.loads(str(z["objects"]))
            return {k: z[k] for k in z.files if k not in ("key", "objects")}, objects
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001 - a damaged cache is rebuilt
        log.warning("%s: not read (%s); the columns are rebuilt", path, err)
        return None


def save(path: Path, key: str, arrays: dict[str, np.ndarray], objects: dict) -> None:
    """Written to a temporary file, then moved into place: a reader sees the old file or the new one."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, key=np.asarray(key), objects=np.asarray(json.dumps(objects)), **arrays)
        os.replace(tmp, path)
    except OSError as err:  # a read-only folder: questions still work, a fresh process rebuilds
        log.warning("%s: not written (%s)", path, err)
        tmp.unlink(missing_ok=True)
