"""What every tab shares: turning engine errors into messages on the page, how a confidence reads
in a table, progress adapters, the page's JavaScript (player seeking, "Play all", timeline clicks) and CSS."""
from __future__ import annotations

import functools
import inspect
import json
import logging
import re
import typing
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import gradio as gr

from core.annotations import AnnotationError
from core.engine import SEEK_LEAD_S, Engine, EngineError
from core.errors import ModelLoadError
from core.runner import RunError
from core.store import is_uncertain
from core.video import VideoError
from core.workspace import PathNotAllowed

log = logging.getLogger(__name__)
EXPECTED = (EngineError, PathNotAllowed, ModelLoadError, VideoError, AnnotationError, RunError, ValueError,
            KeyError, FileNotFoundError)
VIDEO_ID = "match-video"


_FOLDERS = re.compile(r"(?<![\w.])/(?:[^\s/:,;'\"]+/)+(?=[^\s/:,;'\"]+\.\w{1,5}\b)")  # "/a/b/" of "/a/b/set1.mp4"


def _message(err: Exception) -> str:
    """An error in a coach's words: the project's own errors as they read, a file named without its
    folders; anything else as a failure of the app, logged with its traceback."""
    if isinstance(err, EXPECTED):
        return _FOLDERS.sub("", str(err).strip("'\"")) or type(err).__name__
    log.exception("unexpected error in the app")
    return f"Something went wrong ({type(err).__name__}: {err}). The app is still running; see the terminal log."


