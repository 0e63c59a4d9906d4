"""Altair chart builders for the results dashboard.

Each takes one of the long tables from :mod:`affectmodel.study` and returns a chart; no Streamlit here,
so the builders are usable from a notebook as well. Colours are fixed per setting so that
"uni-task" and "multi-task" look the same in every chart.
"""
from __future__ import annotations

import math

import altair as alt
import pandas as pd

UNI_COLOR = "#94a3b8"    # slate: the reference (one model per task)
MULTI_COLOR = "#2563eb"  # blue: the shared model
BASELINE_COLOR = "#dc2626"
NO_SKILL_COLOR = "#d97706"   # amber: the level a model without skill reaches
SETTING_SCALE = alt.Scale(domain=["uni-task", "multi-task"], range=[UNI_COLOR, MULTI_COLOR])
# Run colours: greys for uni-task runs, blues for multi-task runs, so a run's setting reads at a glance.
UNI_SHADES = ("#64748b", "#a3aebd", "#334155", "#cbd5e1", "#475569", "#e2e8f0")
MULTI_SHADES = ("#2563eb", "#93c5fd", "#1e3a8a", "#60a5fa", "#1d4ed8", "#bfdbfe")


def run_color_scale(run_settings: dict[str, str]) -> alt.Scale:
    """A colour per run (in the given order): shades of grey for uni-task, of blue for multi-task."""
    counts = {"uni-task": 0, "multi-task": 0}
    colors = []
    for setting in run_settings.values():
        shades = MULTI_SHADES if setting == "multi-task" else UNI_SHADES
        key = "multi-task" if setting == "multi-task" else "uni-task"
        colors.append(shades[counts[key] % len(shades)])
        counts[key] += 1
    return alt.Scale(domain=list(run_settings), range=colors)


def _title(text: str, synthetic: bool, subtitle: str | None = None) -> alt.TitleParams:
    sub = [s for s in (subtitle, "synthetic benchmark: a pipeline check, not a real result" if synthetic else None)
           if s]
    return alt.TitleParams(text=text, subtitle=sub or "", anchor="start")


def uni_vs_multi_chart(comparison: pd.DataFrame, synthetic: bool = False) -> alt.LayerChart:
    """Grouped bars: best uni-task vs best multi-task score per task; ABAW baseline ticks where given.

    ``comparison`` is one data set's rows of :func:`affectmodel.study.headline_comparison`.
    """
    rows = []
    for r in comparison.itertuples():
        task = f"{r.title} ({r.metric})"
        for setting, score, run in (("uni-task", r.uni, r.uni_run), ("multi-task", r.multi, r.multi_run)):
            if isinstance(score, float) and math.isfinite(score):
                rows.append({"task": task, "setting": setting, "score": score, "run": run,
                             "baseline": r.baseline})
    data = pd.DataFrame(rows, columns=["task", "setting", "score", "run", "baseline"])
    order = list(dict.fromkeys(data["task"]))
    x = alt.X("task:N", sort=order, title=None, axis=alt.Axis(labelAngle=0, labelLimit=200))
    base = alt.Chart(data).encode(x=x)
    bars = base.mark_bar(cornerRadiusTopLeft=3, cornerRadiusTopRight=3).encode(
        xOffset=alt.XOffset("setting:N", sort=["uni-task", "multi-task"]),
        y=alt.Y("score:Q", title="score (higher is better)"),
        color=alt.Color("setting:N", scale=SETTING_SCALE, title=None, legend=alt.Legend(orient="top")),
        tooltip=["task", "setting", "run", alt.Tooltip("score:Q", format=".3f")],
    )
    labels = base.mark_text(dy=-7, fontSize=12, fontWeight="bold").encode(
        xOffset=alt.XOffset("setting:N", sort=["uni-task", "multi-task"]),
        y="score:Q", text=alt.Text("score:Q", format=".3f"),
        color=alt.Color("setting:N", scale=SETTING_SCALE, legend=None),
    )
    layers = [bars, labels]
    if data["baseline"].notna().any():
        baseline = base.transform_filter("isValid(datum.baseline)").mark_tick(
            color=BASELINE_COLOR, thickness=2, size=60, strokeDash=[4, 2]).encode(
            y="baseline:Q", tooltip=[alt.Tooltip("baseline:Q", title="ABAW baseline", format=".2f")])
        layers.append(baseline)
    return alt.LayerChart(layer=layers).properties(
        title=_title("Best runs (not a verdict): best uni-task vs best multi-task run", synthetic,
                     "red dashes: ABAW validation baseline" if data["baseline"].notna().any() else None),
        height=300)


