"""Plotly figures of the app: the event timeline, the stroke mix, court heatmaps, the loss plot.

Inputs are plain rows (dicts), as the engine gives them:
    timeline rows: start_s, end_s, lane fields (player, stroke, side), caption, set, rally, ball_round,
                   confidence (None for hand annotations)
    court rows:    hit_m / landing_m = (x, y) in court metres or None (core.court's frame)
Every figure stays readable when it has nothing to show (a centred note instead of empty axes).
"""
from __future__ import annotations

from collections import Counter

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.court import BACK_DEPTH, COURT_LENGTH, COURT_WIDTH, NET_Y, SHORT_SERVICE_DIST, SINGLES_INSET
from core.store import is_uncertain

LANES = ("player", "stroke", "side")
LANE_PX = 26  # the timeline grows by this much per lane beyond the first few
DOUBLES_LONG_SERVICE = 0.76  # doubles long service line, metres inside each baseline
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f", "#393b79", "#637939")
COURT_GREEN = "#2e7d4f"
HEAT = [[0.0, "rgba(0,0,0,0)"], [0.15, "rgba(255,235,59,0.25)"], [0.6, "rgba(255,152,0,0.55)"],
        [1.0, "rgba(211,47,47,0.85)"]]  # the lowest density is transparent: the court stays visible


