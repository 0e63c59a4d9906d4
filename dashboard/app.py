"""Results dashboard: did multi-task learning help, for which task, at what cost?

    streamlit run dashboard/app.py                       # the shipped quick-suite records (results/quick)
    streamlit run dashboard/app.py -- --runs runs/quick [--hub OWNER/MODEL ...]

The runs folder comes from ``--runs``, else ``AFFECT_RUNS_DIR``, else the records shipped with the
repository (:data:`SHIPPED_RUNS`), and can be changed in the sidebar. All logic, every figure and every
cost ratio lives in :mod:`affectmodel.study`; this file only lays it out.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import streamlit as st

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the repository root.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from affectmodel import study  # noqa: E402
from affectmodel.predictions import PREDICTIONS_FILE  # noqa: E402
from affectmodel.records import find_runs, read_runs  # noqa: E402
from affectmodel.summaries import SUMMARY_FILE  # noqa: E402
from affectmodel.tasks import ABAW_BASELINES, AU_NAMES  # noqa: E402
from dashboard import charts  # noqa: E402

FACTOR_TITLES = {"dataset": "Data set", "setting": "Setting", "tasks": "Tasks", "init": "Initialisation",
                 "pretraining": "Pre-training", "augmentation": "Augmentation", "losses": "Losses",
                 "weighting": "Task weighting", "temporal": "Temporal context", "augment": "Augmentation",
                 "budget_steps": "Budget (steps)", "task_weights": "Task weights"}  # keys: columns or option names
# Scores first, then cost, then the factors: the columns a reader compares come before the long ones.
TABLE_COLUMNS = {"run": "Run", "seed": "Seed", "setting": "Setting", "tasks": "Tasks", "P_EXPR": "P_EXPR",
                 "P_AU": "P_AU",
                 "P_VA": "P_VA", "P_MTL": "P_MTL", "ccc_valence": "CCC val.", "ccc_arousal": "CCC ar.",
                 "parameters": "Params", "train_time_s": "Train time", "images_per_second": "Images/s",
                 "data": "Data"}  # then every training option that varies among the runs (study.varying_options)
SHORT_TITLES = {"expr": "Expression", "au": "Action units", "va": "Valence/arousal"}
BEST_STYLE = "background-color: #dcfce7; font-weight: 700; color: #14532d"
# The quick suite's run records (records and validation predictions, no weights) ship with the repository.
SHIPPED_RUNS = _ROOT / "results" / "quick"
SUITE_FILE = _ROOT / "suites" / "quick.toml"
VERDICT_COLORS: dict[str, Literal["normal", "off"]] = {"helped": "normal", "hurt": "normal"}


# ----------------------------------------------------------------------------- sources

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="affectmodel results dashboard", allow_abbrev=False)
    parser.add_argument("--runs", default=None,
                        help="runs folder (default: $AFFECT_RUNS_DIR, else the shipped results/quick)")
    parser.add_argument("--hub", nargs="*", default=[], help="Hub model repositories to read results from")
    args, _ = parser.parse_known_args(argv)  # under a test runner argv holds the runner's own options
    return args


def _fingerprint(root: str) -> tuple:
    """Changes whenever a run is added, rewritten or removed, so that the cache reloads."""
    stamp = []
    for run in find_runs(root):
        for name in ("config.json", "training_config.json", "metrics.json", "history.csv", PREDICTIONS_FILE,
                     SUMMARY_FILE):
            try:
                stamp.append((str(run / name), (run / name).stat().st_mtime_ns))
            except OSError:
                pass
    return tuple(stamp)


@st.cache_data(show_spinner="Reading run records…")
def load_local(root: str, fingerprint: tuple) -> tuple[dict, list[str]]:
    records, errors = read_runs(root)
    return study.index_runs(records), errors


@st.cache_data(show_spinner="Reading results from the Hub…", ttl=600)
def load_hub(repo_ids: tuple[str, ...], taken: tuple[str, ...]) -> tuple[dict, list[str]]:
    try:
        from affectmodel.hub.results import read_hub_runs  # heavy and network-bound: only when asked
    except ImportError as e:
        return {}, [f"Reading results from the Hub is not available in this install ({e})."]
    try:
        records, errors = read_hub_runs(list(repo_ids))
    except Exception as e:  # noqa: BLE001 - a readable line on screen instead of a traceback
        return {}, [f"Could not read results from the Hub: {type(e).__name__}: {e}"]
    return study.index_runs(records, source="hub", taken=taken), list(errors)


def default_runs_dir(args: argparse.Namespace) -> Path:
    """``--runs``, else ``AFFECT_RUNS_DIR``, else the shipped quick-suite records."""
    chosen = args.runs or os.environ.get("AFFECT_RUNS_DIR")
    return Path(chosen) if chosen else SHIPPED_RUNS


def shown_path(path: Path) -> str:
    """A folder as the sidebar shows it: relative to the working folder when inside it (``results/quick``
    from the repository), so that a screenshot or a screen share shows no local absolute path."""
    resolved = Path(path).expanduser().resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(resolved)


def make_runs_hint() -> str:
    """How to make a runs folder: the commands in the quick suite's header (synthetic data, then the suite)."""
    commands = []
    try:
        for line in SUITE_FILE.read_text(encoding="utf-8").splitlines():
            text = line.lstrip("#").strip()
            if text.startswith(("python -m affectmodel synth", "python train.py suite")):
                commands.append(text)
    except OSError:
        pass
    if not any(c.startswith("python train.py suite") for c in commands):
        commands = ["python -m affectmodel synth --out data/synthetic",
                    "python train.py suite suites/quick.toml --data data/synthetic --out runs/quick"]
    return ("Make one with the quick suite (about 15-30 minutes on a laptop CPU):\n\n```\n" + "\n".join(commands)
            + "\n```\n\nthen type `runs/quick` in the sidebar's *Runs folder*.")


