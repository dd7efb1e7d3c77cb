"""The analyst app in Debian's chromium: ask, see, jump, filter, correct, train.

The demo is set 1 of the Momota - Chou excerpt (29 strokes): CHOU Tien Chen (player B, bottom
half in set 1) plays clears as strokes 4 of rally 1 (hit at 4.24 s) and 11 of rally 5 (its time
depends on the cut-aways the render puts between rallies: read from the render's set CSV).
"""
from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest

pytest.importorskip("playwright")

QUESTION = "when does the bottom player play a clear?"
MARKS = "#timeline .scatterlayer .point"


@pytest.fixture(scope="module")
def clears(demo) -> list[tuple[str, float]]:
    """(hit time as the results table shows it, where a seek to it lands) of the bottom player's two
    clears in the render: the clip window starts 7 frames before the hit, the player 0.5 s earlier."""
    from core.annotations import load_annotations

    table = load_annotations(next(demo["match"].glob("*/set1.csv")))
    fps = 25.0  # the render's default
    hits = [s.frame for s in table.strokes if s.stroke == "clear" and s.side == "bottom"]
    assert len(hits) == 2, hits
    return [(str(round(f / fps, 2)), (f - 7) / fps - 0.5) for f in hits]


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _answered(page, question: str) -> None:
    """Wait until the shown answer is the one to `question` (the message quotes it)."""
    page.wait_for_function("(q) => document.querySelector('#answer-message').innerText.includes('“' + q + '”')",
                           arg=question, timeout=60_000)


def _ask(page, question: str) -> None:
    page.fill("#question input", question)
    page.click("#ask")
    _answered(page, question)


def _in_view(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 768 and box["x"] + box["width"] <= 1366


def _result_rows(page) -> int:
    return page.evaluate("document.querySelectorAll(\"#results [data-testid^='cell-'][data-testid$='-0']\").length")


def _video(page, prop: str) -> float:
    return page.evaluate(f"document.querySelector('#match-video video').{prop}")


def _wait_uploaded(page, box: str, name: str) -> None:
    """The upload box shows the file (its name may wrap between stem and extension)."""
    page.wait_for_function("([box, name]) => document.querySelector(box).innerText.replace(/\\s+/g, '').includes(name)",
                           arg=[box, name], timeout=60_000)


def _load_in_a_video(page, src: str) -> dict:
    """A new <video> element's state once `src` has loaded in it (or failed): ready, error, seconds."""
    return page.evaluate("""(src) => new Promise((done) => {
        const v = document.createElement('video');
        v.muted = true;
        v.onloadeddata = () => done({ready: v.readyState, error: null, seconds: v.duration});
        v.onerror = () => done({ready: v.readyState, error: v.error && v.error.code});
        v.src = src;
        document.body.appendChild(v);
    })""", src)


def _wait_src(page, name: str) -> None:
    """The player holds the video file `name` (the element is replaced while Gradio swaps files)."""
    page.wait_for_function("(n) => { const v = document.querySelector('#match-video video');"
                           " return v && decodeURIComponent(v.currentSrc).includes(n); }", arg=name, timeout=60_000)


def _wait_time(page, low: float, high: float) -> None:
    """The player's currentTime within [low - 0.05, high] (it plays on from the seek point)."""
    page.wait_for_function(f"(() => {{ const t = document.querySelector('#match-video video').currentTime;"
                           f" return t >= {low - 0.05} && t <= {high}; }})()", timeout=90_000)


def test_ask_shows_results_and_timeline_and_seeks(page, shot, clears):
    shot(page, "analyze-start")
    _ask(page, QUESTION)
    assert "2 matching strokes" in page.inner_text("#answer-message")
    table = page.inner_text("#results")
    for t, _ in clears:
        assert t in table
    assert table.count("bottom player hits a clear") == 2
    # the timeline has one mark per result, in the player's lane
    marks = page.locator(MARKS)
    assert marks.count() == 2
    assert "CHOU Tien Chen" in page.inner_text("#timeline")
    shot(page, "analyze-results")

    # clicking a row seeks the player to just before that stroke (window start - 0.5 s lead)
    page.locator("#results").get_by_test_id("cell-1-3").click()
    _wait_time(page, clears[1][1], clears[1][1] + 2.1)
    # clicking the first timeline mark seeks to the first clear (3.96 s - 0.5 s)
    page.locator("#timeline").scroll_into_view_if_needed()
    box = page.locator(MARKS).nth(0).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)  # as a user does: the mark's label shows, then the click lands on it
    page.wait_for_selector("#timeline .hoverlayer .hovertext", timeout=30_000)
    assert "set 1 · rally 1 · stroke 4" in page.text_content("#timeline .hoverlayer")
    page.mouse.click(x, y)
    _wait_time(page, 3.46, 5.9)
    shot(page, "analyze-seek")


