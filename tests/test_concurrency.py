"""Questions and caption edits while a match is being indexed: answered from the last committed
state at once, not after the index; two questions are answered side by side."""
from __future__ import annotations

import shutil
import threading

import pytest

from core.engine import Engine
from core.loader import save_adapters
from core.query import QueryEngine
from tests.test_index import tiny_model, write_reference_csv

WAIT_S = 120  # only so that a deadlock fails the test instead of hanging it


@pytest.fixture
def engine(tmp_path, tiny_base, index_video) -> Engine:
    """A workspace with one match (annotations only) and a model loaded to index a second one."""
    eng = Engine(tmp_path / "ws", demo_match=tmp_path / "no-demo")
    eng.load(str(save_adapters(tiny_model(tiny_base), tmp_path / "adapters")), trusted=True)
    write_reference_csv(eng.workspace.uploads / "first.csv", game="first")
    write_reference_csv(eng.workspace.uploads / "second.csv", game="second")
    shutil.copy(index_video, eng.workspace.uploads / "second.mp4")
    eng.add_match("uploads/first.csv")
    return eng


def in_thread(call) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            out["error"] = err
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def finished(thread: threading.Thread, out: dict):
    thread.join(WAIT_S)
    assert not thread.is_alive(), "the call did not return: it waits for another one to finish"
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_question_during_indexing_is_answered_from_the_committed_state(engine):
    reached, release = threading.Event(), threading.Event()

    def held_in_the_model_pass(done, total, what):
        reached.set()
        release.wait(WAIT_S)

    indexing = in_thread(lambda: engine.add_match("uploads/second.csv", "uploads/second.mp4",
                                                  progress=held_in_the_model_pass))
    assert reached.wait(WAIT_S)
    try:
        answer = finished(*in_thread(lambda: engine.ask("smash")))
        assert answer.rows and {r["match"] for r in answer.rows} == {"first"}
        stroke = answer.rows[0]
        finished(*in_thread(lambda: engine.set_caption(stroke["id"], "upper player hits a steep smash")))
        assert indexing[0].is_alive()  # still held: the answer and the edit did not wait for it
    finally:
        release.set()
    finished(*indexing)
    after = engine.ask("smash")
    assert {r["match"] for r in after.rows} == {"first", "second"}
    assert "upper player hits a steep smash" in [r["caption"] for r in after.rows]


def test_two_questions_are_answered_side_by_side(engine, monkeypatch):
    both_inside = threading.Barrier(2, timeout=WAIT_S)  # broken (an error) if one question waits for the other
    merge = QueryEngine._merge

    def merge_when_both_are_inside(self, *args):
        both_inside.wait()
        return merge(self, *args)
    monkeypatch.setattr(QueryEngine, "_merge", merge_when_both_are_inside)
    first, second = in_thread(lambda: engine.ask("smash")), in_thread(lambda: engine.ask("lob"))
    assert finished(*first).rows and finished(*second).rows