def sidebar_sources(args: argparse.Namespace) -> tuple[str, list[str]]:
    default = default_runs_dir(args)
    st.sidebar.header("Sources")
    runs_dir = st.sidebar.text_input("Runs folder", value=shown_path(default),
                                     key="runs_dir", help="A folder of run records, e.g. runs/quick")
    hub_text = st.sidebar.text_area("Hub model repositories (optional)", value="\n".join(args.hub),
                                    key="hub_repos", placeholder="owner/model, one per line", height=80)
    hub = [line.strip() for line in hub_text.replace(",", "\n").splitlines() if line.strip()]
    if st.sidebar.button("Reload runs", help="Read the folder again (new runs are picked up automatically)"):
        st.cache_data.clear()
    return runs_dir, hub


def load_all(runs_dir: str, hub: list[str]) -> dict:
    root = Path(runs_dir).expanduser()
    runs: dict = {}
    if not root.is_dir():
        st.error(f"The runs folder **{root}** does not exist. " + make_runs_hint())
    else:
        runs, errors = load_local(str(root), _fingerprint(str(root)))
        if not runs and not errors:
            st.info(f"No run records in **{root}** yet. " + make_runs_hint())
        show_errors(errors, "run record")
    if hub:
        hub_runs, hub_errors = load_hub(tuple(hub), tuple(runs))
        show_errors(hub_errors, "Hub repository")
        runs = {**runs, **hub_runs}
    return runs


@st.cache_data(show_spinner="Computing intervals over validation videos and seeds…")
def load_report(_runs: dict, fingerprint: tuple) -> study.StudyReport:
    """Matched comparisons with intervals for every loaded run (cached per set of records)."""
    return study.study_report(_runs)


def show_errors(errors: list[str], what: str) -> None:
    if errors:
        n = len(errors)
        st.warning(f"{n} {what}{'s' if n > 1 else ''} could not be read and {'are' if n > 1 else 'is'} "
                   "left out; everything else is shown.\n\n" + "\n".join(f"- {e}" for e in errors))


# ----------------------------------------------------------------------------- filters

