"""TrainConfig: defaults, TOML/YAML files, CLI precedence and clear errors."""
import pytest

from affectmodel.training.config import ConfigError, TrainConfig, config_differences, load_config


def test_defaults_are_valid_and_multi_task():
    c = TrainConfig()
    assert c.tasks == ["expr", "au", "va"] and c.multi_task
    assert c.loss_config().expr == "ce" and c.loss_config().va == "ccc"


def test_toml_file_then_cli_overrides(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('tasks = "AU"\nepochs = 4\nloss-au = "weighted_bce"\nlr = 0.01\n[task_weights]\nau = 2\n')
    c = load_config(f, {"lr": 0.5, "loss_au": "focal"})
    assert c.tasks == ["au"] and not c.multi_task
    assert c.epochs == 4 and c.lr == 0.5                  # CLI wins over the file
    assert c.losses["au"] == "focal" and c.task_weights["au"] == 2.0
    assert c.to_dict()["losses"] == {"au": "focal"}        # only trained tasks are recorded


def test_yaml_file(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("tasks: [expr, va]\nlosses: {expr: focal, va: mse}\naugment: strong\n")
    c = load_config(f)
    assert c.tasks == ["expr", "va"] and c.losses == {"expr": "focal", "au": "bce", "va": "mse"}
    assert c.augment == "strong"


@pytest.mark.parametrize("text, message", [
    ("epochz = 3\n", "did you mean 'epochs'"),
    ("augment = 'heavy'\n", "augment='heavy' is not one of"),
    ("loss_expr = 'hinge'\n", "unknown expr loss"),
    ("epochs = 'many'\n", "epochs has an invalid value"),
    ("tasks = 'pose'\n", "unknown task"),
    ("epochs = 0\n", "epochs must be at least 1"),
])
def test_bad_files_name_the_file_and_the_option(tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert message in str(e.value) and "bad.toml" in str(e.value)


def test_invalid_toml_and_missing_file(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text("epochs = [\n")
    with pytest.raises(ConfigError, match="broken.toml: invalid TOML"):
        load_config(f)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "absent.toml")


def test_config_differences_ignore_machine_options():
    saved = TrainConfig(tasks=["expr"], lr=0.1).to_dict()
    assert config_differences(saved, TrainConfig(tasks=["expr"], lr=0.1, workers=4, device="cpu")) == []
    assert config_differences(saved, TrainConfig(tasks=["expr"], lr=0.2)) == ["lr"]