def matched_comparison_chart(bars: pd.DataFrame, synthetic: bool = False) -> alt.LayerChart:
    """Matched uni-task vs multi-task configuration per task: mean over seeds with its 95 % interval
    as an error bar (``bars`` is :func:`affectmodel.study.comparison_bars`)."""
    order = list(dict.fromkeys(bars["task"]))
    offset = alt.XOffset("setting:N", sort=["uni-task", "multi-task"])
    base = alt.Chart(bars).encode(x=alt.X("task:N", sort=order, title=None,
                                          axis=alt.Axis(labelAngle=0, labelLimit=200)), xOffset=offset)
    tooltip = ["task", "setting", "configuration", alt.Tooltip("mean:Q", format=".3f"),
               alt.Tooltip("low:Q", format=".3f", title="95 % low"), alt.Tooltip("high:Q", format=".3f",
                                                                                title="95 % high"),
               alt.Tooltip("seeds:Q", title="seeds"), "verdict"]
    columns = base.mark_bar(opacity=0.85).encode(
        y=alt.Y("mean:Q", title="mean over seeds (higher is better)"),
        color=alt.Color("setting:N", scale=SETTING_SCALE, title=None, legend=alt.Legend(orient="top")),
        tooltip=tooltip)
    errors = base.transform_filter("isValid(datum.low) && isValid(datum.high)").mark_errorbar(
        ticks=True, color="#111827", thickness=1.5).encode(y=alt.Y("low:Q", title=""), y2="high:Q", tooltip=tooltip)
    layers = [columns, errors]
    if bars["baseline"].notna().any():
        layers.append(base.transform_filter("isValid(datum.baseline)").mark_tick(
            color=BASELINE_COLOR, thickness=2, size=60, strokeDash=[4, 2]).encode(
            y="baseline:Q", tooltip=[alt.Tooltip("baseline:Q", title="ABAW baseline", format=".2f")]))
    no_skill = "no_skill" in bars and bars["no_skill"].notna().any()
    if no_skill:  # an interval that reaches this tick did not learn: no verdict (affectmodel.study.did_not_learn)
        layers.append(base.transform_filter("isValid(datum.no_skill)").mark_tick(
            color=NO_SKILL_COLOR, thickness=2, size=40).encode(
            y="no_skill:Q", tooltip=[alt.Tooltip("no_skill:Q", title="no-skill level", format=".3f")]))
    subtitle = "bars: mean over seeds; black: 95 % interval (validation videos and seeds)" + (
        "; amber tick: the metric's no-skill level" if no_skill else "")
    return alt.LayerChart(layer=layers).properties(
        title=_title("Matched uni-task vs multi-task configuration, per task", synthetic, subtitle), height=300)


