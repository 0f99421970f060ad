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
    fixed wall time, docs/benchmarks/2026-11_training_experiments.md); a `model` mapping replaces it as a whole."""
    model = TrainConfig(train_file="x.extxyz").model_config()
    medium = ModelConfig.preset("medium")
    assert (model.num_layers, model.num_features, model.l_max, model.parity, model.radial_hidden) == (
        medium.num_layers, medium.num_features, medium.l_max, medium.parity, medium.radial_hidden) == (3, 32, 3, False, 64)
    assert model.dtype == "float32"
    assert TrainConfig(train_file="x.extxyz", model={"preset": "small"}).model_config().dtype == "float64"


def test_values_as_people_write_them_in_yaml(tmp_path):
    """YAML reads 1e-3 and 1_000.5 as text and on/off as booleans: each is read by its option's type."""
    from mlff.train import load_config

    path = tmp_path / "c.yaml"
    path.write_text("train_file: x.extxyz\nlearning_rate: 1e-3\nmax_epochs: 1_000\ntensorboard: off\n"
                    "compile: off\nenergy_weight: 2\nspecies: Cu\nmodel: {preset: small, r_cut: 4e0, "
                    "num_features: '16', parity: no}\n")
    config = load_config(path)
    assert (config.learning_rate, config.max_epochs, config.tensorboard, config.compile) == (1e-3, 1000, "off", False)
    assert config.energy_weight == 2.0 and isinstance(config.energy_weight, float) and config.species == ["Cu"]
    model = config.model_config()
    assert (model.r_cut, model.num_features, model.parity) == (4.0, 16, False)


@pytest.mark.parametrize("line, message", [
    ("learning_rate: fast", "learning_rate: 'fast' is not a number"),
    ("max_epochs: 2.5", "max_epochs: 2.5 is not a whole number"),
    ("progress: maybe", "progress: 'maybe' is not a boolean"),
    ("model: {r_cut: far}", "model.r_cut: 'far' is not a number"),
    ("model: {num_layers: 2.5}", "model.num_layers: 2.5 is not a whole number"),
    ("E0: {Cu: low}", "E0: .* is not a mapping"),
])
def test_a_wrong_type_is_one_line_naming_the_option(tmp_path, line, message):
    from mlff.train import load_config

    path = tmp_path / "c.yaml"
    path.write_text(f"train_file: x.extxyz\n{line}\n")
    with pytest.raises(ValueError, match=message) as error:
        load_config(path)
    assert "\n" not in str(error.value)


def test_data_workers_need_frames_read_when_drawn():
    with pytest.raises(ValueError, match="set preload: false"):
        TrainConfig(train_file="a.db", data_workers=2)
    with pytest.raises(ValueError, match="data_workers must be >= 0"):
        TrainConfig(train_file="a.db", preload=False, data_workers=-1)
    assert TrainConfig(train_file="a.db", preload=False, data_workers=2).loader_workers() == 2
    assert TrainConfig(train_file="a.db", preload=False, data_workers=0).loader_workers() == 0
    assert TrainConfig(train_file="a.db").loader_workers() in (0, 1)  # by the machine's cores
