"""TrainConfig: the command line builds it, model.json records it, and it reads back the same."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from hematovision_core import train
from hematovision_core.train import TrainConfig

# model.json's "training" keys, in order, as training wrote them before TrainConfig: a contract.
RECORDED_KEYS = ["name", "augment", "crop", "views", "views_per_epoch", "head_lr", "head_epochs",
                 "epochs", "patience", "lr", "batch_size", "label_smoothing", "dropout",
                 "fine_tune_from", "init_from", "tta", "split", "select", "seed", "weights",
                 "input_size", "max_per_class", "ood_val_copies", "skip_ood"]
SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "models"


def test_the_command_line_defaults_are_train_configs():
    config = train.parse_config(["--data", "data/pbc", "--out", "models/x"])
    assert config == TrainConfig(data=Path("data/pbc"), out=Path("models/x"))
    assert (config.views, config.head_lr, config.epochs, config.lr, config.split,
            config.select, config.seed, config.weights) == \
        (4, 1e-3, 12, 3e-4, (0.7, 0.1, 0.2), "best", 42, "imagenet")
    options = {action.dest for action in train.build_parser()._actions} - {"help"}
    assert options == {item.name for item in dataclasses.fields(TrainConfig)}


def test_train_config_round_trip_command_line_to_model_json_and_back():
    argv = ["--data", "data/blood-cells/TRAIN", "--out", "models/smear", "--crop", "white-cell",
            "--augment", "smear", "--views", "16", "--views-per-epoch", "8", "--head-lr", "3e-3",
            "--label-smoothing", "0.2", "--init-from", "models/pbc-8class", "--tta", "dihedral",
            "--select", "last", "--split", "0.8,0.1,0.1", "--max-per-class", "5",
            "--ood-val-copies", "8", "--cache-dir", "var/cache/x"]
    config = train.parse_config(argv)
    assert config == TrainConfig(
        data=Path("data/blood-cells/TRAIN"), out=Path("models/smear"), crop="white-cell",
        augment="smear", views=16, views_per_epoch=8, head_lr=3e-3, label_smoothing=0.2,
        init_from=Path("models/pbc-8class"), tta="dihedral", select="last",
        split=(0.8, 0.1, 0.1), max_per_class=5, ood_val_copies=8, cache_dir=Path("var/cache/x"))
    record = json.loads(json.dumps(config.training_record()))  # as model.json holds it
    assert list(record) == RECORDED_KEYS  # the machine's paths (data, out, cache) are left out
    assert record["split"] == "0.8,0.1,0.1" and record["init_from"] == "models/pbc-8class"
    assert TrainConfig.from_record(record, data=config.data, out=config.out,
                                   cache_dir=config.cache_dir) == config


def test_defaults_given_by_a_caller_yield_to_the_command_line():
    config = train.parse_config(["--data", "d", "--out", "o"], select="last", skip_ood=True)
    assert (config.select, config.skip_ood) == ("last", True)
    assert train.parse_config(["--data", "d", "--out", "o", "--select", "best"],
                              select="last").select == "best"


@pytest.mark.parametrize("change", [dict(augment="blur"), dict(select="first"),
                                    dict(tta="twice"), dict(split=(0.5, 0.5))])
def test_a_config_refuses_settings_training_does_not_know(change):
    with pytest.raises(ValueError):
        dataclasses.replace(TrainConfig(data="d", out="o"), **change)


def test_a_bad_split_on_the_command_line_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        train.parse_config(["--data", "d", "--out", "o", "--split", "0.7,0.3"])
    assert "three fractions" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["pbc-8class", "blood-cells-4class"])
def test_train_config_reads_the_shipped_models_records_shipped_model(model):
    path = SHIPPED_MODELS / model / "model.json"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    training = json.loads(path.read_text())["training"]
    config = TrainConfig.from_record(training, data=Path("data"), out=Path("models") / model)
    recipe = {key: value for key, value in training.items()
              if key not in ("feature_cut_layer", "minutes")}
    # What the record holds comes back; what an older record lacks takes today's default.
    assert {key: config.training_record()[key] for key in recipe} == recipe