def test_at_a_laptop_size_enter_asks_and_the_answer_shows_beside_the_video(page, shot, clears):
    page.fill("#question input", QUESTION)
    page.press("#question input", "Enter")
    _answered(page, QUESTION)
    assert "2 matching strokes" in page.inner_text("#answer-message")
    for part in ("#match-video video", "#answer-message", "#results [data-testid='cell-0-0']", "#ask"):
        assert _in_view(page, part), part
    shot(page, "analyze-laptop")
    # a second question asked while the first runs replaces it: the answer shown is the last one's
    page.fill("#question input", "Find every serve")
    page.press("#question input", "Enter")
    page.fill("#question input", QUESTION)
    page.press("#question input", "Enter")
    _answered(page, QUESTION)
    time.sleep(2)  # nothing older arrives afterwards
    assert "“" + QUESTION + "”" in page.inner_text("#answer-message")
    assert _result_rows(page) == 2
    # an empty question says why and keeps the results
    page.fill("#question input", " ")
    page.press("#question input", "Enter")
    page.wait_for_function("document.querySelector('#answer-message').innerText.includes('unchanged')")
    assert _result_rows(page) == 2


def test_player_keys_step_frames_and_seconds_and_set_the_speed(page, shot):
    page.wait_for_function("(() => { const v = document.querySelector('#match-video video');"
                           " return v && v.readyState >= 2; })()", timeout=60_000)
    page.locator("h1").click()  # the focus off any text field
    page.keyboard.press("Shift+ArrowRight")
    page.wait_for_function("Math.abs(document.querySelector('#match-video video').currentTime - 1) < 0.01")
    page.keyboard.press(".")
    assert _video(page, "currentTime") == pytest.approx(1.04, abs=0.005)  # one frame at 25 fps
    page.keyboard.press(",")
    page.keyboard.press(",")
    assert _video(page, "currentTime") == pytest.approx(0.96, abs=0.005)
    page.keyboard.press("l")  # play
    page.wait_for_function("!document.querySelector('#match-video video').paused")
    page.keyboard.press("l")  # faster
    assert _video(page, "playbackRate") == 1.5
    page.keyboard.press("k")
    assert page.evaluate("document.querySelector('#match-video video').paused")
    page.locator("#speed").get_by_text("0.5", exact=True).click()
    page.wait_for_function("document.querySelector('#match-video video').playbackRate === 0.5")
    # typing in the question box is not taken for keys
    t = _video(page, "currentTime")
    page.fill("#question input", "")
    page.press("#question input", ".")
    assert _video(page, "currentTime") == t


def test_a_clip_plays_from_the_chosen_lead_in_and_loops(page, shot, clears):
    _ask(page, QUESTION)
    page.fill("#lead-in input", "2")
    page.locator("#loop-clip input").check()
    page.locator("#results").get_by_test_id("cell-0-3").click()
    start = clears[0][1] + 0.5 - 2.0  # the window's start, 2 s earlier
    _wait_time(page, start, start + 1.0)
    seen = []
    for _ in range(24):  # 4.8 s: longer than the clip (its window, 2 s before, 0.2 s after)
        seen.append(_video(page, "currentTime"))
        time.sleep(0.2)
    assert max(seen) < start + 2.0 + 1.0 + 0.6  # never far past the clip's end
    assert any(b < a - 1.0 for a, b in zip(seen, seen[1:]))  # it went back to the start
    page.locator("#loop-clip input").uncheck()
    page.fill("#lead-in input", "0.5")
    page.locator("h1").click()
    page.keyboard.press("k")


