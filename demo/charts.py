"""Figures for the demo: AU activations against thresholds, the valence/arousal circumplex and
timelines. Each function takes plain numbers (a face dict from the predictor, a frame table) and
returns an Altair chart that ``gr.Plot`` renders; nothing here touches the model or Gradio.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import altair as alt
import pandas as pd

from affectmodel.tasks import AU_DESCRIPTIONS

ACTIVE_COLOR = "#e4572e"
INACTIVE_COLOR = "#9fb3c8"
POINT_COLORS = ("#e4572e", "#2e86ab", "#59a14f", "#b07aa1", "#f2a541", "#76b7b2", "#9c755f", "#ff9da7")
# Circumplex quadrants (Russell 1980): names for the four corners, (valence sign, arousal sign).
QUADRANTS = (
    (1, 1, "excited · elated"),
    (-1, 1, "tense · distressed"),
    (-1, -1, "sad · bored"),
    (1, -1, "calm · content"),
)
# Sizes include axis labels and legends (autosize "fit"), so a chart never overflows its column.
CHART_WIDTH = 360
TIMELINE_WIDTH = 560
FIT = alt.AutoSizeParams(type="fit", contains="padding")


def au_chart(aus: Mapping[str, float], thresholds: Mapping[str, float], title: str = "Action units") -> alt.Chart:
    """Horizontal bars of AU probabilities; a black tick marks each AU's decision threshold and
    bars above it are coloured as active."""
    rows = [
        {
            "au": f"{au} · {AU_DESCRIPTIONS.get(au, '')}",
            "probability": float(p),
            "threshold": float(thresholds.get(au, 0.5)),
            "state": "active" if float(p) >= float(thresholds.get(au, 0.5)) else "inactive",
        }
        for au, p in aus.items()
    ]
    data = pd.DataFrame(rows, columns=["au", "probability", "threshold", "state"])
    order = list(data["au"])
    y = alt.Y("au:N", sort=order, title=None, axis=alt.Axis(labelLimit=220))
    bars = alt.Chart(data).mark_bar(cornerRadiusEnd=3, height=14).encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), title="probability"),
        y=y,
        color=alt.Color("state:N", scale=alt.Scale(domain=["active", "inactive"],
                                                   range=[ACTIVE_COLOR, INACTIVE_COLOR]),
                        legend=alt.Legend(title=None, orient="bottom")),
        tooltip=[alt.Tooltip("au:N", title="AU"), alt.Tooltip("probability:Q", format=".2f"),
                 alt.Tooltip("threshold:Q", format=".2f"), "state:N"],
    )
    ticks = alt.Chart(data).mark_tick(color="#222", thickness=2, size=20).encode(
        x="threshold:Q", y=y, tooltip=[alt.Tooltip("threshold:Q", format=".2f")])
    return (bars + ticks).properties(
        title=alt.TitleParams(title, subtitle="bars: probability · ticks: threshold"),
        width=CHART_WIDTH, height=300, autosize=FIT)


def placeholder_chart(title: str, hint: str, width: int = CHART_WIDTH, height: int = 160) -> alt.Chart:
    """A chart that holds no result yet: its title, and one line saying what will appear there."""
    data = pd.DataFrame([{"hint": hint}])
    return alt.Chart(data).mark_text(color="#7a8a99", fontSize=13, fontStyle="italic").encode(
        text="hint:N").properties(title=title, width=width, height=height, autosize=FIT)


def circumplex_chart(points: Sequence[tuple[str, float, float]], title: str = "Valence / arousal"
                     ) -> alt.LayerChart:
    """Russell's circumplex: unit circle, valence on x, arousal on y, quadrants named, and one
    marked point per ``(name, valence, arousal)``."""
    circle = pd.DataFrame([{"valence": math.cos(t / 90 * math.pi), "arousal": math.sin(t / 90 * math.pi),
                            "order": t} for t in range(181)])
    domain = [-1.15, 1.15]
    x = alt.X("valence:Q", scale=alt.Scale(domain=domain, nice=False),
              title="valence  (unpleasant ← → pleasant)", axis=alt.Axis(values=[-1, -0.5, 0, 0.5, 1]))
    y = alt.Y("arousal:Q", scale=alt.Scale(domain=domain, nice=False),
              title="arousal  (calm ← → activated)", axis=alt.Axis(values=[-1, -0.5, 0, 0.5, 1]))
    ring = alt.Chart(circle).mark_line(color="#7a8a99", strokeWidth=1.5).encode(x=x, y=y, order="order:Q")
    axes = pd.DataFrame([{"valence": 0.0, "arousal": 0.0}])
    vline = alt.Chart(axes).mark_rule(color="#b8c2cc", strokeDash=[4, 3]).encode(x="valence:Q")
    hline = alt.Chart(axes).mark_rule(color="#b8c2cc", strokeDash=[4, 3]).encode(y="arousal:Q")
    quad = pd.DataFrame([{"valence": 1.1 * sv, "arousal": 1.08 * sa, "name": name, "side": sv}
                         for sv, sa, name in QUADRANTS])
    quad_text = [  # right-hand names align right so they stay inside the plot, and vice versa
        alt.Chart(quad[quad["side"] == side]).mark_text(
            align="right" if side == 1 else "left", baseline="middle", color="#5b6b7b", fontStyle="italic",
            fontSize=11,
        ).encode(x=x, y=y, text="name:N")
        for side in (1, -1)
    ]
    layers = [ring, vline, hline, *quad_text]
    if points:
        pts = pd.DataFrame([{"face": name, "valence": float(v), "arousal": float(a)} for name, v, a in points])
        names = list(pts["face"])
        color = alt.Color("face:N", scale=alt.Scale(domain=names, range=list(POINT_COLORS[:len(names)])),
                          legend=None)
        tooltip = ["face:N", alt.Tooltip("valence:Q", format="+.2f"), alt.Tooltip("arousal:Q", format="+.2f")]
        layers.append(alt.Chart(pts).mark_point(filled=True, size=220, opacity=0.95, stroke="white",
                                                strokeWidth=1.5).encode(x=x, y=y, color=color, tooltip=tooltip))
        labels = label_positions(list(zip(pts["valence"], pts["arousal"], strict=True)))
        pts["label_valence"], pts["label_arousal"] = [x for x, _ in labels], [y for _, y in labels]
        label_x = alt.X("label_valence:Q", scale=alt.Scale(domain=domain, nice=False))
        label_y = alt.Y("label_arousal:Q", scale=alt.Scale(domain=domain, nice=False))
        layers.append(alt.Chart(pts).mark_text(dx=12, dy=-12, align="left", fontWeight="bold", fontSize=12)
                      .encode(x=label_x, y=label_y, color=color, text="face:N"))
    return alt.LayerChart(layer=layers).properties(title=title, width=CHART_WIDTH, height=CHART_WIDTH, autosize=FIT)


# A face's name on the circumplex takes about this much room, in valence/arousal units (12 px bold
# text on a 360 px chart whose axes span 2.3 units).
LABEL_WIDTH, LABEL_HEIGHT = 0.4, 0.11


def label_positions(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Where each point's name goes: at the point, moved down a line at a time while it would cover
    the name of an earlier point (faces at the same place get their names one under the other)."""
    placed: list[tuple[float, float]] = []
    for valence, arousal in points:
        y = float(arousal)
        while any(abs(valence - px) < LABEL_WIDTH and abs(y - py) < LABEL_HEIGHT for px, py in placed):
            y -= LABEL_HEIGHT
        placed.append((float(valence), y))
    return placed


