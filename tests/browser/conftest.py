"""The app in a real browser: a tiny demo (a rendered ShuttleSet set + a tiny model + a training
data folder) built once per session, the app started on it in a subprocess on a free port, and
Debian's chromium driven by Playwright. Skipped where chromium or Playwright is missing."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SHUTTLE_LENS_CHROMIUM", "/usr/bin/chromium")
SET_CSV = ROOT / "tests/data/shuttleset/Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals/set1.csv"
SCREENS = Path(os.environ.get("SHUTTLE_LENS_SCREENS", "/tmp/shuttle_lens_screens"))
START_TIMEOUT_S = 150


def _run(*args: str) -> None:
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True, timeout=300,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> dict:
    """A 2-rally replay of a real set at 320x180, a tiny stage-1 model, a training data folder."""
    root = tmp_path_factory.mktemp("demo")
    _run("-m", "train.replay", "--set", str(SET_CSV), "--out", str(root / "match"), "--size", "320x180")
    _run("-c", (
        "import sys; from core.tiny import build_tiny_base; from core.config import ModelSettings, LoraSettings;"
        "from core.loader import build_model, save_adapters; out = sys.argv[1];"
        "base = build_tiny_base(out + '/base');"
        "m = build_model(ModelSettings(base=str(base), num_frames=4, lora=LoraSettings.experiment(1)), stage=1);"
        "save_adapters(m, out + '/model')"), str(root))
    workspace = root / "workspace"
    data = workspace / "data" / "demo"
    _run("-m", "train.build_dataset", "--annotations", *map(str, (root / "match").glob("*/set1.csv")),
         "--videos", str(root / "match"), "--out", str(data), "--no-progress")
    # one match only: the split put every stroke in train; validate on the same strokes so that
    # a run reports validation metrics too
    shutil.copy(data / "train.json", data / "val.json")
    (data / "val_gt.json").unlink(missing_ok=True)
    return {"match": root / "match", "model": root / "model", "workspace": workspace, "data": data}


@pytest.fixture(scope="session")
def video_only(demo) -> str:
    """A 2-rally render (H.264 with sound) inside the app's workspace, without its CSV: the app
    detects its strokes. The workspace-relative path to type into the add-match form."""
    out = demo["workspace"] / "uploads" / "video-only"
    _run("-m", "train.replay", "--set", str(SET_CSV), "--out", str(out / "render"), "--rallies", "1-2",
         "--size", "320x180")
    video = next((out / "render").rglob("set1.mp4"))
    dest = out / "rally-video.mp4"
    video.replace(dest)
    shutil.rmtree(out / "render")  # the ground truth stays out of the app's reach
    return str(dest.relative_to(demo["workspace"]))


# Module scope: the app and the browser stop when the browser tests end, before other tests
# fork processes that would inherit the pipes to Playwright's driver.
@pytest.fixture(scope="module")
def app_url(demo):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):  # CI installs chromium: a missing browser there is a failure
            pytest.fail(f"no chromium at {CHROMIUM}")
        pytest.skip(f"no chromium at {CHROMIUM}")
    port = _free_port()
    log = open(demo["workspace"].parent / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--workspace", str(demo["workspace"]), "--demo-match",
                             str(demo["match"]), "--model", str(demo["model"]), "--port", str(port)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited: {(demo['workspace'].parent / 'app.log').read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        raise RuntimeError("the app did not start in time")
    yield url
    os.killpg(proc.pid, 15)
    proc.wait(20)
    log.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):  # CI installs chromium: a missing browser there is a failure
            pytest.fail(f"no chromium at {CHROMIUM}")
        pytest.skip(f"no chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1366, "height": 768})  # a coach's laptop
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(app_url)
    pg.wait_for_selector("#question input")
    # the demo match is indexed in the background on first start: the picker shows it when it is there
    pg.wait_for_function("document.querySelector('#match-pick input').value.length > 0", timeout=180_000)
    yield pg
    context.close()


@pytest.fixture
def shot(tmp_path):
    """Save a full-page screenshot under the test's folder and copy it to SCREENS."""
    def take(page, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        SCREENS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENS / path.name)
        return path
    return take