def test_the_timeline_bands_the_rallies_with_their_scores_and_a_label_click_zooms_to_one(page, shot):
    _ask(page, QUESTION)
    page.wait_for_function("document.querySelector('#timeline').innerText.includes('R5 ')")  # "R5 3-1": number, score
    xrange = "(() => document.querySelector('#timeline .js-plotly-plot')._fullLayout.xaxis.range.slice())()"
    whole = page.evaluate(xrange)
    page.locator("#timeline").scroll_into_view_if_needed()
    label = page.locator("#timeline .annotation", has_text="R5 ")
    label.hover()
    page.wait_for_selector("#timeline .hoverlayer .hovertext", timeout=30_000)
    assert "rally 5" in page.text_content("#timeline .hoverlayer")
    label.click()
    page.wait_for_function("document.querySelector('#timeline-zoom input').value.startsWith('Rally 5')")
    # rally 5 (from 10.4 s) and a second either side: rally 1 and its clear at 4.24 s out of view
    page.wait_for_function(f"(() => {{ const r = {xrange}; return r[0] > 8 && r[1] > {whole[1]}; }})()")
    shot(page, "analyze-zoomed-rally")
    page.click("#timeline-zoom input")
    page.get_by_role("option", name="whole video").click()
    page.wait_for_function(f"(() => {{ const r = {xrange}; return r[0] === 0 && r[1] === {whole[1]}; }})()")


def test_the_timeline_playhead_follows_the_video(page, shot):
    _ask(page, QUESTION)
    page.locator("h1").click()
    page.keyboard.press(" ")
    page.wait_for_selector("#timeline .sl-playhead", state="visible", timeout=30_000)
    first = page.locator("#timeline .sl-playhead").bounding_box()["x"]
    page.wait_for_function("document.querySelector('#match-video video').currentTime > 2.5", timeout=30_000)
    time.sleep(0.5)
    assert page.locator("#timeline .sl-playhead").bounding_box()["x"] > first + 5
    played = float(page.get_attribute("#timeline .sl-playhead", "data-t"))
    assert played == pytest.approx(_video(page, "currentTime"), abs=0.6)
    page.keyboard.press("k")
    shot(page, "analyze-playhead")


def test_a_rally_question_shades_its_rallies_and_a_count_question_counts(page, shot):
    _ask(page, "rallies of more than 20 shots")
    assert "1 matching rally (24 strokes)" in page.inner_text("#answer-message")  # rally 5 of the demo set
    page.wait_for_selector("#timeline .shapelayer path")
    assert "R5" in page.inner_text("#timeline")
    shot(page, "analyze-long-rallies")
    _ask(page, "who hit more clears")
    page.wait_for_selector("#answer-counts", state="visible")
    counts = page.inner_text("#answer-counts")
    assert "CHOU Tien Chen" in counts and "Kento MOMOTA" in counts
    shot(page, "analyze-count")
    _ask(page, "smashes")
    page.wait_for_selector("#answer-counts", state="hidden")  # a question that counts nothing


def test_play_all_and_exports(page, shot):
    _ask(page, QUESTION)
    page.click("#play-all")
    _wait_time(page, 3.46, 5.5)
    page.get_by_role("button", name="Export CSV").click()
    page.wait_for_selector("#export-file a", timeout=30_000)
    assert ".csv" in page.inner_text("#export-file")
    page.get_by_role("button", name="Export highlight mp4").click()
    page.wait_for_function("document.querySelector('#export-file').innerText.includes('.mp4')", timeout=120_000)
    href = page.get_attribute("#export-file a[href*='.mp4']", "href")
    # the highlight video plays in the browser as it is (H.264)
    state = _load_in_a_video(page, href)
    assert state["error"] is None and state["ready"] >= 2 and state["seconds"] > 1, state
    shot(page, "analyze-exports")


def test_strokes_filter_and_caption_persists(page, shot, app_url):
    _tab(page, "Strokes")
    page.wait_for_function("document.querySelector('#stroke-count').innerText.includes('29 strokes')")
    # filter: stroke type = clear
    page.click("#filter-stroke input")
    page.get_by_role("option", name="clear", exact=True).click()
    page.wait_for_function("!document.querySelector('#stroke-count').innerText.includes('29 strokes')")
    count = int(re.search(r"(\d+) strokes", page.inner_text("#stroke-count")).group(1))
    assert 2 <= count < 29
    shot(page, "strokes-filtered")

    # edit the caption of the first listed stroke
    page.locator("#stroke-table").get_by_test_id("cell-0-3").click()
    page.wait_for_function("document.querySelector('#caption-edit textarea').value.length > 0")
    new = "bottom player hits a high defensive clear from the right backcourt"
    page.fill("#caption-edit textarea", new)
    page.click("#save-caption")
    page.wait_for_function(f"document.querySelector('#stroke-table').innerText.includes({new!r})")
    shot(page, "strokes-edited")

    page.reload()
    page.wait_for_selector("#question input")
    _tab(page, "Strokes")
    page.wait_for_function(f"document.querySelector('#stroke-table').innerText.includes({new!r})")


