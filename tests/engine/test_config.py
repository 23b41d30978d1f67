import json
from types import SimpleNamespace

import pytest

from imgcls.cli import build_parser
from imgcls.engine.config import Config, field_specs
from imgcls.errors import ConfigError


def test_json_round_trip_and_yaml(tmp_path):
    cfg = Config()
    cfg.model.model, cfg.data.batch_size, cfg.optim.lr, cfg.data.scale = "resnet34", 16, 0.05, [0.3, 1.0]
    cfg.save(tmp_path)
    assert Config.load(tmp_path / "config.json") == cfg
    pytest.importorskip("yaml")
    assert Config.load(tmp_path / "config.yaml") == cfg


def test_unknown_settings_are_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"optim": {"learning_rate": 0.1}}))
    with pytest.raises(ConfigError, match="learning_rate"):
        Config.load(path)
    with pytest.raises(ConfigError, match="unknown section"):
        Config.from_dict({"optimiser": {}})
    with pytest.raises(ConfigError, match="no such config"):
        Config.load(tmp_path / "missing.json")


def test_every_field_has_exactly_one_flag():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    dests = [a.dest for a in train._actions if a.dest not in ("help", "config")]
    assert sorted(dests) == sorted(f.name for _, f, _ in field_specs())


def test_flags_override_a_replayed_config(tmp_path, monkeypatch):
    import imgcls.engine
    from imgcls.cli import main

    runs = []

    def train(config: Config, given: set[str]) -> SimpleNamespace:  # what `imgcls train` hands the engine
        runs.append((config, given))
        return SimpleNamespace(interrupted=False)

    monkeypatch.setattr(imgcls.engine, "train", train)
    cfg = Config()
    cfg.data.batch_size, cfg.train.epochs, cfg.model.model = 12, 7, "alexnet"
    cfg.save(tmp_path)
    assert main(["train", "--config", str(tmp_path / "config.json"), "--epochs", "3", "--no-channels-last",
                 "--scale", "0.5", "1", "--model-kwargs", '{"dropout": 0.1}']) == 0
    [(replay, given)] = runs
    assert (replay.train.epochs, replay.data.batch_size, replay.model.model) == (3, 12, "alexnet")
    assert replay.model.channels_last is False and replay.data.scale == [0.5, 1.0]
    assert replay.model.model_kwargs == {"dropout": 0.1}
    # a --resume reconciles what the file and the flags changed from the defaults, nothing else
    assert given == {"batch_size", "epochs", "model", "channels_last", "scale", "model_kwargs"}
