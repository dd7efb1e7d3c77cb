"""The engine's stroke columns kept beside the index: a fresh process reads exactly what it would
build, and any change of the index (or a damaged file) makes it build them again."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.indexer import add_match
from core.query import StrokeArrays
from core.store import StrokeStore

DATA = Path(__file__).parent / "data" / "shuttleset"


@pytest.fixture
def index(tmp_path):
    store = StrokeStore(tmp_path / "i.sqlite")
    for f in sorted(DATA.glob("*/set*.csv"))[:2]:
        add_match(store, f)
    return store


def same(a: StrokeArrays, b: StrokeArrays) -> None:
    assert vars(a).keys() == vars(b).keys()
    for k, v in vars(a).items():
        if isinstance(v, np.ndarray):
            assert v.dtype == vars(b)[k].dtype and np.array_equal(v, vars(b)[k], equal_nan=v.dtype.kind == "f"), k
        else:
            assert v == vars(b)[k], k


def test_a_fresh_process_reads_the_columns_it_would_build(index, monkeypatch):
    built = StrokeArrays(index)
    assert index.columns_file.is_file()
    monkeypatch.setattr(StrokeArrays, "_read", lambda *a: pytest.fail("built again, not read"))
    same(StrokeArrays(StrokeStore(index.path)), built)


def test_a_change_of_the_index_builds_them_again(index):
    before = StrokeArrays(index)
    stroke_id = int(before.id[0])
    index.set_caption(stroke_id, "upper player hits a smash in the backcourt")
    after = StrokeArrays(StrokeStore(index.path))
    assert after.generation != before.generation
    assert after.texts[after.text[0]] == "upper player hits a smash in the backcourt"


def test_a_damaged_or_foreign_file_is_not_trusted(index, tmp_path):
    built = StrokeArrays(index)
    index.columns_file.write_bytes(b"not a columns file")
    same(StrokeArrays(StrokeStore(index.path)), built)
    other = StrokeStore(tmp_path / "other.sqlite")  # another index at the same generation
    for f in sorted(DATA.glob("*/set*.csv"))[1:3]:
        add_match(other, f)
    assert other.generation() == index.generation()
    other.columns_file.write_bytes(index.columns_file.read_bytes())
    assert StrokeArrays(other).set_no.tolist() != built.set_no.tolist()