def test_stats_and_model_tabs(page, shot):
    _tab(page, "Stats")
    page.wait_for_function("document.querySelector('#stats-note').innerText.includes('strokes of the whole match')")
    assert "29 strokes" in page.inner_text("#stats-note")
    page.wait_for_selector("#stats-court .js-plotly-plot")
    shot(page, "stats")
    _tab(page, "Model")
    page.wait_for_function("document.querySelector('#model-status').innerText.includes('MiB')")
    shot(page, "model")


def test_summary_tab_reports_the_match_and_a_chart_click_shows_its_rally(page, shot):
    _tab(page, "Summary")
    page.wait_for_function("document.querySelector('#summary-report').innerText.includes('Points')", timeout=60_000)
    report = page.inner_text("#summary-report")
    assert "Kento MOMOTA" in report and "CHOU Tien Chen" in report
    page.wait_for_selector("#summary-chart .js-plotly-plot .point")
    shot(page, "summary")
    page.locator("#summary-chart .js-plotly-plot .point").first.click(force=True)
    page.wait_for_function("document.querySelector('#summary-rally-text').innerText.includes('Rally')", timeout=30_000)
    shot(page, "summary-rally")


def test_a_summary_rally_plays_in_the_analyze_player_and_rally_questions_list_rallies(page, shot):
    _tab(page, "Summary")
    page.wait_for_selector("#summary-rallies [data-testid='cell-1-0']")
    page.locator("#summary-rallies").get_by_test_id("cell-1-0").click()  # the second rally's row
    page.wait_for_function("document.querySelector('#summary-rally-text').innerText.includes('Rally 5')", timeout=30_000)
    page.click("#summary-watch")
    page.wait_for_selector("#match-video video", state="visible")  # the Analyze tab, its player
    _ask(page, "rally 5")  # an answer that is rallies: one row, the rally's start in its last column
    assert "1 matching rally" in page.inner_text("#answer-message")
    assert "how it ended" in page.inner_text("#results")
    start = float(page.inner_text("#results [data-testid='cell-0-6']"))
    _wait_time(page, start - 0.5, start + 60)  # playing from the rally's start
    shot(page, "analyze-rally")


def test_a_file_that_is_not_a_video_is_refused_beside_the_add_button_and_the_picker_stays(page, shot, tmp_path):
    fake = tmp_path / "holiday.mp4"
    fake.write_text("these are not video frames\n" * 100)
    before = page.input_value("#match-pick input")
    page.locator("#add-match-form").get_by_text("Add a match").first.click()
    page.set_input_files("#add-match-form input[type=file] >> nth=0", str(fake))
    _wait_uploaded(page, "#add-match-form", "holiday.mp4")
    page.click("#add-match")
    page.wait_for_function("document.querySelector('#add-status').innerText.includes('⚠')", timeout=60_000)
    assert "⚠ holiday.mp4: not a readable video file" in page.inner_text("#add-status")  # the file, not its folders
    assert page.input_value("#match-pick input") == before
    assert page.locator("#match-pick .error, #match-video .error").count() == 0  # no Error badge on them
    assert "holiday" not in page.evaluate("Array.from(document.querySelectorAll('#match-pick input')).map(e => e.value).join()")
    shot(page, "add-refused")


