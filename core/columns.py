"""The query engine's stroke columns kept on disk beside the index, so that a fresh process reads
them in a fraction of a second instead of rebuilding them from every stroke row (seconds at
100,000 strokes, about 20 s at a million).

A file holds the columns of one state of one index: its key names the index (a random id kept in
the index), its generation (core.store: it changes with every change of strokes, captions or
corrections), the caption sources and the code that computes the columns, so a key that matches
means the same columns. The file is a JSON header (the key; the few lists and maps: names, caption
texts, matches, sets; each array's place) and the arrays' raw bytes, mapped into memory when read.
Anything unreadable is rebuilt, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import mmap
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MAGIC = b"shuttle-lens columns 1\n"
ALIGN = 64  # every array starts at a multiple of this many bytes
# the code whose output the columns are: a change to any of these is a different file
_CODE = ("query.py", "fields.py", "outcome.py", "court.py", "vocab.py", "synonyms.toml", "columns.py")


@lru_cache(maxsize=1)
def code_hash() -> str:
    h = hashlib.sha256()
    for name in _CODE:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def load(path: Path, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """(arrays, JSON objects) saved under `key`, or None when the file is missing, stale or unreadable.
    The arrays map the file copy-on-write: pages are read when first used, never written back."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise ValueError("not a columns file")
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
            if header["key"] != key:
                return None
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        start = _aligned(len(MAGIC) + 8 + size)
        arrays = {name: np.frombuffer(data, np.dtype(dtype), count=math.prod(shape), offset=start + offset)
                  .reshape(shape) for name, dtype, shape, offset in header["arrays"]}
        return arrays, header["objects"]
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001 - a damaged cache is rebuilt
        log.warning("%s: not read (%s); the columns are rebuilt", path, err)
        return None


def save(path: Path, key: str, arrays: dict[str, np.ndarray], objects: dict) -> None:
    """MAGIC, the header's length and the JSON header (key, objects, each array's dtype, shape and
    offset from the data's start, the first multiple of ALIGN after the header), then the arrays'
    bytes, each at a multiple of ALIGN. Written to a temporary file, then moved into place: a
    reader sees the old file or the new one."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    layout, offset = [], 0
    for name, a in arrays.items():
        offset = _aligned(offset)
        layout.append([name, a.dtype.str, list(a.shape), offset])
        offset += a.nbytes
    head = json.dumps({"key": key, "objects": objects, "arrays": layout}).encode()
    start = _aligned(len(MAGIC) + 8 + len(head))
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + len(head).to_bytes(8, "little") + head)
            for (_, _, _, at), a in zip(layout, arrays.values()):
                f.write(b"\0" * (start + at - f.tell()))
                f.write(memoryview(a).cast("B") if a.nbytes else b"")
        os.replace(tmp, path)
    except OSError as err:  # a read-only folder: questions still work, a fresh process rebuilds
        log.warning("%s: not written (%s)", path, err)
        tmp.unlink(missing_ok=True)