def _empty(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#666"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def lane_of(row: dict, lanes: str) -> str:
    if lanes == "stroke":
        return row.get("stroke") or "unknown"
    if lanes == "side":
        return f"{row.get('side') or '?'} player"
    return row.get("player_name") or row.get("player") or row.get("side") or "?"


def timeline_figure(rows: list[dict], lanes: str = "player", duration_s: float | None = None,
                    title: str | None = None, empty: str = "No matching strokes", rallies: list[dict] | None = None,
                    zoom: tuple[int, int] | None = None) -> go.Figure:
    """One mark per stroke at its time, one lane per player (or stroke type, or side); an uncertain
    detection's mark is hollow and faded. With `rallies` (core.engine.rally_spans of the rows'
    sets), a band over every rally, labelled with its number and score where it is wide enough to
    read (hover: the rally; click: zoom to it); `zoom` = (set, rally) shows only that rally.

    Each mark's customdata is [start_s, end_s, row index in `rows`]: the page's click handler
    passes the row index back to the server, which seeks the player as for a table click; a click
    on a rally's label passes its name ("rally:SET:RALLY"), and the server zooms.
    """
    fig = go.Figure()
    fig.update_layout(height=230, margin=dict(l=10, r=10, t=36 if title else 12, b=36),
                      title=title, plot_bgcolor="#fafafa", showlegend=False, hovermode="closest",
                      clickmode="event")
    if not rows:
        return _empty(fig, empty)
    xmax = max(duration_s or 0.0, max(r.get("end_s", r["start_s"]) for r in rows) + 1.0)
    shown = next((r for r in rallies or [] if zoom and (r["set_no"], r["rally"]) == tuple(zoom)), None)
    x_range = [max(0.0, shown["start_s"] - 1.0), shown["end_s"] + 1.0] if shown else [0, xmax]
    if rallies:
        _match_rallies(fig, rows, rallies, x_range)
    else:
        _rally_bands(fig, rows)
    by_lane: dict[str, list[dict]] = {}
    for i, r in enumerate(rows):
        by_lane.setdefault(lane_of(r, lanes), []).append({**r, "_row": i})
    for i, (lane, items) in enumerate(sorted(by_lane.items())):
        colour = PALETTE[i % len(PALETTE)]
        # the span of each clip as a thin bar, the hit as a marker on top
        for r in items:
            fig.add_shape(type="line", x0=r["start_s"], x1=r["end_s"], y0=lane, y1=lane, yref="y",
                          line=dict(color=colour, width=6), opacity=0.35, layer="below")
        unsure = [is_uncertain(r.get("confidence")) for r in items]
        fig.add_trace(go.Scatter(
            x=[r.get("time_s", r["start_s"]) for r in items], y=[lane] * len(items), mode="markers",
            marker=dict(size=14, color=colour, symbol=["diamond-open" if u else "diamond" for u in unsure],
                        opacity=[0.55 if u else 1.0 for u in unsure],
                        line=dict(width=[2 if u else 1 for u in unsure], color="#333")),
            customdata=[[r["start_s"], r.get("end_s", r["start_s"]), r["_row"]] for r in items],
            text=[_hover(r) for r in items], hovertemplate="%{text}<extra></extra>", name=lane))
    fig.update_xaxes(title_text="time in the video (s)", range=x_range, showgrid=True, gridcolor="#e5e5e5")
    fig.update_yaxes(type="category", categoryorder="category descending", showgrid=False, automargin=True)
    fig.update_layout(height=max(230, 90 + LANE_PX * len(by_lane)))  # every lane's label readable
    return fig


MIN_LABEL_SHARE = 0.04  # a rally band is labelled when it spans this share of the shown time at least


def rally_label(r: dict, several_sets: bool = False) -> str:
    return (f"S{r['set_no']} " if several_sets else "") + f"R{r['rally']}" + (f" {r['score']}" if r.get("score") else "")


def _match_rallies(fig: go.Figure, rows: list[dict], rallies: list[dict], x_range: list[float]) -> None:
    """A band per rally (darker where it holds results), labelled where the label fits; the label
    names the rally on hover and zooms to it on click (its annotation `name` is "rally:SET:RALLY")."""
    held = {(r.get("set_no"), r.get("rally")) for r in rows}
    several = len({r["set_no"] for r in rallies}) > 1
    width = max(x_range[1] - x_range[0], 1e-6)
    for r in rallies:
        hit = (r["set_no"], r["rally"]) in held
        readable = (min(r["end_s"], x_range[1]) - max(r["start_s"], x_range[0])) / width >= MIN_LABEL_SHARE
        label = dict(annotation_text=rally_label(r, several), annotation_position="top left",
                     annotation=dict(font_size=10, captureevents=True, name=f"rally:{r['set_no']}:{r['rally']}",
                                     hovertext=_rally_hover(r))) if readable else {}
        fig.add_vrect(x0=r["start_s"], x1=r["end_s"], fillcolor="#9ab8d8" if hit else "#c9d3de",
                      opacity=0.28 if hit else 0.14, line_width=0, layer="below", **label)


def _rally_hover(r: dict) -> str:
    return (f"<b>Set {r['set_no']} · rally {r['rally']}</b>" + (f" · {r['score']}" if r.get("score") else "")
            + f"<br>{r.get('shots') or '?'} shots · {r['start_s']:.1f}–{r['end_s']:.1f} s<br>click to zoom to it")


def _rally_bands(fig: go.Figure, rows: list[dict]) -> None:
    """Without the match's rallies: a shaded band over each rally that holds several of the results,
    and over each rally of an answer that is rallies, labelled with its number."""
    spans: dict[tuple, list[float]] = {}
    for r in rows:
        key = (r.get("set_no"), r.get("rally"))
        a, b = r["start_s"], r.get("end_s", r["start_s"])
        lo, hi, n = spans.get(key, [a, b, 0])
        spans[key] = [min(lo, a), max(hi, b), n + (2 if r.get("kind") == "rally" else 1)]  # a rally row: its band
    for (set_no, rally), (lo, hi, n) in spans.items():
        if n >= 2:
            fig.add_vrect(x0=lo, x1=hi, fillcolor="#9ab8d8", opacity=0.18, line_width=0, layer="below",
                          annotation_text=f"R{rally}", annotation_position="top left",
                          annotation_font_size=10)


def _hover(r: dict) -> str:
    where = f"set {r.get('set_no')} · rally {r.get('rally')} · " + (
        f"{r.get('shots')} shots" if r.get("kind") == "rally" else f"stroke {r.get('ball_round')}")
    text = f"<b>{r.get('caption') or '(no caption)'}</b><br>{where}<br>{r.get('time_s', r['start_s']):.2f} s"
    c = r.get("confidence")
    if c is not None:
        text += f"<br>uncertain ({c:.2f})" if is_uncertain(c) else f"<br>confidence {c:.2f}"
    return text


def counts_figure(rows: list[dict], title: str = "Stroke types per player") -> go.Figure:
    """Grouped bars: how often each player played each stroke type."""
    fig = go.Figure()
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), title=title, barmode="group",
                      legend=dict(orientation="h", y=-0.25))
    counts = Counter((r.get("player_name") or r.get("player") or r.get("side") or "?", r.get("stroke") or "unknown")
                     for r in rows)
    if not counts:
        return _empty(fig, "No strokes")
    strokes = sorted({s for _, s in counts}, key=lambda s: -sum(v for (_, t), v in counts.items() if t == s))
    for i, player in enumerate(sorted({p for p, _ in counts})):
        fig.add_trace(go.Bar(x=strokes, y=[counts.get((player, s), 0) for s in strokes], name=player,
                             marker_color=PALETTE[i % len(PALETTE)]))
    fig.update_yaxes(title_text="strokes")
    return fig