def test_a_shuttleset_folder_zip_adds_its_sets_with_the_players_named(page, shot, tmp_path):
    import zipfile

    root = Path(__file__).resolve().parents[1] / "data" / "shuttleset"
    match = "Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals"
    copy = "Denmark_Open_2018_Final_replay"  # a match of its own, the demo match left as it is
    archive = tmp_path / "denmark.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("match.csv", "homography.csv"):
            lines = (root / name).read_text(encoding="utf-8").splitlines()
            z.writestr(name, "\n".join([lines[0]] + [ln.replace(match, copy) for ln in lines[1:] if match in ln]) + "\n")
        z.write(root / match / "set3.csv", f"{copy}/set3.csv")
    page.locator("#add-match-form").get_by_text("Add a match").first.click()
    page.set_input_files("#add-folder input[type=file]", str(archive))
    _wait_uploaded(page, "#add-folder", "denmark.zip")
    page.click("#add-match")
    page.wait_for_function("document.querySelector('#add-status').innerText.includes('Added')", timeout=120_000)
    assert "Added Denmark Open 2018 Final replay (129 strokes)" in page.inner_text("#add-status")
    assert "Kento MOMOTA vs CHOU Tien Chen" in page.input_value("#match-pick input")  # match.csv's names
    shot(page, "add-shuttleset-zip")
    _ask(page, "Kento MOMOTA's smashes")
    message = page.inner_text("#answer-message")
    assert "matching stroke" in message and "does not" not in message, message


DETECTOR = Path(__file__).resolve().parents[2] / "assets" / "detector" / "detector.json"


@pytest.mark.skipif(not DETECTOR.is_file(), reason="no shipped detector in assets/detector")
def test_a_match_from_a_video_alone_is_detected_answers_and_takes_an_added_hit(page, shot, video_only, demo):
    page.locator("#add-match-form").get_by_text("Add a match").first.click()
    page.fill("#add-video-path textarea, #add-video-path input", video_only)
    page.fill("#player-bottom textarea, #player-bottom input", "CHOU Tien Chen")
    page.fill("#player-upper textarea, #player-upper input", "Kento MOMOTA")
    page.click("#add-match")
    page.wait_for_function("document.querySelector('#add-status').innerText.includes('Detected')", timeout=240_000)
    status = page.inner_text("#add-status")
    n = int(re.search(r"Detected (\d+) strokes", status).group(1))
    assert n >= 2, status  # how many the detector finds is its own tests' business
    assert "rally-video" in page.input_value("#match-pick input")
    # the index holds the detected strokes with the typed names; a question on one side finds exactly its strokes
    with sqlite3.connect(demo["workspace"] / "index.sqlite") as db:
        sides = dict(db.execute("SELECT s.side, count(*) FROM strokes s JOIN matches m ON m.id=s.match_id "
                                "WHERE m.name='rally-video' GROUP BY s.side").fetchall())
        names = {r[0] for r in db.execute("SELECT DISTINCT player_name FROM strokes s JOIN matches m ON "
                                          "m.id=s.match_id WHERE m.name='rally-video'")}
    assert sum(sides.values()) == n and names <= {"CHOU Tien Chen", "Kento MOMOTA"}
    side = max(sides, key=sides.get)
    _ask(page, f"when does the {side} player hit?")
    message = page.inner_text("#answer-message")
    assert f"{sides[side]} matching stroke" in message, message
    assert ("CHOU Tien Chen" if side == "bottom" else "Kento MOMOTA") in page.inner_text("#timeline")
    shot(page, "video-only-answer")

    # Strokes tab: the detected strokes; key H adds a hit at the edit player's time
    _tab(page, "Strokes")
    page.wait_for_function(f"document.querySelector('#stroke-count').innerText.includes('{n} strokes')")
    page.wait_for_function("(() => { const v = document.querySelector('#edit-video video');"
                           " return v && v.readyState >= 1; })()", timeout=60_000)
    page.evaluate("document.querySelector('#edit-video video').currentTime = 0.5")
    page.wait_for_function("Math.abs(document.querySelector('#edit-video video').currentTime - 0.5) < 0.05")
    page.locator("body").click(position={"x": 5, "y": 5})  # focus outside any text field
    page.keyboard.press("h")
    page.wait_for_function("document.querySelector('#edit-status').innerText.includes('Added a hit at 0.50 s')",
                           timeout=60_000)
    page.wait_for_function(f"document.querySelector('#stroke-count').innerText.includes('{n + 1} strokes')")
    assert "added" in page.inner_text("#stroke-table")
    # a click on a stroke seeks the edit player to just before it (its window starts 7 frames early)
    page.evaluate("document.querySelector('#edit-video video').pause()")
    last = page.locator("#stroke-table").get_by_test_id(f"cell-{n}-4")  # the last of the n + 1 strokes
    hit = float(last.inner_text())
    last.click()
    low = max(0.0, hit - 7 / 25 - 0.5)
    page.wait_for_function(f"(() => {{ const t = document.querySelector('#edit-video video').currentTime;"
                           f" return t >= {low - 0.05} && t <= {hit + 2}; }})()", timeout=60_000)
    shot(page, "video-only-added-hit")


