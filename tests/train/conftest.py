import os
from pathlib import Path

import pytest
import yaml
from ase.io import read, write

CU_DATA = Path(__file__).resolve().parents[2] / "datasets" / "cu_emt.extxyz"


@pytest.fixture(scope="session")
def cu_files(tmp_path_factory):
    """A small, diverse slice of the Cu EMT reference set: 40 training and 12 validation frames."""
    frames = read(CU_DATA, index=":")
    folder = tmp_path_factory.mktemp("cu")
    write(folder / "train.extxyz", frames[1::7][:40])
    write(folder / "valid.extxyz", frames[3::25][:12])
    return folder / "train.extxyz", folder / "valid.extxyz"


def write_config(path, cu_files, **overrides):
    train, valid = cu_files
    options = {
        "train_file": str(train), "valid_file": str(valid),
        "model": {"preset": "small", "r_cut": 4.0, "num_features": 8, "radial_hidden": 16, "dtype": "float64"},
        "max_epochs": 6, "batch_size": 4, "learning_rate": 0.01, "seed": 1, "test_fraction": 0.0,
        "output_dir": str(Path(path).parent / "run"), "progress": False, "tensorboard": "off",
    }
    options.update(overrides)
    Path(path).write_text(yaml.safe_dump(options))
    return Path(path)


@pytest.fixture(scope="session")
def session_config(cu_files):
    """``make_config`` for fixtures of any scope."""
    return lambda path, **overrides: write_config(path, cu_files, **overrides)


@pytest.fixture
def make_config(session_config):
    """``make_config(path, **options)`` writes a small training YAML for the Cu slice."""
    return session_config


@pytest.fixture
def env():
    return dict(os.environ, OMP_NUM_THREADS="1")
