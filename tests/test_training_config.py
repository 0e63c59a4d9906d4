"""TrainConfig: defaults, TOML/YAML files, CLI precedence and clear errors."""
import math

import pytest

from affectmodel.training.config import ConfigError, TrainConfig, config_differences, load_config


def test_defaults_are_valid_and_multi_task():
    c = TrainConfig()
    assert c.tasks == ["expr", "au", "va"] and c.multi_task
    assert c.loss_config().expr == "ce" and c.loss_config().va == "ccc+mse"


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


def test_options_added_later_keep_the_ids_and_resume_checks_of_older_runs():
    from affectmodel.training.config import config_id

    # warmup 0 and tanh-bounded VA outputs are what every run before these options computed: such a
    # configuration keeps the id it had (the record lacked the keys), the new defaults get new ids
    legacy = TrainConfig(tasks=["va"], warmup=0.0, va_bound="tanh", losses={"va": "ccc"})
    old_record = {k: v for k, v in legacy.to_dict().items() if k not in ("warmup", "va_bound")}
    assert config_id(legacy) == config_id(TrainConfig(**{**old_record, "warmup": 0.0, "va_bound": "tanh"}))
    assert config_id(legacy) != config_id(legacy.replace(warmup=0.1))
    assert config_differences(old_record, legacy) == []
    assert config_differences(old_record, TrainConfig(tasks=["va"], losses={"va": "ccc"})) == ["va_bound", "warmup"]
    # and a resume names the values the old record computed with (it lacks the keys)
    from affectmodel.training.config import saved_value
    assert saved_value(old_record, "va_bound") == "tanh" and saved_value(old_record, "warmup") == 0.0
    assert saved_value(old_record, "lr") == legacy.lr and saved_value(old_record, "no_such_option") is None


def test_warmup_scales_the_schedule_linearly_over_its_share_of_the_budget():
    import torch

    from affectmodel.training.optim import build_optimizer, build_scheduler

    def rates(**options):
        config = TrainConfig(lr=1.0, **options)
        optimizer = build_optimizer(torch.nn.Linear(2, 2), config)
        scheduler = build_scheduler(optimizer, config, steps_per_epoch=10, total_steps=40)
        out = []
        for _ in range(40):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    cosine = rates(warmup=0.1)  # 4 warm-up steps of the 40
    assert cosine[:4] == pytest.approx([0.25 * 0.5 * (1 + math.cos(math.pi * s / 40)) * (s + 1) for s in range(4)])
    assert cosine[10] == pytest.approx(0.5 * (1 + math.cos(math.pi * 10 / 40)))
    assert rates(warmup=0.0) == pytest.approx([0.5 * (1 + math.cos(math.pi * s / 40)) for s in range(40)])
    assert rates(warmup=0.1, schedule="none")[:6] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    stepped = rates(warmup=0.1, schedule="step", step_epochs=1, step_gamma=0.1)
    assert stepped[3] == pytest.approx(1.0) and stepped[10] == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="warmup must be in"):
        TrainConfig(warmup=1.0)


# ------------------------------------------------------------------ one schema: fields -> CLI, files, records

def test_every_field_declares_its_help_and_group_and_reaches_the_command_line():
    import argparse
    import dataclasses

    from affectmodel.training.cli import GROUPS, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    dests = {a.dest for a in parser._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"] and f.metadata["group"] in GROUPS, f.name
        assert f.name in dests or f.name == "losses", f.name  # losses: --loss-expr/--loss-au/--loss-va
    assert {"loss_expr", "loss_au", "loss_va"} <= dests
    assert set(TrainConfig().to_dict()) == {f.name for f in dataclasses.fields(TrainConfig)}


def test_help_shows_defaults_and_choices_from_the_owning_modules(capsys):
    from affectmodel.data.transforms import AUGMENT_PRESETS
    from affectmodel.tasks import TASK_WEIGHTINGS
    from affectmodel.training.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--augment {" + ",".join(AUGMENT_PRESETS) + "}" in text
    assert "--weighting {" + ",".join(TASK_WEIGHTINGS) + "}" in text
    assert "input size in pixels (default 112)" in text and "peak learning rate (default 0.001)" in text
    assert "(default no cap)" in text and "(default epochs decide)" in text
    assert "--no-amp" in text and "--data ROOT" in text


def test_command_line_values_are_typed_by_the_field(tmp_path):
    import argparse

    from affectmodel.training.cli import _overrides, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--epochs", "3", "--lr", "0.5", "--no-amp", "--sampler", "balanced",
                              "--task-weights", "au=2", "--loss-va", "mse", "--tasks", "au,va"])
    c = load_config(None, _overrides(args))
    assert (c.epochs, c.lr, c.amp, c.sampler) == (3, 0.5, False, "balanced")
    assert c.task_weights["au"] == 2.0 and c.losses["va"] == "mse" and c.tasks == ["au", "va"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--epochs", "three"])


def test_unknown_keys_name_the_nearest_option_including_aliases():
    with pytest.raises(ConfigError, match="unknown option 'samplr' \\(did you mean 'sampler'\\?\\)"):
        load_config(None, {"samplr": "balanced"})
    with pytest.raises(ConfigError, match="did you mean 'loss_expr'"):
        load_config(None, {"loss-exp": "focal"})
