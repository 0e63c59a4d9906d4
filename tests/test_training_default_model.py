"""The default model (affectmodel/training/default_model.py): its recipe is suites/demo.toml, a
finished model is reused, a build leaves one complete run folder and no temporary files."""
import pytest
from hub_fixtures import make_run

from affectmodel.hub.loading import model_info
from affectmodel.training import default_model, load_suite
from affectmodel.training.default_model import DEFAULT_DIR_ENV, DEFAULT_SUITE, SUITE_RUN


def test_default_model_is_reused_once_built(monkeypatch, tmp_path):
    run = make_run(tmp_path)
    monkeypatch.setenv(DEFAULT_DIR_ENV, str(run))

    def no_build(*args, **kwargs):
        raise AssertionError("a complete default model must not be rebuilt")

    monkeypatch.setattr(default_model, "build_default_model", no_build)
    assert default_model.default_model_dir() == run
    assert default_model.ensure_default_model() == run


def test_a_default_model_from_an_older_recipe_is_built_again(monkeypatch, tmp_path):
    """A model whose travelling suite.toml differs from suites/demo.toml in content is rebuilt (and
    the new build replaces it); a comment-only difference, or a hand-placed folder without the
    recipe, is reused."""
    run = make_run(tmp_path)
    monkeypatch.setenv(DEFAULT_DIR_ENV, str(run))
    built = []

    def fake_build(folder, suite, overrides=None, data=None):
        built.append(folder)
        return folder

    monkeypatch.setattr(default_model, "build_default_model", fake_build)
    assert default_model.ensure_default_model() == run and built == []  # no recipe copy: reused
    (run / "suite.toml").write_text("# built long ago\n" + DEFAULT_SUITE.read_text())
    assert not default_model.recipe_changed(run)
    assert default_model.ensure_default_model() == run and built == []  # comments aside: the same recipe
    (run / "suite.toml").write_text(DEFAULT_SUITE.read_text().replace("[suite]", "[suite]\nold_recipe = true", 1))
    assert default_model.recipe_changed(run) and default_model.needs_build(run)
    assert default_model.ensure_default_model() == run and built == [run]


def test_default_model_recipe_is_the_demo_suite():
    runs = load_suite(DEFAULT_SUITE, "DATA", "OUT")
    assert [r.name for r in runs] == [SUITE_RUN]
    assert runs[0].config.tasks == ["expr", "au", "va"] and runs[0].config.device == "cpu"
    assert set(default_model.read_demo_suite()) == {"videos", "frames", "size", "seed"}


def test_the_documented_recipe_is_the_demo_suite():
    # docs/TRAINING.md states the recipe and the figures it reached; the recipe's own header gives
    # the commands a build amounts to. Both must describe what the demo builds.
    data = default_model.read_demo_suite()
    config = load_suite(DEFAULT_SUITE, "DATA", "OUT")[0].config
    synth = (f"synth --out DATA --videos {data['videos']} --frames {data['frames']} --size {data['size']} "
             f"--seed {data['seed']}")
    training = (f"{config.max_steps} steps of batch {config.batch_size} at {config.image_size} px, "
                f"learning rate {config.lr:g}, augmentation `{config.augment}`")
    docs = (DEFAULT_SUITE.parents[1] / "docs" / "TRAINING.md").read_text()
    assert synth in DEFAULT_SUITE.read_text() and synth in docs
    assert training in docs


def test_a_missing_or_malformed_recipe_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.toml: the default model's recipe is missing"):
        default_model.read_demo_suite(tmp_path / "nowhere.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[suite.data]\nvideos = 3\n")
    with pytest.raises(ValueError, match=r"bad\.toml: \[suite\.data\] must set videos, frames, size and seed"):
        default_model.read_demo_suite(bad)


@pytest.mark.slow
def test_default_model_build_runs_the_demo_suite(tmp_path):
    # 2 videos (1 for training): no development split to hold out, so dev_fraction 0, explicitly
    overrides = {"image_size": 32, "batch_size": 8, "max_steps": 2, "epochs": 1, "limit_val": 8, "dev_fraction": 0.0}
    folder = default_model.ensure_default_model(tmp_path / "default-model", overrides=overrides,
                                                data={"videos": 2, "frames": 10, "size": 64})
    assert (folder / "model" / "model.safetensors").is_file()
    assert (folder / "suite.toml").read_text() == DEFAULT_SUITE.read_text()
    info = model_info(str(folder))
    assert info["synthetic"] is True and info["input_size"] == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default-model"]  # no temp folders left
    # built from an older recipe: the next call builds again and the new model takes its place
    (folder / "suite.toml").write_text(DEFAULT_SUITE.read_text().replace("[suite]", "[suite]\nold_recipe = true", 1))
    tiny = {"videos": 2, "frames": 10, "size": 64}
    again = default_model.ensure_default_model(folder, overrides=overrides, data=tiny)
    assert again == folder and not default_model.recipe_changed(folder)
    assert (folder / "model" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default-model"]
