"""Results dashboard: did multi-task learning help, for which task, at what cost?

    streamlit run dashboard/app.py -- --runs runs/quick [--hub OWNER/MODEL ...]

The runs folder also comes from ``AFFECT_RUNS_DIR`` (default ``runs/``) and can be changed in the
sidebar. All logic lives in :mod:`affectmodel.study`; this file only lays it out.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import pandas as pd
import streamlit as st

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the repository root.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from affectmodel import study  # noqa: E402
from affectmodel.records import find_runs, read_runs  # noqa: E402
from affectmodel.tasks import ABAW_BASELINES, AU_NAMES  # noqa: E402
from dashboard import charts  # noqa: E402

FACTOR_TITLES = {"dataset": "Data set", "setting": "Setting", "tasks": "Tasks", "init": "Initialisation",
                 "pretraining": "Pre-training", "augmentation": "Augmentation", "losses": "Losses",
                 "weighting": "Task weighting"}
# Scores first, then cost, then the factors: the columns a reader compares come before the long ones.
TABLE_COLUMNS = {"run": "Run", "setting": "Setting", "tasks": "Tasks", "P_EXPR": "P_EXPR", "P_AU": "P_AU",
                 "P_VA": "P_VA", "P_MTL": "P_MTL", "ccc_valence": "CCC val.", "ccc_arousal": "CCC ar.",
                 "parameters": "Params", "train_time_s": "Train time", "images_per_second": "Images/s",
                 "init": "Init", "pretraining": "Pre-training", "augmentation": "Augment", "losses": "Losses",
                 "weighting": "Weighting", "data": "Data"}
SHORT_TITLES = {"expr": "Expression", "au": "Action units", "va": "Valence/arousal"}
BEST_STYLE = "background-color: #dcfce7; font-weight: 700; color: #14532d"


# ----------------------------------------------------------------------------- sources

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="affectmodel results dashboard", allow_abbrev=False)
    parser.add_argument("--runs", default=None, help="runs folder (default: $AFFECT_RUNS_DIR or runs/)")
    parser.add_argument("--hub", nargs="*", default=[], help="Hub model repositories to read results from")
    args, _ = parser.parse_known_args(argv)  # under a test runner argv holds the runner's own options
    return args


def _fingerprint(root: str) -> tuple:
    """Changes whenever a run is added, rewritten or removed, so that the cache reloads."""
    stamp = []
    for run in find_runs(root):
        for name in ("config.json", "metrics.json", "history.csv"):
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
    except Exception as e:  # a readable line on screen instead of a traceback
        return {}, [f"Could not read results from the Hub: {type(e).__name__}: {e}"]
    return study.index_runs(records, source="hub", taken=taken), list(errors)


def sidebar_sources(args: argparse.Namespace) -> tuple[str, list[str]]:
    default = args.runs or os.environ.get("AFFECT_RUNS_DIR") or "runs"
    st.sidebar.header("Sources")
    runs_dir = st.sidebar.text_input("Runs folder", value=str(Path(default).expanduser().resolve()),
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
        st.error(f"The runs folder **{root}** does not exist. Point the dashboard at one: "
                 "`streamlit run dashboard/app.py -- --runs runs/quick` (or set `AFFECT_RUNS_DIR`).")
    else:
        runs, errors = load_local(str(root), _fingerprint(str(root)))
        if not runs and not errors:
            st.info(f"No run records in **{root}** yet. Train some runs (`python train.py suite "
                    "suites/quick.toml --data DATA --out runs/quick`) or choose another folder in the sidebar.")
        show_errors(errors, "run record")
    if hub:
        hub_runs, hub_errors = load_hub(tuple(hub), tuple(runs))
        show_errors(hub_errors, "Hub repository")
        runs = {**runs, **hub_runs}
    return runs


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
            selections[column] = st.sidebar.multiselect(FACTOR_TITLES[column], options, key=f"filter_{column}",
                                                        placeholder="all")
    return study.filter_table(table, selections)


# ----------------------------------------------------------------------------- sections

def _fmt(x: float, spec: str = ".3f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) and math.isfinite(x) else "n/a"


def _settings(table: pd.DataFrame, chosen: list[str]) -> dict[str, str]:
    """Run -> "uni-task"/"multi-task" in the chosen order (the charts colour runs by setting)."""
    setting = dict(zip(table["run"], table["setting"]))
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
                "reach P_MTL 1.5-1.75 with large backbones, temporal models and ensembles.",
                icon=":material/flag:")


def headline(table: pd.DataFrame, runs: dict) -> None:
    comparison = study.headline_comparison(table)
    cost = study.cost_comparison(table)
    if comparison.empty:
        st.info("No scored runs match the filters.")
        return
    # real data first, then synthetic
    datasets = sorted(comparison["dataset"].unique(), key=lambda d: (bool(table.loc[table.dataset == d,
                                                                                     "synthetic"].any()), d))
    for dataset in datasets:
        comp = comparison[comparison["dataset"] == dataset].reset_index(drop=True)
        cst = cost[cost["dataset"] == dataset].reset_index(drop=True)
        synthetic = bool(comp["synthetic"].any())
        st.subheader(f"Did multi-task learning help? · {study.dataset_label(dataset, synthetic)}")
        st.markdown(f"**{study.verdict(comp, cst)}**")
        st.caption("Each card: the best multi-task score on that task, and its difference from the best "
                   "uni-task model. Cost: one shared model against one model per task.")
        has_cost = len(cst) > 0 and cst.loc[0, "multi_run"] is not None and cst.loc[0, "uni_models"] > 1
        cols = st.columns(len(comp) + (2 if has_cost else 0))
        for col, r in zip(cols, comp.itertuples()):
            both = math.isfinite(r.uni) and math.isfinite(r.multi)
            col.metric(SHORT_TITLES[r.task], _fmt(r.multi) if math.isfinite(r.multi) else _fmt(r.uni),
                       delta=f"{r.delta:+.3f}" if both else None,
                       delta_description=f"vs {_fmt(r.uni)} uni" if both else
                       ("uni-task only" if math.isfinite(r.uni) else "multi-task only"),
                       delta_color="normal" if both and abs(r.delta) >= study.NEGLIGIBLE_DELTA else "off",
                       help=f"{r.metric}. Best uni-task run: {r.uni_run or 'none'} ({_fmt(r.uni)}). "
                            f"Best multi-task run: {r.multi_run or 'none'} ({_fmt(r.multi)}).",
                       border=True)
        if has_cost:
            c = cst.iloc[0]
            saved = c.multi_parameters / c.uni_parameters - 1 if c.uni_parameters else math.nan
            cols[-2].metric("Parameters", study.format_count(c.multi_parameters),
                            delta=f"{saved:+.0%}" if math.isfinite(saved) else None, delta_color="inverse",
                            delta_description=f"vs {study.format_count(c.uni_parameters)}",
                            help=f"One shared model ({c.multi_run}) against {c.uni_models} uni-task models "
                                 f"({c.uni_runs}) together.", border=True)
            ratio = c.multi_train_time_s / c.uni_train_time_s - 1 if c.uni_train_time_s else math.nan
            cols[-1].metric("Training time", study.format_duration(c.multi_train_time_s),
                            delta=f"{ratio:+.0%}" if math.isfinite(ratio) else None, delta_color="inverse",
                            delta_description=f"vs {study.format_duration(c.uni_train_time_s)}",
                            help=f"One shared model ({c.multi_run}) against {c.uni_models} uni-task models "
                                 f"({c.uni_runs}) trained one after the other.", border=True)
        left, right = st.columns([3, 2], gap="large")
        left.altair_chart(charts.uni_vs_multi_chart(comp, synthetic), width="stretch")
        if has_cost:
            c = cst.iloc[0]
            right.markdown(f"**At what cost?** One shared model against {c.uni_models} uni-task models")
            right.dataframe(study.cost_summary(c), hide_index=True, width="stretch", key=f"cost_{dataset}")
            right.caption(f"Shared model: {c.multi_run}. Uni-task models: {c.uni_runs}. Per task, the best "
                          f"multi-task run is used (hover the bars to see which).")
        else:
            right.markdown("**Best runs per task**")
            right.dataframe(comp[["title", "uni_run", "uni", "multi_run", "multi"]].rename(columns={
                "title": "Task", "uni_run": "Best uni-task run", "uni": "Uni", "multi_run": "Best multi-task run",
                "multi": "Multi"}), hide_index=True, width="stretch", key=f"best_{dataset}",
                column_config={"Uni": st.column_config.NumberColumn(format="%.3f"),
                               "Multi": st.column_config.NumberColumn(format="%.3f")})


def study_table_section(table: pd.DataFrame) -> None:
    st.subheader("Study table")
    st.caption("One row per run. Green: the best score in each metric column (per data set). "
               "None: the run does not have that task.")
    shown = table.assign(data=[study.dataset_label(d, s) for d, s in zip(table["dataset"], table["synthetic"])])
    shown = shown[list(TABLE_COLUMNS)]
    mask = study.best_mask(table).reindex(columns=shown.columns, fill_value=False)
    styler = shown.style.apply(lambda _: mask.map(lambda best: BEST_STYLE if best else ""), axis=None)
    fmt = {c: "{:.3f}" for c in study.METRIC_COLUMNS}
    fmt.update({"parameters": study.format_count, "train_time_s": study.format_duration,
                "images_per_second": study.format_rate})
    styler = styler.format(fmt, na_rep="–")
    st.dataframe(styler, hide_index=True, width="stretch", key="study_table",
                 column_config={c: st.column_config.Column(label) for c, label in TABLE_COLUMNS.items()})
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
    for kind in ("loss", "validation"):
        if (long["kind"] == kind).any():
            st.altair_chart(charts.training_curves_chart(long, kind, _settings(table, chosen), synthetic),
                            width="content")


def factors_section(table: pd.DataFrame, synthetic: bool) -> None:
    metrics = [m for m in ("P_MTL", "P_EXPR", "P_AU", "P_VA") if table[m].notna().any()]
    if not metrics:
        st.info("No scored runs match the filters.")
        return
    metric = st.selectbox("Metric", metrics, key="factor_metric")
    long = study.factor_effects(table, metric)
    if long.empty:
        st.info(f"No factor varies among the runs scored on {metric} (within one task set).")
        return
    if table["dataset"].nunique() > 1:
        st.caption("Several data sets are shown: pick one in the sidebar for a clean comparison.")
    st.altair_chart(charts.factor_effects_chart(long, metric, synthetic), width="content")


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
    if repo:
        st.link_button(f"Open {repo} on the Hugging Face Hub", study.hub_url(repo), icon=":material/open_in_new:")
    metrics = study.run_metrics(record)
    cols = st.columns(7)
    for col, (name, value) in zip(cols, metrics.items()):
        col.metric(name, f"{value:.3f}")
    cols[len(metrics)].metric("Parameters", study.format_count(row["parameters"]),
                    delta_description=f"{study.format_duration(row['train_time_s'])} training", delta=None)
    one = {run: record}
    long = study.history_long(one)
    for kind in ("loss", "validation"):
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
    headline(shown, runs)
    study_table_section(shown)
    synthetic = bool(shown["synthetic"].any())
    tabs = st.tabs(["Per class & per AU", "Training curves", "Factor effects", "Confusion matrix", "Run detail"])
    with tabs[0]:
        per_label_section(shown, runs, synthetic)
    with tabs[1]:
        curves_section(shown, runs, synthetic)
    with tabs[2]:
        factors_section(shown, synthetic)
    with tabs[3]:
        confusion_section(shown, runs)
    with tabs[4]:
        detail_section(shown, runs)


main()