def timeline_chart(frame: pd.DataFrame, columns: Sequence[str], title: str, y_title: str,
                   y_domain: tuple[float, float], time_column: str = "time_s") -> alt.LayerChart:
    """Lines of ``columns`` over time (one colour per column) from a per-frame table."""
    columns = [c for c in columns if c in frame.columns]
    long = frame.melt(id_vars=[time_column], value_vars=columns, var_name="series", value_name="value")
    chart = alt.Chart(long).mark_line(interpolate="monotone", strokeWidth=2).encode(
        x=alt.X(f"{time_column}:Q", title="time (s)"),
        y=alt.Y("value:Q", scale=alt.Scale(domain=list(y_domain)), title=y_title),
        color=alt.Color("series:N", sort=list(columns), title=None,
                        scale=alt.Scale(scheme="tableau10"), legend=alt.Legend(orient="right")),
        tooltip=[alt.Tooltip(f"{time_column}:Q", title="time (s)", format=".2f"), "series:N",
                 alt.Tooltip("value:Q", format=".2f")],
    )
    layers = [chart]
    if y_domain[0] < 0 < y_domain[1]:
        layers.insert(0, alt.Chart(pd.DataFrame([{"zero": 0.0}])).mark_rule(color="#b8c2cc", strokeDash=[4, 3])
                      .encode(y="zero:Q"))
    return alt.LayerChart(layer=layers).properties(title=title, width=TIMELINE_WIDTH, height=240, autosize=FIT)