def _court_lines(fig: go.Figure, row: int, col: int) -> None:
    """The doubles court in metres as the camera sees it: far (upper) baseline at the top."""
    w, length = COURT_WIDTH, COURT_LENGTH
    lines = [
        ((0, 0), (w, 0)), ((0, length), (w, length)), ((0, 0), (0, length)), ((w, 0), (w, length)),
        ((SINGLES_INSET, 0), (SINGLES_INSET, length)), ((w - SINGLES_INSET, 0), (w - SINGLES_INSET, length)),
        ((0, NET_Y - SHORT_SERVICE_DIST), (w, NET_Y - SHORT_SERVICE_DIST)),
        ((0, NET_Y + SHORT_SERVICE_DIST), (w, NET_Y + SHORT_SERVICE_DIST)),
        ((0, DOUBLES_LONG_SERVICE), (w, DOUBLES_LONG_SERVICE)),
        ((0, length - DOUBLES_LONG_SERVICE), (w, length - DOUBLES_LONG_SERVICE)),
        ((w / 2, 0), (w / 2, NET_Y - SHORT_SERVICE_DIST)), ((w / 2, NET_Y + SHORT_SERVICE_DIST), (w / 2, length)),
    ]
    xs, ys = [], []
    for (x0, y0), (x1, y1) in lines:
        xs += [x0, x1, None]
        ys += [y0, y1, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="white", width=2), hoverinfo="skip",
                             showlegend=False), row=row, col=col)
    fig.add_trace(go.Scatter(x=[-0.3, w + 0.3], y=[NET_Y, NET_Y], mode="lines", hoverinfo="skip",
                             line=dict(color="#222", width=4), showlegend=False), row=row, col=col)
    # depth bands of the zones (net / middle / backcourt), faint
    for d in (BACK_DEPTH,):
        for y in (NET_Y - d, NET_Y + d):
            fig.add_trace(go.Scatter(x=[0, w], y=[y, y], mode="lines", hoverinfo="skip", showlegend=False,
                                     line=dict(color="rgba(255,255,255,0.35)", width=1, dash="dot")),
                          row=row, col=col)


def court_figure(rows: list[dict], title: str = "Where strokes are hit and land") -> go.Figure:
    """Two courts side by side: hit positions and landing positions, density plus points."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Hit positions", "Landing positions"),
                        horizontal_spacing=0.08)
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=60, b=10), title=title, showlegend=False,
                      plot_bgcolor=COURT_GREEN)
    for col, key in ((1, "hit_m"), (2, "landing_m")):
        _court_lines(fig, 1, col)
        pts = [(r[key], r) for r in rows if r.get(key) is not None]
        if len(pts) >= 3:
            fig.add_trace(go.Histogram2dContour(
                x=[p[0] for p, _ in pts], y=[p[1] for p, _ in pts], colorscale=HEAT, showscale=False,
                contours=dict(coloring="fill", showlines=False), ncontours=12,
                hoverinfo="skip", xbins=dict(start=0, end=COURT_WIDTH, size=COURT_WIDTH / 6),
                ybins=dict(start=0, end=COURT_LENGTH, size=COURT_LENGTH / 12)), row=1, col=col)
        if pts:
            fig.add_trace(go.Scatter(
                x=[p[0] for p, _ in pts], y=[p[1] for p, _ in pts], mode="markers",
                marker=dict(size=7, color="#ffeb3b", line=dict(width=1, color="#333")),
                text=[r.get("caption") or r.get("stroke") or "" for _, r in pts],
                hovertemplate="%{text}<br>(%{x:.1f} m, %{y:.1f} m)<extra></extra>"), row=1, col=col)
        fig.update_xaxes(range=[-0.6, COURT_WIDTH + 0.6], visible=False, row=1, col=col,
                         scaleanchor=f"y{'' if col == 1 else col}", scaleratio=1, constrain="domain")
        fig.update_yaxes(range=[COURT_LENGTH + 0.6, -0.6], visible=False, row=1, col=col)
    if not any(r.get("hit_m") or r.get("landing_m") for r in rows):
        fig.add_annotation(text="No court positions (the match has no court corners)", showarrow=False,
                           x=0.5, y=-0.02, xref="paper", yref="paper", font=dict(color="#666"))
    return fig


def loss_figure(rows: list[dict], title: str = "Training") -> go.Figure:
    """Loss (left axis) and every validation metric (right axis) against the step."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), title=title,
                      legend=dict(orientation="h", y=-0.2))
    loss = [(r["step"], r["loss"]) for r in rows if "step" in r and isinstance(r.get("loss"), (int, float))]
    if not rows or not any(isinstance(v, (int, float)) for r in rows for k, v in r.items() if k != "step"):
        return _empty(fig, "No metrics yet")
    if loss:
        fig.add_trace(go.Scatter(x=[s for s, _ in loss], y=[v for _, v in loss], name="loss", mode="lines+markers"),
                      secondary_y=False)
    metric_keys = sorted({k for r in rows for k in r if k.startswith("val_") and isinstance(r[k], (int, float))})
    for i, k in enumerate(metric_keys):
        pts = [(r["step"], r[k]) for r in rows if "step" in r and isinstance(r.get(k), (int, float))]
        fig.add_trace(go.Scatter(x=[s for s, _ in pts], y=[v for _, v in pts], name=k, mode="lines+markers",
                                 line=dict(dash="dot", color=PALETTE[(i + 1) % len(PALETTE)])), secondary_y=True)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="loss", secondary_y=False)
    if metric_keys:
        fig.update_yaxes(title_text="validation", secondary_y=True)
    return fig
