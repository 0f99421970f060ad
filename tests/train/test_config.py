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
        medium.num_layers, medium.num_features, medium.l_max, medium.parity, medium.radial_hidden) == (
        3, [32, 16, 16, 8], 3, False, 64)
    assert str(model.hidden_irreps) == "32x0e+16x1o+16x2e+8x3o"
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


def test_pair_repulsion_radii_data_come_from_the_training_frames(tmp_path, cu_files):
    """``pair_repulsion_radii: data``: the term switches off at the closest pair of the *training*
    frames (rounded down to 1 mÅ) where that is shorter than the covalent sum, and a validation
    frame closer still does not move it; without the option every pair keeps its covalent sum;
    with ``pair_repulsion: none`` nothing is recorded."""
    import math

    from ase.io import read, write

    from mlff.data.readers import Frame
    from mlff.data.stats import closest_pairs
    from mlff.train.prepare import prepare_data

    train, valid = cu_files
    squeezed = read(valid, ":")
    squeezed[0].positions[1] = squeezed[0].positions[0] + [1.2, 0.0, 0.0]  # closer than any training pair
    write(tmp_path / "valid.extxyz", squeezed)
    base = dict(train_file=str(train), valid_file=str(tmp_path / "valid.extxyz"), test_fraction=0.0)
    messages = []
    data = prepare_data(TrainConfig(**base, model={"pair_repulsion_radii": "data"}), None, None, messages.append)
    shortest = closest_pairs([Frame(a, 0.0, None, None, "") for a in read(train, ":")], 3.0)["Cu-Cu"]
    assert 2.0 < shortest < 2.64  # EMT's rattled copper comes closer than the covalent sum
    assert data.model_config.pair_repulsion_radii == {"Cu-Cu": math.floor(shortest * 1000) / 1000}
    assert any(m.startswith("pair repulsion: switched off at Cu-Cu ") for m in messages)
    assert data.summary["statistics"]["pair_repulsion_radii"] == data.model_config.pair_repulsion_radii
    kept = prepare_data(TrainConfig(**base), None, None, messages.append)
    assert kept.model_config.pair_repulsion_radii == {}
    assert messages[-1] == "pair repulsion: switched off at the covalent-radius sum of every pair"
    off = prepare_data(TrainConfig(**base, model={"pair_repulsion": "none", "pair_repulsion_radii": "data"}),
                       None, None, messages.append)
    assert off.model_config.pair_repulsion_radii == {} and "pair_repulsion_radii" not in off.summary["statistics"]


def test_graphs_are_built_at_the_cutoff_the_run_trains_with(cu_files):
    """The training graphs, built once and counted for the average neighbour number, are at the
    model's cutoff; a resumed run whose saved cutoff differs from today's builds them again at the
    saved one (the architecture the run started with)."""
    import torch

    from mlff.data import keys
    from mlff.train.prepare import prepare_data

    def longest_edge(graph):
        i, j = graph[keys.EDGE_INDEX_KEY]
        vectors = graph[keys.POSITIONS_KEY][j] - graph[keys.POSITIONS_KEY][i] + graph[keys.EDGE_SHIFT_KEY]
        return float(torch.linalg.norm(vectors, dim=1).max())

    train, valid = cu_files
    config = TrainConfig(train_file=str(train), valid_file=str(valid), test_fraction=0.0, model={"r_cut": 4.0})
    fresh = prepare_data(config, None, None, lambda message: None)
    edges = sum(int(graph[keys.EDGE_INDEX_KEY].shape[1]) for graph in fresh.train)
    atoms = sum(int(graph[keys.POSITIONS_KEY].shape[0]) for graph in fresh.train)
    assert fresh.model_config.avg_num_neighbors == edges / atoms
    resumed = prepare_data(config, None, {**fresh.model_config.to_dict(), "r_cut": 3.0}, lambda message: None)
    for data, r_cut in ((fresh, 4.0), (resumed, 3.0)):
        assert data.model_config.r_cut == r_cut
        assert r_cut - 0.3 < max(longest_edge(graph) for graph in data.train + data.valid) < r_cut


@pytest.mark.parametrize("name", ["cu.yaml", "water_dipole.yaml"])
def test_example_configs_load(name):
    """The shipped training configs name only known options with valid values."""
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[2] / "examples" / "train" / name)
    assert Path(config.train_file).is_file()
    config.model_config()


def test_channels_per_l_as_written_in_yaml(tmp_path):
    """num_features as one number or one per l; a list of the wrong length or with a zero is
    one line naming the option."""
    path = tmp_path / "c.yaml"
    path.write_text("train_file: x.extxyz\nmodel: {l_max: 3, num_features: [32, 32, 32, 8]}\n")
    assert str(load_config(path).model_config().hidden_irreps) == "32x0e+32x1o+32x2e+8x3o"
    for value, message in (("[32, 16]", "needs 4"), ("[32, 0, 16, 8]", "positive whole number"),
                           ("2.5", "is not a whole number")):
        path.write_text(f"train_file: x.extxyz\nmodel: {{l_max: 3, num_features: {value}}}\n")
        with pytest.raises(ValueError, match=message):
            load_config(path)


def test_unset_channels_follow_l_max_and_are_saved_resolved(tmp_path):
    """Without num_features each l gets the default count for its order (32, 16, 16, 8, 8, ...),
    whatever l_max the config or an override gives; the saved config holds the list, so a model
    file does not change when the default does."""
    from mlff.model.config import default_features

    assert [default_features(l) for l in range(5)] == [
        [32], [32, 16], [32, 16, 16], [32, 16, 16, 8], [32, 16, 16, 8, 8]]
    assert ModelConfig.preset("medium", l_max=2).num_features == [32, 16, 16]
    assert ModelConfig(l_max=1, parity=True).num_features == [32, 16]
    assert str(ModelConfig(l_max=1, parity=True).hidden_irreps) == "32x0e+32x0o+16x1o+16x1e"
    path = tmp_path / "c.yaml"
    path.write_text("train_file: x.extxyz\nmodel: {l_max: 4, num_features: null}\n")
    assert load_config(path).model_config().num_features == [32, 16, 16, 8, 8]
    saved = ModelConfig().to_dict()
    assert saved["num_features"] == [32, 16, 16, 8]
    assert ModelConfig.from_saved(saved).num_features == [32, 16, 16, 8]
    assert ModelConfig.from_saved({**saved, "num_features": 32}).num_features == 32  # a model saved before
