"""Suites: resolving runs from TOML, skipping complete runs, the summary table."""
import json
from pathlib import Path

import pytest

from affectmodel.records import is_complete
from affectmodel.training.config import ConfigError
from affectmodel.training.suite import load_suite, run_suite, suite_table

REPO = Path(__file__).resolve().parents[1]

SUITE = """
[suite]
name = "test"

[defaults]
image_size = 48
epochs = 2
loss_expr = "weighted_ce"

[[runs]]
name = "uni-expr"
tasks = ["expr"]

[[runs]]
name = "uni-au"
tasks = "au"
losses = {au = "weighted_bce"}

[[runs]]
name = "multi-from-expr"
tasks = ["expr", "au", "va"]
init = "uni-expr"
epochs = 1
"""


def _write(tmp_path, text=SUITE, name="suite.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_runs_resolve_defaults_overrides_and_init_from_earlier_runs(tmp_path):
    runs = load_suite(_write(tmp_path), "DATA", tmp_path / "out", overrides={"workers": 3, "device": "cpu"})
    by_name = {r.name: r for r in runs}
    assert list(by_name) == ["uni-expr", "uni-au", "multi-from-expr"]
    uni, au, multi = by_name["uni-expr"].config, by_name["uni-au"].config, by_name["multi-from-expr"].config
    assert uni.tasks == ["expr"] and uni.image_size == 48 and uni.epochs == 2 and uni.losses["expr"] == "weighted_ce"
    assert au.losses["au"] == "weighted_bce" and au.losses["expr"] == "weighted_ce"
    assert multi.epochs == 1 and multi.init == str(tmp_path / "out" / "uni-expr" / "seed-0")
    assert by_name["multi-from-expr"].init_from_run == "uni-expr" and by_name["uni-expr"].init_from_run is None
    assert all(r.config.workers == 3 and r.config.resume and r.config.data == "DATA" for r in runs)
    assert uni.out == str(tmp_path / "out" / "uni-expr" / "seed-0")
    assert uni.suite == "test" and uni.run == "uni-expr" and uni.seed == 0


SEEDED = """
[suite]
name = "seeded"
seeds = [0, 1, 2]

[defaults]
steps = 20

[[runs]]
name = "pretrain"
tasks = ["expr"]
data = "../folders"
seeds = [1, 2]

[[runs]]
name = "uni-expr"
tasks = ["expr"]

[[runs]]
name = "multi-from-pretrain"
tasks = ["expr", "au", "va"]
init = "pretrain"
seeds = [2, 1]
data = "/abs/affwild2"
"""


def test_seeds_give_one_folder_per_configuration_and_seed(tmp_path):
    out = tmp_path / "out"
    runs = load_suite(_write(tmp_path, SEEDED), tmp_path / "data", out)
    assert [r.folder for r in runs] == ["pretrain/seed-1", "pretrain/seed-2", "uni-expr/seed-0", "uni-expr/seed-1",
                                        "uni-expr/seed-2", "multi-from-pretrain/seed-2", "multi-from-pretrain/seed-1"]
    for r in runs:
        assert r.config.seed == r.seed and r.config.out == str(out / r.name / f"seed-{r.seed}")
        assert r.config.run == r.name and r.config.suite == "seeded" and r.config.steps == 20
    chained = [r for r in runs if r.name == "multi-from-pretrain"]
    assert [r.config.init for r in chained] == [str(out / "pretrain" / "seed-2"), str(out / "pretrain" / "seed-1")]
    by_folder = {r.folder: r.config for r in runs}
    assert by_folder["pretrain/seed-1"].data == str(tmp_path / "data" / "../folders")   # relative to --data
    assert by_folder["multi-from-pretrain/seed-1"].data == "/abs/affwild2"             # absolute
    assert by_folder["uni-expr/seed-0"].data == str(tmp_path / "data")
    # --seeds on the command line replaces every configuration's seeds
    assert {r.seed for r in load_suite(_write(tmp_path, SEEDED.replace("seeds = [2, 1]", "")), "D", out,
                                       overrides={"seeds": [1]})} == {1}


@pytest.mark.parametrize("text, message", [  # seed declarations, then everything else
    ('[suite]\nseeds = [0]\n[[runs]]\nname = "a"\nseed = 3\n', "both seed and seeds"),
    ('[suite]\nseeds = []\n[[runs]]\nname = "a"\n', "non-empty list"),
    ('[suite]\nseeds = [1, 1]\n[[runs]]\nname = "a"\n', "repeat a seed"),
    ('[suite]\nseeds = [0, 1]\n[[runs]]\nname = "a"\nseeds = [0]\n[[runs]]\nname = "b"\ninit = "a"\n',
     "no run with seed(s) 1"),
    ('[suite]\nseed = [0]\n[[runs]]\nname = "a"\n', "unknown key(s) ['seed']"),
    ('[defaults]\ndata = "x"\n[[runs]]\nname = "a"\n', "a run may set its own data"),
    ('[[runs]]\nname = "a"\n[[runs]]\nname = "a"\n', "used twice"),
    ('[[runs]]\nname = "b"\ninit = "a"\n[[runs]]\nname = "a"\n', "must be declared before"),
    ('[[runs]]\nname = "a"\nlearning_rate = 1\n', "run 'a': unknown option 'learning_rate'"),
    ('[[runs]]\nname = "a"\nout = "x"\n', "set by the suite command"),
    ('[[runs]]\nname = "a b"\n', "letters, digits"),
    ('[defaults]\nepochs = 1\n', "at least one [[runs]]"),
    ('[run]\nname = "a"\n', "unknown top-level"),
])
def test_bad_suites_are_reported_clearly(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_suite(_write(tmp_path, text), "DATA", tmp_path / "out")
    assert message in str(e.value)


def _fake_complete_run(config):
    """What train_run leaves behind, minimally: enough for records.is_complete and read_run."""
    run_dir = Path(config.out)
    (run_dir / "model").mkdir(parents=True, exist_ok=True)
    (run_dir / "model" / "model.safetensors").write_bytes(b"0")
    source = Path(config.init).parent.name if config.init not in ("random", "imagenet") else None
    (run_dir / "config.json").write_text(json.dumps({"tasks": config.tasks, "init": config.init,
                                                     "pretrained_from": source, "losses": config.to_dict()["losses"],
                                                     "augment": config.augment, "run": config.run,
                                                     "seed": config.seed, "va_bound": config.va_bound,
                                                     "warmup": config.warmup}))
    scores = {"expr": "P_EXPR", "au": "P_AU", "va": "P_VA"}
    metrics = {scores[t]: 0.5 for t in config.tasks}
    if len(config.tasks) > 1:
        metrics["P_MTL"] = 0.5 * len(config.tasks)
    metrics.update(tasks=config.tasks, dataset={"name": "synthetic-affect", "synthetic": True}, images_per_second=99.0)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def test_complete_runs_are_skipped_and_an_interrupted_suite_continues(tmp_path):
    suite, out = _write(tmp_path), tmp_path / "out"
    calls = []

    def train(config):
        calls.append(config.run)
        if config.run == "multi-from-expr" and len(calls) == 3:
            raise KeyboardInterrupt  # the suite is interrupted during its last run
        return _fake_complete_run(config)

    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, "DATA", out, train=train, log=lambda m: None)
    assert calls == ["uni-expr", "uni-au", "multi-from-expr"]
    assert is_complete(out / "uni-au" / "seed-0") and not is_complete(out / "multi-from-expr" / "seed-0")
    results = run_suite(suite, "DATA", out, train=train, log=lambda m: None)
    assert calls[3:] == ["multi-from-expr"]
    assert [r["status"] for r in results] == ["skipped", "skipped", "trained"]
    assert (out / "suite.toml").read_text() == SUITE
    # the suite file edited afterwards: complete runs are still skipped, and the log says which options
    # they were trained with (it used to say only "complete, skipped")
    lines: list[str] = []
    edited = _write(tmp_path, SUITE.replace('name = "uni-au"', 'name = "uni-au"\naugment = "strong"'))
    results = run_suite(edited, "DATA", out, train=train, log=lines.append)
    assert [r["status"] for r in results] == ["skipped"] * 3 and calls[4:] == []
    assert lines[0] == "[1/3] uni-expr/seed-0: complete, skipped"
    assert lines[1] == ("[2/3] uni-au/seed-0: complete, skipped (WARNING: trained with other options than the "
                        "suite now gives: augment 'light' -> 'strong'; delete the run folder to train it again)")
    # a record made before an option existed lacks its key: the log names the value it computed with
    config = json.loads((out / "uni-expr" / "seed-0" / "config.json").read_text())
    del config["va_bound"]
    (out / "uni-expr" / "seed-0" / "config.json").write_text(json.dumps(config))
    lines.clear()
    run_suite(edited, "DATA", out, train=train, log=lines.append)
    assert lines[0] == ("[1/3] uni-expr/seed-0: complete, skipped (WARNING: trained with other options than the "
                        "suite now gives: va_bound 'tanh' -> 'clamp'; delete the run folder to train it again)")


def test_only_and_missing_init_run(tmp_path):
    suite, out = _write(tmp_path), tmp_path / "out"
    calls: list[str] = []

    def train(config):
        calls.append(config.run)
        return _fake_complete_run(config)

    with pytest.raises(ConfigError, match="starts from run 'uni-expr/seed-0', which is not complete"):
        run_suite(suite, "DATA", out, only=["multi-from-expr"], train=train, log=lambda m: None)
    with pytest.raises(ConfigError, match="unknown run"):
        run_suite(suite, "DATA", out, only=["nope"], train=train, log=lambda m: None)
    results = run_suite(suite, "DATA", out, only=["uni-au"], train=train, log=lambda m: None)
    assert calls == ["uni-au"] and [r["status"] for r in results] == ["not selected", "trained", "not selected"]


def test_suite_table_lists_runs_and_marks_synthetic_figures(tmp_path):
    suite, out = _write(tmp_path), tmp_path / "out"
    run_suite(suite, "DATA", out, train=_fake_complete_run, log=lambda m: None)
    table = suite_table(out)
    lines = table.splitlines()
    assert lines[0].startswith("| run | seed | setting |") and len([ln for ln in lines if ln.startswith("| uni")]) == 2
    row = next(ln for ln in lines if ln.startswith("| multi-from-expr"))
    assert "multi-task" in row and "uni-expr" in row and "1.500" in row
    assert "Synthetic-benchmark figures" in table


@pytest.mark.parametrize("name", ["quick.toml", "study.toml"])
def test_shipped_suites_load(tmp_path, name):
    runs = load_suite(REPO / "suites" / name, "DATA", tmp_path / "out")
    tasks = {tuple(r.config.tasks) for r in runs}
    assert {("expr",), ("au",), ("va",), ("expr", "au", "va")} <= tasks
    assert any(r.init_from_run for r in runs)                       # multi-task from another run's backbone
    assert any(r.config.losses["expr"] != "ce" for r in runs if "expr" in r.config.tasks)
    # at least 3 seeds for the core comparison, one step budget, development split on
    for core in ("uni-expr", "uni-au", "uni-va", "multi"):
        assert len({r.seed for r in runs if r.name == core}) >= 3
    # budgets in steps (matched budgets: test_shipped_suites_answer_every_factor_with_matched_pairs)
    assert all(r.config.steps is not None for r in runs)
    assert all(r.config.dev_fraction > 0 for r in runs)


def _planned_study(name: str, tmp_path) -> list:
    """The configurations a shipped suite will give the study, from its resolved options alone (no
    training): each run as the record training writes, with its total budget and init run."""
    from affectmodel import study
    from affectmodel.records import RunRecord
    from affectmodel.training.config import config_id
    from affectmodel.training.identity import trunk_facts

    runs = load_suite(REPO / "suites" / name, "DATA", tmp_path / "out")
    by_key = {(r.name, r.seed): r for r in runs}
    records: dict[tuple[str, int], RunRecord] = {}

    def own_steps(r) -> int:
        return 0 if r.config.temporal == "smooth" else r.config.steps or 0  # smoothing trains nothing

    def budget(r) -> int:
        return own_steps(r) + (budget(by_key[(r.init_from_run, r.seed)]) if r.init_from_run else 0)

    for r in runs:  # a suite lists a run after the run it starts from
        dataset = {"name": Path(r.config.data).name, "synthetic": True, "split": "validation"}
        init = by_key[(r.init_from_run, r.seed)] if r.init_from_run else None
        config = {**r.config.to_dict(), "suite": name, "run": r.name, "dataset": dataset,
                  "config_id": config_id(r.config, config_id(init.config) if init else None),
                  "init_run": r.init_from_run}
        if r.config.temporal != "none":  # as training.temporal writes it
            trunk = records[(r.init_from_run, r.seed)]
            config["trunk"] = trunk_facts(trunk.config, trunk.metrics)
        metrics = {"tasks": r.config.tasks, "dataset": dataset, "budget_steps": budget(r), "steps": own_steps(r),
                   "init_run": r.init_from_run}
        records[(r.name, r.seed)] = RunRecord(tmp_path / r.name / f"seed-{r.seed}", config, metrics)
    return study.group_configurations(study.index_runs(list(records.values())))


def test_shipped_suites_answer_every_factor_with_matched_pairs(tmp_path):
    """The quick suite answers each factor once with configurations that differ in exactly that
    option, holds the interactions it promises, and leaves no configuration uncompared but the
    pre-training run (another data set)."""
    from affectmodel import study

    configs = _planned_study("quick.toml", tmp_path)
    factors = {(f, a.name, b.name) for f, a, b in study.factor_pairs(configs)}
    assert {f for f, _, _ in factors} >= {"augment", "losses", "weighting", "init", "budget_steps"}
    assert ("init", "uni-expr-long", "uni-expr-from-pretrain") in factors
    assert ("augment", "multi", "multi-aug-strong") in factors
    assert ("weighting", "multi", "multi-uncertainty") in factors
    found = {(i.factor, i.task) for i in study.interactions(configs, resamples=2)}
    assert found == {("augment", "expr"), ("losses", "expr"), ("losses", "au")}
    multi = next(c for c in configs if c.name == "multi")
    assert {t: u.name for t, (u, _) in study.find_matches(multi, configs).items() if u} == {
        "expr": "uni-expr", "au": "uni-au", "va": "uni-va"}
    comparisons = study.matched_comparisons(configs, resamples=2)
    assert set(study.not_compared(configs, comparisons, [])) - {c.key for f, a, b in study.factor_pairs(configs)
                                                                  for c in (a, b)} == {"quick.toml/pretrain-expr"}
    # the Aff-Wild2 study: the same factors, with ImageNet against random initialisation
    big = {(f, a.name, b.name) for f, a, b in study.factor_pairs(_planned_study("study.toml", tmp_path / "s"))}
    assert {f for f, _, _ in big} >= {"augment", "losses", "weighting", "init"}
    assert ("init", "multi", "multi-random") in big
    assert {("init", "multi-long", f"multi-from-uni-{t}") for t in ("expr", "au", "va")} <= big


@pytest.mark.parametrize("name", ["temporal.toml", "study.toml"])
def test_shipped_suites_compare_temporal_models_with_smoothing_on_the_same_trunk(tmp_path, name):
    runs = load_suite(REPO / "suites" / name, "DATA", tmp_path / "out")
    by_name = {r.name: r for r in runs}
    temporal = [r for r in runs if r.config.temporal != "none"]
    kinds = {(r.config.temporal, r.config.causal) for r in temporal}
    assert {("smooth", True), ("gru", False), ("gru", True), ("conv", False)} <= kinds
    for r in temporal:  # on a per-frame run of the same tasks, same seed
        base = by_name[r.init_from_run]
        assert base.config.temporal == "none" and base.config.tasks == r.config.tasks
    for tasks in (["expr"], ["au"], ["va"], ["expr", "au", "va"]):
        assert {(r.config.temporal, r.config.causal) for r in temporal if r.config.tasks == tasks} == kinds
        assert len({r.seed for r in temporal if r.config.tasks == tasks}) >= 3


@pytest.mark.parametrize("name", ["temporal.toml", "study.toml"])
def test_shipped_suites_give_the_study_its_temporal_comparisons(tmp_path, name):
    """Planned from the suite's options (no training): for every task set, each temporal module is a
    factor comparison with smoothing on the same trunk, smoothing one with the per-frame model, and a
    multi-task temporal configuration is matched with the uni-task ones of the same temporal level."""
    from affectmodel import study

    configs = _planned_study(name, tmp_path)
    pairs = {(f, a.name, b.name) for f, a, b in study.factor_pairs(configs) if f == "temporal"}
    runs = load_suite(REPO / "suites" / name, "DATA", tmp_path / "out")
    expected = set()
    for r in {r.name: r for r in runs if r.config.temporal != "none"}.values():
        smooth = next(s.name for s in runs if s.config.temporal == "smooth" and s.init_from_run == r.init_from_run)
        expected.add(("temporal", r.init_from_run if r.config.temporal == "smooth" else smooth, r.name))
    assert pairs == expected and len(pairs) == 16
    levels = {study.factor_level(c, "temporal") for c in configs}
    assert {"none", "smooth w5"} < levels and any(level.startswith("gru w16 causal (") for level in levels)
    for multi in [c for c in configs if c.multi_task and study.factor_level(c, "temporal") != "none"]:
        matched = study.find_matches(multi, configs)
        assert all(u is not None and study.factor_level(u, "temporal") == study.factor_level(multi, "temporal")
                   for u, _ in matched.values()), multi.name