def guarded(fn):
    """Run a callback; any error becomes a message in the page (gr.Error), never a frozen UI. Input
    mistakes leave no traceback in the server log; an unexpected error is logged once, with its own."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error as err:
                err.print_exception = False  # an input mistake: said in the page, no traceback in the log
                raise
            except Exception as err:  # noqa: BLE001 - shown to the user, logged above
                raise gr.Error(_message(err), print_exception=False) from None
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as err:
            err.print_exception = False
            raise
        except Exception as err:  # noqa: BLE001
            raise gr.Error(_message(err), print_exception=False) from None
    return call


def said(handler: Callable, outputs: int, note: int | None = None, blank: tuple[int, ...] = ()) -> Callable:
    """`handler` (with `outputs` outputs) whose refusals (the project's errors, gr.Error) become a
    "⚠ why" line next to the control instead of Error badges over the page's results: the line is
    output `note`, or with `note` None an output after the handler's own (emptied on success).
    Every other output is kept as it was, but those in `blank` are emptied (a seek payload must not
    make the page play the previous clip again)."""
    @functools.wraps(handler)
    def run(*args, **kwargs):
        try:
            out = handler(*args, **kwargs)
        except (gr.Error, *EXPECTED) as err:
            why = err.message if isinstance(err, gr.Error) else _message(err)
            kept = ["" if i in blank else gr.skip() for i in range(outputs)]
            if note is None:
                return (*kept, f"⚠ {why}")
            kept[note] = f"⚠ {why}"
            return tuple(kept)
        if note is None:
            return (*(out if isinstance(out, tuple) else (out,)), "")
        return out
    return run


def bind(handler: Callable, engine: Engine) -> Callable:
    """A tab's module-level `handler(engine, ...)` as a Gradio callback: the engine bound, errors guarded.

    Gradio names the API endpoint after the callback and fills a parameter annotated gr.SelectData
    or defaulting to gr.Progress() itself: the callback keeps the handler's name, annotations and
    remaining parameters."""
    call = functools.partial(handler, engine)
    call.__name__ = call.__qualname__ = handler.__name__  # a partial takes attributes; gr reads these
    call.__module__, call.__doc__ = handler.__module__, handler.__doc__
    call.__annotations__ = typing.get_type_hints(handler)  # resolved: the wrapper has no globals to read them in
    return guarded(call)


def row_index(evt: gr.SelectData) -> int:
    """The row of a table cell's select event (its index is [row, column])."""
    return evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index


def confidence_cell(confidence: float | None) -> str:
    """A confidence as a table shows it: 0.91; 0.42 ⚠ when uncertain; empty for hand annotations."""
    if confidence is None:
        return ""
    return f"{confidence:.2f}" + (" ⚠" if is_uncertain(confidence) else "")


def progress_callback(progress: gr.Progress):
    """core's (done, total, what) -> Gradio's progress bar (strokes while indexing, clips while
    cutting, frames while detecting or copying a video)."""
    def update(done: int, total: int, what: str = "") -> None:
        unit = "strokes" if what in ("", "strokes") else "clips" if "clips" in what else "frames"
        progress((done, max(total, 1)), desc=what or None, unit=unit)
    return update


_seq = {"n": 0}


LEAD_OUT_S = 0.2  # "Play all" and a looped clip run on this long after a stroke's window
MAX_LEAD_S = 10.0


def _lead(value, default: float) -> float:
    """A lead-in / lead-out as typed (None or not a number: the default; clamped to 0..10 s)."""
    try:
        return min(max(float(value), 0.0), MAX_LEAD_S)
    except (TypeError, ValueError):
        return default


def file_url(path: str | None) -> str:
    """Where the page fetches a workspace or assets file (Gradio's file route, allowed_paths only);
    "" for a bare file name."""
    return f"/gradio_api/file={quote(str(path))}" if path and Path(path).is_absolute() else ""


def seek_payload(start_s: float, video: str | Path | None, lead_in=SEEK_LEAD_S, end_s: float | None = None,
                 lead_out=LEAD_OUT_S, loop: bool = False) -> str:
    """JSON for SEEK_JS: where to seek (`lead_in` s before the stroke's window), which file must be
    playing (a path: loaded from its URL when the player holds another; a name: waited for), and with `loop`, where the clip
    ends (`lead_out` s after `end_s`) to start it again."""
    _seq["n"] += 1
    t = max(0.0, float(start_s) - _lead(lead_in, SEEK_LEAD_S))
    end = float(end_s) + _lead(lead_out, LEAD_OUT_S) if (loop and end_s is not None) else None
    return json.dumps({"t": t, "end": end, "src": Path(video).name if video else "", "url": file_url(video),
                       "n": _seq["n"]})


def play_all_payload(segments: list[tuple[float, float, Path]], lead_in=SEEK_LEAD_S, lead_out=LEAD_OUT_S) -> str:
    """JSON for PLAY_ALL_JS: the (start s, end s, video) clips in playing order, widened by the lead-in
    and lead-out; a clip in another video than the one before loads that file first."""
    _seq["n"] += 1
    a_s, b_s = _lead(lead_in, SEEK_LEAD_S), _lead(lead_out, LEAD_OUT_S)
    return json.dumps({"segments": [[max(0.0, a - a_s), b + b_s, Path(v).name, file_url(v)] for a, b, v in segments],
                       "n": _seq["n"]})


# The match player's <video> once `src` (a file name) is loaded in it, else null; a player holding
# another file is given `url` (once) and polled again.
_FIND_VIDEO = """
const slVideo = (src, url) => {
  const v = document.querySelector('#%s video');
  if (!v) return null;
  const holds = !src || decodeURIComponent(v.currentSrc || v.src || '').includes(src);
  if (!holds) {
    if (url && v.dataset.slUrl !== url) { v.dataset.slUrl = url; v.src = url; v.load(); }
    return null;
  }
  return v.readyState >= 1 ? v : null;
};
// Play at the speed picked in the page: a new file in the player starts at 1x.
const slPlay = (v) => {
  const picked = document.querySelector('#speed input:checked');
  if (picked) v.playbackRate = parseFloat(picked.value) || 1;
  const pr = v.play(); if (pr && pr.catch) pr.catch(() => {});
};
""" % VIDEO_ID

SEEK_JS = """
(payload) => {
  if (!payload) return;
  const p = JSON.parse(payload);
  %s
  let tries = 0;
  const go = () => {
    const v = slVideo(p.src, p.url);
    if (!v) { if (tries++ < 600) setTimeout(go, 100); return; }
    if (window.slStopPlayAll) window.slStopPlayAll();
    if (window.slStopLoop) window.slStopLoop();
    if (p.end) {  // loop the clip: back to its start whenever it reaches its end
      const onTime = () => { if (v.currentTime >= p.end) v.currentTime = p.t; };
      v.addEventListener('timeupdate', onTime);
      window.slStopLoop = () => { v.removeEventListener('timeupdate', onTime); window.slStopLoop = null; };
    }
    v.currentTime = p.t;
    slPlay(v);
  };
  go();
}
""" % _FIND_VIDEO

PLAY_ALL_JS = """
(payload) => {
  if (!payload) return;
  const p = JSON.parse(payload);
  %s
  if (window.slStopPlayAll) window.slStopPlayAll();
  if (window.slStopLoop) window.slStopLoop();
  let i = 0, v = null, tries = 0, stopped = false;
  const onTime = () => {
    if (stopped || !v || i >= p.segments.length) return;
    const s = p.segments[i];
    if (decodeURIComponent(v.currentSrc || v.src || '').includes(s[2]) && v.currentTime >= s[1]) { i++; step(); }
  };
  const stop = () => { stopped = true; if (v) v.removeEventListener('timeupdate', onTime); window.slStopPlayAll = null; };
  const step = () => {  // the clip i: its file loaded (another set's video is swapped in), then seek and play
    if (stopped) return;
    if (i >= p.segments.length) { if (v) v.pause(); stop(); return; }
    const s = p.segments[i];
    const w = slVideo(s[2], s[3]);
    if (!w) { if (v) v.pause(); if (tries++ < 600) setTimeout(step, 100); return; }
    tries = 0;
    if (w !== v) { if (v) v.removeEventListener('timeupdate', onTime); v = w; v.addEventListener('timeupdate', onTime); }
    v.currentTime = s[0];
    slPlay(v);
  };
  window.slStopPlayAll = stop;
  step();
}
""" % _FIND_VIDEO

def plot_click_js(plot_id: str, box_id: str, value: str, annotation_value: str | None = None) -> str:
    """Page-load JS: watch for the Plotly graph inside #plot_id and write `value` (a JS expression
    of the clicked point `pt`) with a timestamp into the hidden #box_id box, whose input event asks
    the server to act on the click (the timestamp makes a second click on the same point count);
    with `annotation_value` (an expression of the clicked annotation `an`), clicks on annotations
    that capture events too."""
    return """
() => {
  const send = (text) => {
    const box = document.querySelector('#%(box)s textarea, #%(box)s input');
    if (!box || !text) return;
    box.value = text + ':' + Date.now();
    box.dispatchEvent(new Event('input', { bubbles: true }));
  };
  const bind = () => {
    document.querySelectorAll('#%(plot)s .js-plotly-plot').forEach((div) => {
      if (div.slBound || typeof div.on !== 'function') return;
      div.slBound = true;
      div.on('plotly_click', (ev) => {
        const pt = ev && ev.points && ev.points[0];
        if (pt && pt.customdata) send(%(value)s);
      });
      div.on('plotly_clickannotation', (ev) => {
        const an = ev && ev.annotation;
        if (an && %(has_annotation)s) send(%(annotation)s);
      });
    });
  };
  setInterval(bind, 400);
}
""" % {"plot": plot_id, "box": box_id, "value": value, "has_annotation": "true" if annotation_value else "false",
       "annotation": annotation_value or "''"}


# A clicked timeline mark's row index: the server seeks as for a table click; a rally's label: it zooms.
TIMELINE_CLICK_JS = plot_click_js("timeline", "timeline-pick", "String(pt.customdata[2])", "an.name")

# Page-load JS: the keys of video-analysis tools on the player in view (the Analyze tab's, the
# Strokes tab's edit player), wherever the focus is but a text field: space play/pause, K pause, L play (again: faster, up to 2x), J back one second,
# ←/→ or ,/. one frame (the set's frame rate from #video-fps), shift+←/→ one second.
PLAYER_KEYS_JS = """
() => {
  if (window.slKeys) return;
  window.slKeys = true;
  const rates = [0.25, 0.5, 1, 1.5, 2];
  document.addEventListener('keydown', (e) => {
    const el = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' || el.isContentEditable)) return;
    const v = [%(players)s].map((q) => document.querySelector(q)).find((x) => x && x.offsetParent !== null);
    if (!v) return;
    const box = document.querySelector('#video-fps textarea, #video-fps input');
    const frame = 1 / (parseFloat(box && box.value) || 25);
    const play = () => { const p = v.play(); if (p && p.catch) p.catch(() => {}); };
    const step = (dt) => { v.pause(); v.currentTime = Math.max(0, Math.min(v.duration || 1e9, v.currentTime + dt)); };
    const k = e.key;
    if (k === ' ') { v.paused ? play() : v.pause(); }
    else if (k === 'k' || k === 'K') { v.pause(); }
    else if (k === 'l' || k === 'L') {
      if (v.paused) { play(); } else { v.playbackRate = rates.find((r) => r > v.playbackRate + 1e-6) || 2; }
    }
    else if (k === 'j' || k === 'J') { step(-1); }
    else if (k === 'ArrowRight') { step(e.shiftKey ? 1 : frame); }
    else if (k === 'ArrowLeft') { step(e.shiftKey ? -1 : -frame); }
    else if (k === '.') { step(frame); }
    else if (k === ',') { step(-frame); }
    else { return; }
    e.preventDefault();
  });
}
""" % {"players": ", ".join(f"'#{p} video'" for p in (VIDEO_ID, "edit-video"))}

SPEED_JS = """
(rate) => {
  const v = document.querySelector('#%s video');
  if (v) v.playbackRate = parseFloat(rate) || 1;
}
""" % VIDEO_ID

# Page-load JS: a vertical line on the event timeline at the player's current time.
PLAYHEAD_JS = """
() => {
  const draw = () => {
    const v = document.querySelector('#%s video');
    const div = document.querySelector('#timeline .js-plotly-plot');
    if (!v || !div || !div._fullLayout || !div._fullLayout.xaxis) return;
    const marks = (div.data || []).some((t) => t.x && t.x.length);
    const L = div._fullLayout, ax = L.xaxis;
    let line = div.querySelector('.sl-playhead');
    if (!line) {
      line = document.createElement('div');
      line.className = 'sl-playhead';
      div.style.position = 'relative';
      div.appendChild(line);
    }
    const x = ax.l2p(v.currentTime);
    const inside = marks && x >= 0 && x <= ax._length;
    line.style.display = inside ? 'block' : 'none';
    line.style.left = (L._size.l + x) + 'px';
    line.style.top = L._size.t + 'px';
    line.style.height = L._size.h + 'px';
    line.dataset.t = v.currentTime.toFixed(2);
  };
  setInterval(draw, 200);
}
""" % VIDEO_ID

CSS = """
.sl-hidden { display: none !important; }
#watch-col { position: sticky; top: 4px; align-self: flex-start; }
#match-video video { max-height: 300px; background: #000; }  /* the column fits a 768-px screen */
.sl-playhead { position: absolute; width: 2px; background: #dc2626; pointer-events: none; z-index: 10; }
#player-keys { font-size: 0.85em; color: #555; }
#clip-preview video { max-height: 260px; background: #000; }
/* result tables: words and numbers wrap only between words, in a smaller face (a 1366-px laptop) */
.sl-table .wrap, .sl-table th span, .sl-table td span { word-break: normal !important; overflow-wrap: normal !important; }
.sl-table table { font-size: 12.5px; }
.sl-table th, .sl-table td, .sl-table .cell-wrap { padding-left: 2px !important; padding-right: 2px !important; }
.sl-table .cell-menu-button { display: none; }  /* its room is the header's: sorting stays on a click */
.sl-progress { height: 10px; background: #e5e7eb; border-radius: 5px; overflow: hidden; }
.sl-progress > div { height: 100%; background: #2563eb; }
"""


def progress_html(fraction: float | None, label: str = "") -> str:
    if fraction is None:
        return f"<div>{label}</div>"
    pct = max(0.0, min(1.0, fraction)) * 100
    return (f"<div>{label} {pct:.0f}%</div><div class='sl-progress'><div style='width:{pct:.1f}%'></div></div>")