@pytest.mark.skipif(not DETECTOR.is_file(), reason="no shipped detector in assets/detector")
def test_a_playlist_of_two_matches_is_reordered_saved_played_across_videos_and_exported(page, shot):
    """After the video-only match was added: the demo's two clears and a rally of the other match's
    video in a playlist, the rally moved first, saved, opened in a fresh page, played through both
    videos (the page swaps the file itself), exported as an EDL and a highlight mp4 that plays."""
    page.locator("#playlist-box").get_by_text("Playlist").first.click()
    _ask(page, QUESTION)
    n = int(re.search(r"(\d+) matching stroke", page.inner_text("#answer-message")).group(1))  # 2, or 3 after
    first = float(page.inner_text("#results [data-testid='cell-0-3']")) - 7 / 25 - 0.5  # its seek point
    page.click("#playlist-add")  # the strokes test's correction made one more stroke a bottom player's clear
    page.wait_for_function(f"document.querySelector('#playlist-note').innerText.includes('holds {n}')")
    page.click("#match-pick input")
    page.get_by_role("option", name=re.compile("rally-video")).click()
    _wait_src(page, "rally-video")
    _ask(page, "rally 1")
    assert "1 matching rally" in page.inner_text("#answer-message")
    page.click("#playlist-add")
    page.wait_for_function(f"document.querySelector('#playlist-note').innerText.includes('holds {n + 1}')")
    page.locator("#playlist").get_by_test_id(f"cell-{n}-0").click()  # the rally, last
    page.wait_for_function(f"document.querySelector('#playlist-note').innerText.includes('Clip {n + 1} picked')")
    for place in range(n, 0, -1):
        page.click("#playlist-up")
        page.wait_for_function(f"document.querySelector('#playlist-note').innerText.includes('now clip {place}.')")
    page.fill("#playlist-name input, #playlist-name textarea", "two matches")
    page.click("#playlist-save")
    page.wait_for_function("document.querySelector('#playlist-note').innerText.includes('Saved')")

    page.reload()  # the next session: open it by name
    page.wait_for_selector("#question input")
    page.wait_for_function("document.querySelector('#match-pick input').value.length > 0")
    page.locator("#playlist-box").get_by_text("Playlist").first.click()
    page.click("#playlist-saved input")
    page.get_by_role("option", name="two_matches").click()
    page.click("#playlist-open")
    page.wait_for_function("document.querySelector('#playlist-note').innerText.includes('Opened')")
    assert "Rally 1" in page.inner_text("#playlist [data-testid='cell-0-5']")
    page.fill("#lead-out input", "0")
    page.locator("#speed").get_by_label("2", exact=True).check()  # speed 2x, kept across the file swaps
    page.click("#playlist-play")
    _wait_src(page, "rally-video")
    shot(page, "playlist-playing-rally")
    # after the rally, the demo video is loaded and played from the first clear's seek point
    page.wait_for_function(f"(() => {{ const v = document.querySelector('#match-video video');"
                           f" return v && !decodeURIComponent(v.currentSrc).includes('rally-video') && !v.paused"
                           f" && v.currentTime >= {first - 0.05} && v.currentTime <= {first + 2}; }})()",
                           timeout=90_000)
    assert _video(page, "playbackRate") == 2
    shot(page, "playlist-playing-clear")
    page.click("#playlist-edl")
    page.wait_for_selector("#export-file a[href*='playlist-two_matches.edl']", timeout=60_000)
    page.click("#playlist-mp4")
    page.wait_for_selector("#export-file a[href*='playlist-two_matches.mp4']", timeout=180_000)
    href = page.get_attribute("#export-file a[href*='.mp4']", "href")
    state = _load_in_a_video(page, href)
    assert state["error"] is None and state["ready"] >= 2 and state["seconds"] > 3 * 1.5, state  # 3 cards at least
    shot(page, "playlist-exported")