def per_label_chart(long: pd.DataFrame, label_order: list[str], title: str, run_settings: dict[str, str],
                    synthetic: bool = False) -> alt.Chart:
    """Grouped bars of per-class or per-AU F1 (``long``: run, label, f1) for the chosen runs.

    ``run_settings`` maps each run to "uni-task"/"multi-task" (its colour family) in legend order.
    """
    return alt.Chart(long).mark_bar().encode(
        x=alt.X("label:N", sort=label_order, title=None, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("run:N", sort=list(run_settings)),
        y=alt.Y("f1:Q", title="F1", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("run:N", title=None, scale=run_color_scale(run_settings),
                        legend=alt.Legend(orient="top", labelLimit=300)),
        tooltip=["run", "label", alt.Tooltip("f1:Q", format=".3f")],
    ).properties(title=_title(title, synthetic), height=260)


# Curve titles per kind of affectmodel.study.history_long, in display order: "development" scores
# are on the development split (held-out training videos), "validation" ones come from older records.
CURVE_TITLES = {"loss": "Training loss per task",
                "development": "Development-split metric per evaluation (held-out training videos)",
                "validation": "Validation metric per epoch"}
SERIES_ORDER = ["total", "expr", "au", "va", "P_EXPR", "P_AU", "P_VA", "P_MTL", "ccc_valence", "ccc_arousal"]


def training_curves_chart(long: pd.DataFrame, kind: str, run_settings: dict[str, str],
                          synthetic: bool = False, columns: int = 4) -> alt.FacetChart:
    """Lines per run over epochs, one panel per series (``long``: run, epoch, kind, series, value)."""
    data = long[long["kind"] == kind]
    title = CURVE_TITLES[kind]
    order = [s for s in SERIES_ORDER if s in set(data["series"])] + sorted(set(data["series"]) - set(SERIES_ORDER))
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("value:Q", title="loss" if kind == "loss" else "score", scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", title=None, scale=run_color_scale(run_settings),
                        legend=alt.Legend(orient="top", labelLimit=300)),
        tooltip=["run", "series", "epoch", alt.Tooltip("value:Q", format=".4f")],
    ).properties(width=170, height=160).facet(
        facet=alt.Facet("series:N", title=None, sort=order,
                        header=alt.Header(labelFontSize=13, labelFontWeight="bold")),
        columns=columns,
    ).resolve_scale(y="independent").properties(title=_title(title, synthetic))


# Verdict colours: a decided effect stands out, everything that is not a verdict stays grey.
VERDICT_SCALE = alt.Scale(domain=["helped", "hurt", "no clear difference", "undecided"],
                          range=["#16a34a", "#dc2626", "#64748b", "#d97706"])


def difference_chart(frame: pd.DataFrame, title: str, subtitle: str, synthetic: bool = False) -> alt.LayerChart:
    """One row per matched comparison: the difference (dot) with its 95 % interval (error bar), a rule
    at zero, coloured by verdict (``frame``: :func:`affectmodel.study.factors_frame` or
    :func:`affectmodel.study.interactions_frame`)."""
    data = frame.assign(row=frame["comparison"] + " · " + frame["title"] + " · " + frame["configurations"],
                        low=frame["diff_low"].where(frame["diff_low"].notna(), None),
                        high=frame["diff_high"].where(frame["diff_high"].notna(), None))
    data = data[["row", "comparison", "configurations", "title", "metric", "diff_mean", "low", "high", "seeds",
                 "verdict", "verdict_text"]]
    order = list(dict.fromkeys(data["row"]))
    y = alt.Y("row:N", sort=order, title=None, axis=alt.Axis(labelLimit=640))
    tooltip = ["comparison", "configurations", "title", "metric", alt.Tooltip("diff_mean:Q", format="+.3f",
                                                                              title="difference"),
               alt.Tooltip("low:Q", format="+.3f", title="95 % low"),
               alt.Tooltip("high:Q", format="+.3f", title="95 % high"), "seeds", "verdict_text"]
    base = alt.Chart(data).encode(y=y)
    # the zero line spans the whole height (drawn once per row, on the same data: no extra rows)
    zero = alt.Chart(data).mark_rule(color="#111827", strokeDash=[4, 3]).encode(x=alt.datum(0.0))
    bars = base.transform_filter("isValid(datum.low) && isValid(datum.high)").mark_errorbar(
        ticks=True, thickness=2).encode(
        x=alt.X("low:Q", title="difference (95 % interval over validation videos and seeds)"), x2="high:Q",
        color=alt.Color("verdict:N", scale=VERDICT_SCALE, legend=None), tooltip=tooltip)
    dots = base.mark_circle(size=110, opacity=1).encode(
        x=alt.X("diff_mean:Q", title="difference (95 % interval over validation videos and seeds)",
                scale=alt.Scale(zero=True)),
        color=alt.Color("verdict:N", scale=VERDICT_SCALE, title="verdict", legend=alt.Legend(orient="top")),
        tooltip=tooltip)
    return alt.LayerChart(layer=[zero, bars, dots]).properties(
        title=_title(title, synthetic, subtitle), height=alt.Step(30))


def confusion_chart(long: pd.DataFrame, run: str, synthetic: bool = False) -> alt.LayerChart:
    """Expression confusion matrix (``long``: true, predicted, count, rate); colour = row-normalised rate."""
    order = list(dict.fromkeys(long["true"]))
    base = alt.Chart(long).encode(
        x=alt.X("predicted:N", sort=order, title="predicted", axis=alt.Axis(labelAngle=-40, labelOverlap=False)),
        y=alt.Y("true:N", sort=order, title="true"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("rate:Q", title="share of row", scale=alt.Scale(scheme="blues", domain=[0, 1])),
        tooltip=["true", "predicted", alt.Tooltip("count:Q", format=".0f"), alt.Tooltip("rate:Q", format=".2f")],
    )
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("count:Q", format=".0f"),
        color=alt.condition("datum.rate > 0.5", alt.value("white"), alt.value("#1f2937")),
    )
    return alt.LayerChart(layer=[cells, text]).properties(
        title=_title(f"Expression confusion matrix: {run}", synthetic), width=420, height=380)
