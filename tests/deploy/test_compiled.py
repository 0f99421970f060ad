"""The AOTInductor copy of a model (``mlff deploy --compile``, mlff.deploy.compiled): the same
numbers as the TorchScript model, on every kind of structure, and clear behaviour where it does
not apply. One compilation (through the CLI) is shared by the module: it takes ~30 s."""

import shutil
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

import mlff
from mlff.cli.main import main as cli
from mlff.data import SpeciesMap, from_ase
from mlff.deploy import ModelFileError
from mlff.deploy.compiled import CompileError, compile_package
from mlff.testing import (assert_e3_equivariant, assert_results_close, calculator_results, finite_difference_forces,
                          tiny_model, triclinic_cell)

SPECIES = ("H", "C", "O", "Cu")

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="AOTInductor needs a C++ compiler (g++); none on PATH")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A plain float64 model file and its re-export with a compiled copy (via the CLI)."""
    directory = tmp_path_factory.mktemp("compiled")
    plain = mlff.deploy(tiny_model(species=SPECIES, r_cut=4.0), directory / "plain.pt")
    compiled = directory / "compiled.pt"
    assert cli(["deploy", str(plain), "-o", str(compiled), "--compile"]) == 0
    return plain, compiled


def _structures():
    ethanol = molecule("CH3CH2OH")
    ethanol.rattle(0.05, seed=1)
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    cu.rattle(0.05, seed=2)
    water_on_cu = cu.copy() + molecule("H2O")
    water_on_cu.positions[-3:] += [1.8, 1.8, 9.0]
    water_on_cu.cell[2, 2] = 16.0
    return {
        "ethanol": ethanol,
        "cu32": cu,
        "cu+water": water_on_cu,
        "one atom": Atoms("O", positions=[[0.0, 0.0, 0.0]]),
        "dimer": Atoms("CO", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 1.13]]),
        "single atom, periodic": Atoms("Cu", cell=np.eye(3) * 2.6, pbc=True),
        "triclinic": triclinic_cell(5),
    }


def _raw(deployed, atoms):
    data = from_ase(atoms, SpeciesMap(deployed.species), deployed.r_cut)
    out = deployed(data["positions"], data["edge_index"], data["edge_shift"], data["species"])
    return {k: v.numpy() for k, v in out.items()}


def test_the_file_carries_a_compiled_copy(files):
    plain, compiled = files
    assert mlff.read_metadata(plain).compiled == {}
    info = mlff.read_metadata(compiled).compiled
    assert info["torch_version"] == torch.__version__ and info["device"] == "cpu"
    assert mlff.load(compiled).compiled is not None
    assert mlff.load(compiled, compiled=False).compiled is None
    assert mlff.load(plain).compiled is None


@pytest.mark.parametrize("name", list(_structures()))
def test_compiled_equals_torchscript(files, name):
    plain, compiled = files
    atoms = _structures()[name]
    ours, ref = _raw(mlff.load(compiled, compiled=True), atoms), _raw(mlff.load(plain), atoms)
    assert set(ours) == set(ref)
    for key in ref:
        assert ours[key].dtype == np.float64 and ours[key].shape == ref[key].shape, key
    assert_results_close(ours, ref, rtol=1e-10)


def test_calculator_runs_the_compiled_copy(files):
    plain, compiled = files
    for atoms in (_structures()["cu+water"], _structures()["ethanol"]):
        assert_results_close(calculator_results(atoms, compiled), calculator_results(atoms, plain), rtol=1e-10)


def test_compiled_is_equivariant_and_conservative(files):
    calc = mlff.MLFFCalculator(files[1])
    assert calc.model.compiled is not None

    def evaluate(atoms):
        atoms = atoms.copy()
        atoms.calc = calc
        out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if atoms.pbc.all():
            out["stress"] = atoms.get_stress(voigt=False)
        return out

    for atoms in (_structures()["triclinic"], _structures()["ethanol"]):
        assert_e3_equivariant(evaluate, atoms)
    atoms = _structures()["ethanol"]
    fd = finite_difference_forces(lambda a: evaluate(a)["energy"], atoms)
    np.testing.assert_allclose(evaluate(atoms)["forces"], fd, atol=1e-7)


@pytest.mark.parametrize("which", ["plain", "compiled"])
def test_bad_input_is_the_same_error_on_both_paths(files, which):
    """The compiled copy checks its input like the scripted model (its kernels do not bounds-check
    indices: a wrong species or atom index must not read out of bounds)."""
    deployed = mlff.load(files[which == "compiled"])
    assert (deployed.compiled is not None) == (which == "compiled")
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]], dtype=torch.float64)
    edges, shift, species = torch.tensor([[0, 1], [1, 0]]), torch.zeros(2, 3, dtype=torch.float64), torch.tensor([0, 1])
    assert torch.isfinite(deployed(pos, edges, shift, species)["energy"])
    with pytest.raises(Exception, match="species index out of range"):
        deployed(pos, edges, shift, torch.tensor([0, len(SPECIES)]))
    with pytest.raises(Exception, match="edge_index refers to atoms outside"):
        deployed(pos, torch.tensor([[0, 1], [1, 2]]), shift, species)
    with pytest.raises(Exception, match="edge_shift must have shape"):
        deployed(pos, edges, torch.zeros(3, 3, dtype=torch.float64), species)
    with pytest.raises(Exception, match="positions must have shape"):
        deployed(pos[:, :2], edges, shift, species)


def test_ghost_atoms_run_torchscript(files):
    """The compiled copy has no ghosts: calls with n_local < n take the TorchScript model."""
    plain, compiled = files
    atoms = _structures()["ethanol"]
    data = from_ase(atoms, SpeciesMap(SPECIES), 4.0)
    args = (data["positions"], data["edge_index"], data["edge_shift"], data["species"])
    keep = data["edge_index"][0] < 6
    ghosts = (args[0], args[1][:, keep], args[2][keep], args[3])
    ours, ref = mlff.load(compiled)(*ghosts, n_local=6), mlff.load(plain)(*ghosts, n_local=6)
    assert_results_close({k: v.numpy() for k, v in ours.items()}, {k: v.numpy() for k, v in ref.items()})


def test_compiled_true_without_a_copy_is_an_error(files):
    with pytest.raises(ModelFileError, match="no compiled copy.*mlff deploy --compile"):
        mlff.load(files[0], compiled=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file without a copy loads quietly under "auto"
        mlff.load(files[0])
    with pytest.raises(ValueError, match="compiled must be"):
        mlff.load(files[0], compiled="yes")


def test_other_torch_falls_back_with_a_warning(files, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    with pytest.warns(UserWarning, match="running the TorchScript model.*torch 0.0.1"):
        deployed = mlff.load(files[1])
    assert deployed.compiled is None
    with pytest.raises(ModelFileError, match="built with torch .* this is torch 0.0.1"):
        mlff.load(files[1], compiled=True)


def test_cuda_device_does_not_use_the_cpu_copy(files):
    from mlff.deploy.load import _compiled_copy

    meta = mlff.read_metadata(files[1])
    with pytest.raises(ModelFileError, match="compiled copy is for the cpu"):
        _compiled_copy(str(files[1]), meta, "cuda", True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # on a GPU the TorchScript model is the expected path: no warning
        assert _compiled_copy(str(files[1]), meta, "cuda", "auto") is None


def test_models_with_extra_outputs_are_refused(tmp_path):
    model = tiny_model(outputs={"charge_like": "1x0e"})
    with pytest.raises(CompileError, match="extra outputs"):
        compile_package(model, str(tmp_path))
