import atexit
import os
import shutil
import tempfile

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
# compiled copies built by the tests go to a fresh cache, not the user's (mlff.aoti)
os.environ["MLFF_CACHE_DIR"] = tempfile.mkdtemp(prefix="mlff-test-cache-")
atexit.register(shutil.rmtree, os.environ["MLFF_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    """A deployed float64 tiny model (Cu, O), shared by the tests that need a file."""
    import mlff
    from mlff.testing import tiny_model

    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    mlff.deploy(tiny_model(), path)
    return path


@pytest.fixture(scope="session")
def plugin():
    """The pair-style plugin, built once (cached across runs by torch/LAMMPS/source versions)."""
    from mlff.lammps.build import build

    return build()


# The test files that take longest, heaviest first (worker-seconds in a 2-worker run of the whole
# suite, from its junit report: about 350 down to 36). Under `-n N --dist loadfile` each file is one unit
# of work, handed out in collection order: starting the long ones first keeps every worker busy to
# the end instead of leaving one running the last long file alone (xdist's own order, by number of
# tests, put them last).
HEAVIEST_FILES = (
    "tests/docs/test_doc_commands.py",
    "tests/test_gpu_check.py",
    "tests/lammps/test_compiled_layers.py",
    "tests/lammps/test_halo_exchange.py",
    "tests/train/test_training.py",
    "tests/train/test_compiled_step.py",
    "tests/train/test_budget.py",
    "tests/train/test_train_peers.py",
    "tests/modelfile/test_compiled.py",
    "tests/test_example_potential.py",
    "tests/modelfile/test_halo.py",
    "tests/train/test_defaults_sweep.py",
    "tests/lammps/test_lammps_committee.py",
    "tests/test_defects.py",
    "tests/modelfile/test_export.py",
    "tests/train/test_finetune.py",
)


def pytest_configure(config):
    missing = [name for name in HEAVIEST_FILES if not (config.rootpath / name).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py HEAVIEST_FILES names files that do not exist: {missing}")
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order set below
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVIEST_FILES)}
    root = config.rootpath
    items.sort(key=lambda item: rank.get(item.path.relative_to(root).as_posix(), len(rank)))
