"""Task definitions: label spaces, explicit mappings, task specs."""
import pytest

from affectmodel import tasks
from affectmodel.tasks import (
    ABAW7,
    ABAW8,
    AFFECTNET8,
    AU_NAMES,
    AU_TASK,
    FER7,
    VA_TASK,
    expression_task,
    get_label_space,
    get_task,
    headline_metric,
    label_mapping,
    parse_tasks,
    task_specs,
)


def test_abaw8_order_matches_aff_wild2():
    assert ABAW8.labels == ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
    assert ABAW7.labels == ABAW8.labels[:7]
    assert len(AFFECTNET8) == 8 and len(FER7) == 7
    assert AFFECTNET8.labels[0] == "Neutral" and AFFECTNET8.labels[-1] == "Contempt"
    assert FER7.labels[0] == "Angry" and FER7.labels[-1] == "Neutral"


def test_au_order():
    assert AU_NAMES == ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
    assert set(tasks.AU_DESCRIPTIONS) == set(AU_NAMES)


@pytest.mark.parametrize("space", list(tasks.LABEL_SPACES.values()))
def test_label_spaces_are_consistent(space):
    assert len(space.labels) == len(space.concepts) == len(set(space.labels)) == len(set(space.concepts))
    assert get_label_space(space.name) is space
    assert get_label_space(space.name.upper()) is space
    assert get_label_space(space) is space


def test_unknown_label_space():
    with pytest.raises(ValueError, match="unknown expression label space"):
        get_label_space("emotions9")


@pytest.mark.parametrize("source", list(tasks.LABEL_SPACES.values()))
@pytest.mark.parametrize("target", list(tasks.LABEL_SPACES.values()))
def test_label_mapping_is_by_concept(source, target):
    mapping = label_mapping(source, target)
    assert sorted(mapping) == list(range(len(source)))
    for i, j in mapping.items():
        if source.concepts[i] in target.concepts:
            assert target.concepts[j] == source.concepts[i]
        else:
            assert j == -1  # no silent folding into another class


def test_label_mapping_examples():
    assert label_mapping(AFFECTNET8, ABAW8)[AFFECTNET8.index("Happy")] == ABAW8.index("Happiness")
    assert label_mapping(AFFECTNET8, ABAW8)[AFFECTNET8.index("Contempt")] == -1
    assert label_mapping(FER7, ABAW8)[FER7.index("Angry")] == ABAW8.index("Anger")
    assert label_mapping(ABAW8, ABAW7)[ABAW8.index("Other")] == -1
    assert label_mapping(ABAW7, ABAW8) == {i: i for i in range(7)}


def test_task_specs():
    expr = get_task("expr")
    assert expr.head_size == 8 and expr.invalid_code == -1 and expr.metric == "P_EXPR"
    assert expr.kind == "multiclass" and expr.default_loss == "ce"
    assert expr.annotation_header == ABAW8.labels
    assert expression_task("abaw7").head_size == 7
    assert get_task("EXPR", "fer7").labels == FER7.labels
    assert AU_TASK.head_size == 12 and AU_TASK.invalid_code == -1 and AU_TASK.metric == "P_AU"
    assert AU_TASK.default_loss == "bce" and AU_TASK.kind == "multilabel"
    assert VA_TASK.head_size == 2 and VA_TASK.invalid_code == -5 and VA_TASK.metric == "P_VA"
    assert VA_TASK.default_loss == "ccc+mse" and VA_TASK.annotation_header == ("valence", "arousal")
    assert get_task("Au") is AU_TASK and get_task("VA") is VA_TASK
    with pytest.raises(ValueError, match="unknown task"):
        get_task("pose")


def test_parse_tasks_and_headline():
    assert parse_tasks("va, EXPR") == ("expr", "va")
    assert parse_tasks(["AU", "expr"]) == ("expr", "au")
    # a task named twice was read as one task, without a word
    for twice, named in (("expr,expr", "expr"), (["AU", "au", "expr"], "au"), ("va,EXPR,va,expr", "expr and va")):
        with pytest.raises(ValueError, match=f"task {named} named more than once in"):
            parse_tasks(twice)
    with pytest.raises(ValueError):
        parse_tasks(" , ")
    with pytest.raises(ValueError):
        parse_tasks("expr,gaze")
    assert list(task_specs("au,va")) == ["au", "va"]
    assert headline_metric(["au"]) == "P_AU"
    assert headline_metric("expr") == "P_EXPR"
    assert headline_metric("expr,au,va") == "P_MTL"