def sidebar_filters(table: pd.DataFrame) -> pd.DataFrame:
    st.sidebar.header("Filters")
    st.sidebar.caption("Empty = all. Only factors that vary are listed.")
    selections = {}
    for column, options in study.filter_options(table).items():
        if len(options) > 1:
            name = column.removeprefix(study.OPTION_PREFIX)
            title = FACTOR_TITLES.get(name, name)
            selections[column] = st.sidebar.multiselect(title, options, key=f"filter_{column}", placeholder="all")
    return study.filter_table(table, selections)


# ----------------------------------------------------------------------------- sections

def _fmt(x: float | None, spec: str = ".3f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) and math.isfinite(x) else "n/a"


def _settings(table: pd.DataFrame, chosen: list[str]) -> dict[str, str]:
    """Run -> "uni-task"/"multi-task" in the chosen order (the charts colour runs by setting)."""
    setting = dict(zip(table["run"], table["setting"], strict=True))
    return {r: setting[r] for r in chosen}


def banners(table: pd.DataFrame) -> None:
    if table["synthetic"].any():
        names = ", ".join(sorted(table.loc[table["synthetic"], "dataset"].unique()))
        st.warning(f"**Synthetic benchmark** ({names}): these runs were trained and scored on generated faces. "
                   "They check the pipeline and the direction of effects; they never stand in for results on "
                   "real data.", icon=":material/science:")
    if table["dataset"].map(study.is_affwild2).any():
        ref = ", ".join(f"{k} {v:.2f}" for k, v in ABAW_BASELINES.items())
        st.info(f"Aff-Wild2 reference (ABAW official baselines on validation): {ref}. Strong challenge entries "
                "reach P_MTL 1.5-1.75 with large backbones, temporal models and ensembles. Challenge figures are "
                "usually tuned (thresholds, epoch) on the validation set itself, so they are optimistic; the "
                "figures here are tuned on held-out training videos.", icon=":material/flag:")


def _real_first(datasets, table: pd.DataFrame) -> list[str]:
    return sorted(set(datasets), key=lambda d: (bool(table.loc[table.dataset == d, "synthetic"].any()), d))


def headline(table: pd.DataFrame, report: study.StudyReport) -> None:
    """Matched comparisons (the verdict), their error bars and cost; the best-run view only as a labelled aside."""
    shown = set(table["configuration"])
    comparisons = [c for c in report.comparisons if c.multi in shown and c.dataset in set(table["dataset"])]
    if not comparisons:
        st.info("No multi-task configuration among the shown runs, so nothing to compare: a comparison needs a "
                "multi-task configuration and uni-task ones that differ from it only in the tasks.")
    for note in report.data_notes:  # seeds on different data kept apart, or records that cannot be checked
        st.warning(note, icon=":material/fingerprint:")
    for dataset in _real_first([c.dataset for c in comparisons], table):
        comps = [c for c in comparisons if c.dataset == dataset]
        synthetic = comps[0].synthetic
        st.subheader(f"Did multi-task learning help? · {study.dataset_label(dataset, synthetic)}")
        multis = list(dict.fromkeys(c.multi for c in comps))
        default = max(multis, key=lambda m: sum(c.uni is not None for c in comps if c.multi == m))
        multi = st.selectbox("Multi-task configuration", multis, index=multis.index(default),
                             key=f"multi_{dataset}") if len(multis) > 1 else multis[0]
        mine = [c for c in comps if c.multi == multi]
        cost = next((c for c in report.costs if c.multi == multi), None)
        st.markdown(f"**{study.verdict_sentence(mine, cost)}**")
        st.caption("Matched comparison: the uni-task configurations differ from the multi-task one only in the "
                   "tasks (same initialisation, augmentation, loss, budget in steps, data). Figures are means over "
                   "seeds; intervals are 95 % over validation videos and seeds. \"Helped\"/\"hurt\" only when the "
                   "interval of the difference excludes zero; otherwise there is no clear difference.")
        # Cards: the figure and its difference on top, the verdict and seeds in a caption that wraps
        # (a metric's delta description is cut to the card's width).
        cols = st.columns(len(mine) + (2 if cost else 0))
        for col, c in zip(cols, mine, strict=False):  # the cost columns follow
            est, diff = c.multi_estimate, c.difference
            has_diff = diff is not None and math.isfinite(diff.mean)
            card = col.container(border=True)
            card.metric(SHORT_TITLES[c.task], _fmt(est.mean) if est else "n/a",
                        delta=f"{diff.mean:+.3f}" if diff is not None and has_diff else None,
                        delta_color=VERDICT_COLORS.get(c.verdict, "off"),
                        help=f"{c.metric} of {c.multi} against {c.uni or 'no matched uni-task configuration'}: "
                             f"{c.verdict_text}.")
            card.caption(f"{c.verdict if c.uni else 'unmatched'} · {_seeds(c)}")
        if cost:
            for col, label, value, ratio, help_text in (
                    (cols[-2], "Parameters", study.format_count(cost.multi_parameters), cost.parameters_ratio,
                     f"{cost.multi} against {', '.join(cost.unis)} together."),
                    (cols[-1], "Training time", study.format_duration(cost.multi_train_time_s), cost.train_time_ratio,
                     "Including the run it was initialised from, if any: "
                     f"{study.format_duration(cost.multi_init_train_time_s)}.")):
                card = col.container(border=True)
                card.metric(label, value, delta=f"{_fmt(ratio, '.2f')}x", delta_color="off",
                            delta_arrow="off",  # a ratio (0.33x is a saving): no up/down arrow
                            help=help_text)
                card.caption(f"of {len(cost.unis)} uni-task models")
        left, right = st.columns([1, 1], gap="large")
        left.altair_chart(charts.matched_comparison_chart(study.comparison_bars(mine), synthetic), width="stretch")
        if cost:
            right.markdown(f"**At what cost?** One shared model against {len(cost.unis)} matched uni-task models")
            right.table(cost.summary_table(), hide_index=True)
        st.markdown("**All matched comparisons**")
        st.table(comparisons_table(comps), hide_index=True)
    best_runs_section(table)


def _seeds(c: study.Comparison) -> str:
    multi = c.multi_estimate.n_seeds[0] if c.multi_estimate else 0
    uni = c.uni_estimate.n_seeds[0] if c.uni_estimate else 0
    return f"{multi} seed{'' if multi == 1 else 's'} multi, {uni} uni"


def comparisons_table(comparisons: list[study.Comparison]) -> pd.DataFrame:
    """The matched comparisons as text cells (an HTML table that wraps to the page: no column is cut,
    and a dash where there is no figure)."""
    return pd.DataFrame([{
        "Multi-task": c.multi, "Task": c.title, "Uni-task (matched)": c.uni or "unmatched",
        "Multi": study.interval_text(c.multi_estimate), "Uni": study.interval_text(c.uni_estimate),
        "Difference (95 %)": study.interval_text(c.difference, signed=True),
        "Seeds (multi/uni)": f"{c.multi_estimate.n_seeds[0] if c.multi_estimate else 0}/"
                             f"{c.uni_estimate.n_seeds[0] if c.uni_estimate else 0}",
        "Budget (steps)": "–" if c.multi_budget_steps is None else str(c.multi_budget_steps),
        "Verdict": c.verdict_text} for c in comparisons])


def best_runs_section(table: pd.DataFrame) -> None:
    comparison = study.headline_comparison(table)
    if comparison.empty:
        return
    with st.expander("Best runs per task (not a verdict: the best of N runs favours the side with more runs)"):
        for dataset in _real_first(comparison["dataset"], table):
            comp = comparison[comparison["dataset"] == dataset].reset_index(drop=True)
            synthetic = bool(comp["synthetic"].any())
            st.altair_chart(charts.uni_vs_multi_chart(comp, synthetic), width="stretch")
            st.dataframe(comp[["title", "uni_run", "uni", "multi_run", "multi"]].rename(columns={
                "title": "Task", "uni_run": "Best uni-task run", "uni": "Uni", "multi_run": "Best multi-task run",
                "multi": "Multi"}), hide_index=True, width="stretch", key=f"best_{dataset}", placeholder="–",
                column_config={"Uni": st.column_config.NumberColumn(format="%.3f"),
                               "Multi": st.column_config.NumberColumn(format="%.3f")})


def study_table_section(table: pd.DataFrame) -> None:
    st.subheader("Study table")
    st.caption("One row per run. Green: the best score in each metric column (per data set). "
               "–: the run does not have that task.")
    shown = table.assign(data=[study.dataset_label(d, s)
                               for d, s in zip(table["dataset"], table["synthetic"], strict=True)])
    options = {c: c.removeprefix(study.OPTION_PREFIX) for c in table.columns if c.startswith(study.OPTION_PREFIX)}
    columns = {**TABLE_COLUMNS, **options}
    shown = shown[list(columns)]
    mask = study.best_mask(table).reindex(columns=shown.columns, fill_value=False)
    styler = shown.style.apply(lambda _: mask.map(lambda best: BEST_STYLE if best else ""), axis=None)
    fmt: dict[str, Any] = dict.fromkeys(study.METRIC_COLUMNS, "{:.3f}")
    fmt.update({"parameters": study.format_count, "train_time_s": study.format_duration,
                "images_per_second": study.format_rate})
    styler = styler.format(fmt, na_rep="–")
    st.dataframe(styler, hide_index=True, width="stretch", key="study_table", placeholder="–",
                 column_config={c: st.column_config.Column(label) for c, label in columns.items()})
    st.download_button("Download the filtered table (CSV)", study.table_csv(table), file_name="study_table.csv",
                       mime="text/csv", icon=":material/download:", key="download_csv")


def per_label_section(table: pd.DataFrame, runs: dict, synthetic: bool) -> None:
    for kind, metric, title, order in (("expr", "P_EXPR", "Per-class F1 (expression)", None),
                                       ("au", "P_AU", "Per-AU F1", list(AU_NAMES))):
        scored = table.dropna(subset=[metric])
        if scored.empty:
            continue
        options = list(scored["run"])
        comp = study.headline_comparison(scored)
        default = [r for r in dict.fromkeys(comp["uni_run"].tolist() + comp["multi_run"].tolist())
                   if isinstance(r, str) and r in options][:4] or options[:2]
        chosen = st.multiselect(f"Runs to compare · {title}", options, default=default, key=f"runs_{kind}")
        long = study.per_label_f1({r: runs[r] for r in chosen}, kind)
        if long.empty:
            st.info(f"None of the chosen runs saved {title.lower()}.")
            continue
        label_order = order or list(dict.fromkeys(long["label"]))
        st.altair_chart(charts.per_label_chart(long, label_order, title, _settings(table, chosen), synthetic),
                        width="stretch")


def curves_section(table: pd.DataFrame, runs: dict, synthetic: bool) -> None:
    options = list(table["run"])
    chosen = st.multiselect("Runs to compare", options, default=options[: min(6, len(options))], key="runs_curves")
    long = study.history_long({r: runs[r] for r in chosen})
    if long.empty:
        st.info("The chosen runs have no training history (history.csv).")
        return
    for kind in charts.CURVE_TITLES:
        if (long["kind"] == kind).any():
            st.altair_chart(charts.training_curves_chart(long, kind, _settings(table, chosen), synthetic),
                            width="content")


FACTOR_COLUMNS_SHOWN: dict[str, Any] = {
    "comparison": "Factor: variant vs reference", "configurations": "Configurations", "title": "Task",
    "metric": "Metric", "reference_mean": st.column_config.NumberColumn("Reference", format="%.3f"),
    "variant_mean": st.column_config.NumberColumn("Variant", format="%.3f"),
    "diff_mean": st.column_config.NumberColumn("Difference", format="%+.3f"),
    "diff_low": st.column_config.NumberColumn("95 % low", format="%+.3f"),
    "diff_high": st.column_config.NumberColumn("95 % high", format="%+.3f"),
    "seeds": "Seeds", "verdict_text": "Verdict"}
INTERACTION_COLUMNS_SHOWN: dict[str, Any] = {
    "comparison": "Factor: variant vs reference", "title": "Task", "metric": "Metric",
    "reference_effect_mean": st.column_config.NumberColumn("Multi-task effect (reference)", format="%+.3f"),
    "variant_effect_mean": st.column_config.NumberColumn("Multi-task effect (variant)", format="%+.3f"),
    "diff_mean": st.column_config.NumberColumn("Difference of differences", format="%+.3f"),
    "diff_low": st.column_config.NumberColumn("95 % low", format="%+.3f"),
    "diff_high": st.column_config.NumberColumn("95 % high", format="%+.3f"),
    "configurations": "Configurations", "seeds": "Seeds", "verdict_text": "Verdict"}


def factors_section(table: pd.DataFrame, report: study.StudyReport) -> None:
    """Matched factor comparisons and interactions among the shown configurations: differences with
    error bars and verdicts in words (the study's own figures; nothing is pooled here)."""
    shown = set(table["configuration"])
    factors = [f for f in report.factors if {f.reference, f.variant} <= shown]
    inter = [i for i in report.interactions
             if {i.reference_multi, i.reference_uni, i.variant_multi, i.variant_uni} <= shown]
    st.caption("Each row compares two configurations that differ in exactly one training option (the factor), "
               "task by task: variant − reference, mean over seeds with a 95 % interval over validation videos "
               "and seeds. \"Helped\"/\"hurt\" only when the interval excludes zero, both sides have two seeds "
               "or more and both learned (an interval above the metric's no-skill level, no collapsed head). "
               "Interactions ask whether the factor changes the multi-task effect (multi − matched uni).")
    if not factors and not inter:
        st.info("No two shown configurations differ in exactly one option, so there is no factor to compare. "
                "A suite answers a factor with a configuration that changes only that option (suites/quick.toml "
                "has one for each).")
    for dataset in _real_first([f.dataset for f in factors] + [i.dataset for i in inter], table):
        mine = [f for f in factors if f.dataset == dataset]
        synthetic = bool(table.loc[table.dataset == dataset, "synthetic"].any())
        label = study.dataset_label(dataset, synthetic)
        if mine:
            st.subheader(f"Factor comparisons · {label}")
            frame = study.factors_frame(mine)
            st.altair_chart(charts.difference_chart(frame, "Matched factor comparisons: variant − reference",
                                                    "dot: mean over seeds; bar: 95 % interval; colour: verdict",
                                                    synthetic), width="stretch")
            st.dataframe(frame[list(FACTOR_COLUMNS_SHOWN)], hide_index=True, width="stretch",
                         key=f"factors_{dataset}", column_config=FACTOR_COLUMNS_SHOWN, placeholder="–")
        mine_i = [i for i in inter if i.dataset == dataset]
        if mine_i:
            st.subheader(f"Does a factor change the multi-task effect? · {label}")
            frame = study.interactions_frame(mine_i)
            st.altair_chart(charts.difference_chart(
                frame, "Interactions: multi-task effect at the variant level − at the reference level",
                "multi-task effect = multi-task − matched uni-task configuration", synthetic), width="stretch")
            st.dataframe(frame[list(INTERACTION_COLUMNS_SHOWN)], hide_index=True, width="stretch",
                         key=f"interactions_{dataset}", column_config=INTERACTION_COLUMNS_SHOWN, placeholder="–")
    alone = {k: why for k, why in report.not_compared.items() if k in shown}
    if alone:
        with st.expander(f"Not compared with anything ({len(alone)})"):
            st.markdown("\n".join(f"- **{k}**: {why}" for k, why in alone.items()))


def confusion_section(table: pd.DataFrame, runs: dict) -> None:
    with_cm = [r for r in table["run"] if not study.confusion_long(runs[r]).empty]
    if not with_cm:
        st.info("None of the shown runs saved an expression confusion matrix.")
        return
    run = st.selectbox("Run", with_cm, key="confusion_run")
    synthetic = bool(table.loc[table["run"] == run, "synthetic"].any())
    st.altair_chart(charts.confusion_chart(study.confusion_long(runs[run]), run, synthetic), width="content")


def detail_section(table: pd.DataFrame, runs: dict) -> None:
    options = list(table["run"])
    wanted = st.query_params.get("run")
    run = st.selectbox("Run", options, index=options.index(wanted) if wanted in options else 0, key="detail_run")
    record = runs[run]
    row = table.loc[table["run"] == run].iloc[0]
    info = study.dataset_info(record)
    if info["synthetic"]:
        st.warning(f"Trained and scored on the synthetic benchmark ({info['dataset']}), not on real data.",
                   icon=":material/science:")
    st.markdown(f"**{run}** · {row['setting']} ({row['tasks']}) · data: "
                f"{study.dataset_label(info['dataset'], info['synthetic'])}"
                f"{', split ' + info['split'] if info['split'] else ''} · source: {row['source']}")
    repo = record.metrics.get("hub_repo")
    url = study.hub_url(repo if isinstance(repo, str) else None)
    if url:
        st.link_button(f"Open {repo} on the Hugging Face Hub", url, icon=":material/open_in_new:")
    st.caption(study.selection_note(record))
    st.caption(study.provenance_note(record))
    metrics = study.run_metrics(record)
    cols = st.columns(7)
    for col, (name, value) in zip(cols, metrics.items(), strict=False):
        col.metric(name, f"{value:.3f}")
    cols[len(metrics)].metric("Parameters", study.format_count(row["parameters"]),
                    delta_description=f"{study.format_duration(row['train_time_s'])} training", delta=None)
    for key, value in study.in_sample_figures(record).items():
        st.metric(f"{key.replace('_tuned_on_validation', '')} tuned on validation (in-sample, optimistic)",
                  f"{value:.3f}", help="Thresholds tuned on the very frames this figure is reported on; the "
                                       "honest figure is the one above.")
    one = {run: record}
    long = study.history_long(one)
    for kind in charts.CURVE_TITLES:
        if (long["kind"] == kind).any():
            st.altair_chart(charts.training_curves_chart(long, kind, _settings(table, [run]), info["synthetic"]),
                            width="content")
    for kind, title in (("expr", "Per-class F1 (expression)"), ("au", "Per-AU F1")):
        f1 = study.per_label_f1(one, kind)
        if not f1.empty:
            order = list(AU_NAMES) if kind == "au" else list(dict.fromkeys(f1["label"]))
            st.altair_chart(charts.per_label_chart(f1, order, title, _settings(table, [run]), info["synthetic"]),
                            width="stretch")
    cm = study.confusion_long(record)
    if not cm.empty:
        st.altair_chart(charts.confusion_chart(cm, run, info["synthetic"]), width="content")
    left, right = st.columns(2)
    with left.expander("Configuration (config.json)"):
        st.json(record.config)
    with right.expander("All metrics (metrics.json)"):
        st.json(record.metrics)
    st.caption(f"Folder: {record.path}")


# ----------------------------------------------------------------------------- page

def main() -> None:
    st.set_page_config(page_title="affectmodel · uni- vs multi-task study", layout="wide",
                       page_icon=":material/insights:")
    args = parse_args(sys.argv[1:])
    runs_dir, hub = sidebar_sources(args)
    st.title("Uni-task vs multi-task facial affect models")
    runs = load_all(runs_dir, hub)
    if not runs:
        st.stop()
    table = study.study_table(runs)
    shown = sidebar_filters(table)
    st.sidebar.caption(f"{len(shown)} of {len(table)} runs shown.")
    if shown.empty:
        st.info("No run matches the filters: clear some in the sidebar.")
        st.stop()
    banners(shown)
    report = load_report(runs, tuple(sorted(runs)) + _fingerprint(runs_dir))
    if report.warnings:  # predictions that could not be read, seeds left out: the figures below are affected
        st.warning("Some records could only be used in part; the figures below are affected:\n\n"
                   + "\n".join(f"- {w}" for w in report.warnings), icon=":material/warning:")
    headline(shown, report)
    study_table_section(shown)
    synthetic = bool(shown["synthetic"].any())
    tabs = st.tabs(["Per class & per AU", "Training curves", "Factors (matched)", "Confusion matrix", "Run detail"])
    with tabs[0]:
        per_label_section(shown, runs, synthetic)
    with tabs[1]:
        curves_section(shown, runs, synthetic)
    with tabs[2]:
        factors_section(shown, report)
    with tabs[3]:
        confusion_section(shown, runs)
    with tabs[4]:
        detail_section(shown, runs)


main()
