"""`mlff train CONFIG --seed N --output-dir D --max-epochs E`: the flags override the config (one
config, a committee of seeds) and the rest of the config is kept."""

from pathlib import Path
from types import SimpleNamespace

import mlff.train
from mlff.cli import train as cli
from mlff.train import load_config

CONFIG = str(Path(__file__).resolve().parents[2] / "examples" / "train" / "cu.yaml")


def _run(monkeypatch, argv):
    seen = {}

    def fake_train(config):
        seen["config"] = config
        return SimpleNamespace(model_path="model.pt", stopped_by=None)

    monkeypatch.setattr(mlff.train, "train", fake_train)
    assert cli.main(argv) == 0
    return seen["config"]


def test_seed_and_output_dir_override_the_config(monkeypatch, tmp_path):
    base = load_config(CONFIG)
    config = _run(monkeypatch, [CONFIG, "--seed", "3", "--output-dir", str(tmp_path / "seed3"), "--max-epochs", "7"])
    assert (config.seed, config.output_dir, config.max_epochs) == (3, str(tmp_path / "seed3"), 7)
    assert base.seed != 3 and config.learning_rate == base.learning_rate and config.model == base.model


def test_without_flags_the_config_stands(monkeypatch):
    base = load_config(CONFIG)
    config = _run(monkeypatch, [CONFIG])
    assert (config.seed, config.output_dir, config.max_epochs) == (base.seed, base.output_dir, base.max_epochs)