def _run_end_status(page, seconds: float = 120) -> str:
    """The Train tab's status line once the started run has finished or failed (or the time is up)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        status = page.inner_text("#train-status")
        if "finished" in status or "failed" in status:
            return status
        time.sleep(1)
    return page.inner_text("#train-status")


def test_tiny_training_run_finishes_with_metrics(page, shot):
    _tab(page, "Train")
    page.fill("#run-name textarea, #run-name input", "smoke")
    page.fill("#max-steps input", "2")
    page.locator("#tiny input").check()
    page.click("#train-start")
    page.wait_for_function("document.querySelector('#train-status').innerText.includes('Started')"
                           " || document.querySelector('#train-status').innerText.includes('running')")
    status = _run_end_status(page)
    log = page.input_value("#train-log textarea")
    assert "finished" in status, f"{status}\n{log}"
    assert "loss" in status and "val_" in status, status
    page.wait_for_function("document.querySelector('#runs-table').innerText.includes('smoke')")
    assert "finished" in page.inner_text("#runs-table")
    shot(page, "train-finished")
    page.click("#use-run")
    page.wait_for_function("document.querySelector('#use-status').innerText.includes('Using')", timeout=120_000)
    assert "smoke" in page.inner_text("#use-status")


def test_stage2_run_repeats_impossible_questions_to_the_chosen_share(page, shot, demo):
    """Stage 2 from the finished stage-1 run, with an impossible-question share set in the tab."""
    _tab(page, "Train")
    page.locator("#train-stage").get_by_label("2").check()
    page.click("#train-init input")
    page.get_by_role("option", name=re.compile(r"stage1-.*-smoke")).click()
    page.fill("#run-name textarea, #run-name input", "negatives")
    page.fill("#max-steps input", "2")
    page.fill("#negative-share input", "0.4")
    page.locator("#tiny input").uncheck()
    page.click("#train-start")
    page.wait_for_function("document.querySelector('#train-status').innerText.includes('Started')")
    name = re.search(r"(stage2-\S+-negatives)", page.inner_text("#train-status")).group(1)
    status = _run_end_status(page)
    assert "finished" in status, f"{status}\n{page.input_value('#train-log textarea')}"
    run = demo["workspace"] / "runs" / name
    assert "negative_share: 0.4" in (run / "config.yaml").read_text()
    assert "impossible questions repeated to 40 %" in (run / "train.log").read_text()
    shot(page, "train-stage2-negatives")


def test_fine_tuning_the_loaded_model_on_corrected_captions_runs_to_the_end_and_captions_the_match(page, shot):
    _tab(page, "Strokes")
    page.wait_for_selector("#stroke-table [data-testid='cell-2-3']")

    corrected = ["upper player hits a drop at the left side of the net", "bottom player hits a lob in the middle"]
    for row, text in zip((1, 2), corrected):  # two more corrections beside the one of the strokes test
        page.locator("#stroke-table").get_by_test_id(f"cell-{row}-3").click()
        page.wait_for_function("document.querySelector('#caption-edit textarea').value.length > 0")
        page.fill("#caption-edit textarea", text)
        page.click("#save-caption")
        page.wait_for_function(f"document.querySelector('#stroke-table').innerText.includes({text!r})")
    _tab(page, "Train")
    page.fill("#finetune-steps input", "3")
    page.click("#finetune-start")
    page.wait_for_function("document.querySelector('#train-status').innerText.includes('Started')", timeout=60_000)
    started = page.inner_text("#train-status")
    assert "3 steps on 29 strokes" in started and "corrected" in started, started
    status = _run_end_status(page, 240)
    assert "finished" in status and "step 3/3" in status and "not evaluated" in status, status
    assert "nan" not in status
    shot(page, "train-finetuned")
    page.click("#use-run")
    page.wait_for_function("document.querySelector('#use-status').innerText.includes('Captioned')", timeout=120_000)
    assert "Captioned the 29 strokes" in page.inner_text("#use-status")
    _tab(page, "Strokes")
    for text in corrected:  # the coach's corrections stay; the model's captions are new beside them
        page.wait_for_function(f"document.querySelector('#stroke-table').innerText.includes({text!r})")
    shot(page, "strokes-after-finetune")
    # the second button: question answering (stage 2) from the model now in use, on the same captions
    _tab(page, "Train")
    page.fill("#finetune-steps input", "2")
    page.click("#finetune-questions")
    page.wait_for_function("document.querySelector('#train-status').innerText.includes('questions about')",
                           timeout=60_000)
    assert "2 steps on" in page.inner_text("#train-status")
    status = _run_end_status(page, 240)
    assert "finished" in status and "step 2/2" in status and "not evaluated" in status, status
    shot(page, "train-finetuned-questions")
