import pytest

from mlff.model import ModelConfig
from mlff.train import TrainConfig, load_config


def test_unknown_key_names_the_closest_option(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train_file: x.extxyz\nmax_epoch: 3\n")
    with pytest.raises(ValueError, match=r"unknown training option 'max_epoch' \(did you mean 'max_epochs'\?\)"):
        load_config(path)


def test_unknown_model_option(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train_file: x.extxyz\nmodel: {preset: small, l_maxx: 2}\n")
    with pytest.raises(ValueError, match=r"unknown model option 'l_maxx' \(did you mean 'l_max'\?\)"):
        load_config(path)


def test_paths_relative_to_the_yaml_and_preset_overrides(tmp_path):
    path = tmp_path / "sub" / "c.yaml"
    path.parent.mkdir()
    path.write_text("train_file: ../data/train.extxyz\noutput_dir: run\nmodel: {preset: large, l_max: 1}\n")
    config = load_config(path)
    assert config.train_file == str(tmp_path / "data" / "train.extxyz")
    assert config.output_dir == str(tmp_path / "sub" / "run")
    model = config.model_config(avg_num_neighbors=12.0)
    assert (model.num_layers, model.l_max, model.avg_num_neighbors) == (4, 1, 12.0)


def test_bad_choice_and_missing_train_file():
    with pytest.raises(ValueError, match="optimizer: 'sgd' is not one of"):
        TrainConfig(train_file="x", optimizer="sgd")
    with pytest.raises(ValueError, match="train_file is required"):
        TrainConfig()


def test_default_model_is_the_medium_preset_in_float32():
    """Without `model`, training uses the medium preset in float32 (the best of the presets at a
    fixed wall time, docs/training.md); a `model` mapping replaces it as a whole."""
    model = TrainConfig(train_file="x.extxyz").model_config()
    medium = ModelConfig.preset("medium")
    assert (model.num_layers, model.num_features, model.l_max, model.radial_hidden) == (
        medium.num_layers, medium.num_features, medium.l_max, medium.radial_hidden)
    assert model.dtype == "float32"
    assert TrainConfig(train_file="x.extxyz", model={"preset": "small"}).model_config().dtype == "float64"
