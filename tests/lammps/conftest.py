import pytest


@pytest.fixture(scope="session")
def plugin():
    """The pair-style plugin, built once (cached across runs by torch/LAMMPS/source versions)."""
    from mlff.lammps.build import build

    return build()
