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
