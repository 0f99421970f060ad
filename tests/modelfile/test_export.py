from unittest import mock

import numpy as np
import pytest
import torch

import mlff
from mlff.data import SpeciesMap, from_ase
from mlff.modelfile import model_from_file
from mlff.testing import edit_model_file, fold_ghosts, ghost_representation, tiny_model, triclinic_cell


def _call(deployed, atoms):
    data = from_ase(atoms, SpeciesMap(deployed.species), deployed.r_cut)
    return deployed(data["positions"], data["edge_index"], data["edge_shift"], data["species"])


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_scripted_equals_eager(tmp_path, dtype, tol):
    model = tiny_model(dtype=dtype)
    path = mlff.deploy(model, tmp_path / "m.pt")
    deployed = mlff.load(path)
    atoms = triclinic_cell(11)
    data = from_ase(atoms, SpeciesMap(model.species), model.r_cut)
    eager = model(dict(data))
    scripted = _call(deployed, atoms)
    for key in ("energy", "atomic_energy", "forces", "virial", "atomic_virial"):
        assert scripted[key].dtype == torch.float64, key
        ref = eager[key][0] if key in ("energy", "virial") else eager[key]
        np.testing.assert_allclose(scripted[key].numpy(), ref.detach().numpy(), atol=tol, rtol=tol, err_msg=key)


def test_metadata(model_file):
    meta = mlff.read_metadata(model_file)
    assert meta.species == ["Cu", "O"]
    assert meta.r_cut == 3.5 and meta.num_layers == 2 and meta.interaction_range == 7.0
    assert meta.dtype == "float64" and meta.energy_unit == "eV" and meta.length_unit == "Angstrom"
    assert meta.torch_version == torch.__version__ and meta.config["num_features"] == 8
    assert mlff.ModelConfig.from_dict(meta.config).l_max == 2
    assert meta.capabilities == ["forward", "halo_exchange", "chunked", "edge_gradients", "last_layer_chunked"]


def test_ghost_contract(model_file):
    """Local atoms plus explicit ghost images (zero shifts, n_local) reproduce the periodic
    evaluation: this is exactly what the LAMMPS plugin does."""
    deployed = mlff.load(model_file)
    atoms = triclinic_cell(12)
    periodic = _call(deployed, atoms)

    shell = deployed.metadata.interaction_range
    positions, numbers, owner, n_local = ghost_representation(atoms, shell)
    assert len(positions) > 3 * n_local
    edge_index, edge_shift = mlff.data.neighbor_list(positions, None, False, deployed.r_cut)
    out = deployed(torch.from_numpy(positions), torch.from_numpy(edge_index), torch.from_numpy(edge_shift),
                   torch.from_numpy(SpeciesMap(deployed.species)(numbers)), n_local)
    assert np.all(edge_shift == 0)
    np.testing.assert_allclose(out["energy"].numpy(), periodic["energy"].numpy(), rtol=1e-12)
    np.testing.assert_allclose(out["atomic_energy"][:n_local].numpy(), periodic["atomic_energy"].numpy(), atol=1e-12)
    assert np.all(out["atomic_energy"][n_local:].numpy() == 0)
    forces = fold_ghosts(out["forces"].numpy(), owner, n_local)
    np.testing.assert_allclose(forces, periodic["forces"].numpy(), atol=1e-11)
    np.testing.assert_allclose(out["virial"].numpy(), periodic["virial"].numpy(), atol=1e-11)
    atomic_virial = fold_ghosts(out["atomic_virial"].numpy(), owner, n_local)
    np.testing.assert_allclose(atomic_virial, periodic["atomic_virial"].numpy(), atol=1e-11)

    # a ghost shell of one cutoff is not enough for two layers: the test can tell
    positions, numbers, owner, n_local = ghost_representation(atoms, deployed.r_cut)
    edge_index, edge_shift = mlff.data.neighbor_list(positions, None, False, deployed.r_cut)
    thin = deployed(torch.from_numpy(positions), torch.from_numpy(edge_index), torch.from_numpy(edge_shift),
                    torch.from_numpy(SpeciesMap(deployed.species)(numbers)), n_local)
    assert abs(float(thin["energy"] - periodic["energy"])) > 1e-8


def test_contract_rejects_bad_shapes(model_file):
    deployed = mlff.load(model_file)
    pos = torch.zeros(2, 3, dtype=torch.float64)
    edges = torch.tensor([[0, 1], [1, 0]])
    shift = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(Exception, match="species index out of range"):
        deployed(pos, edges, shift, torch.tensor([0, 7]))
    with pytest.raises(Exception, match="edge_shift must have shape"):
        deployed(pos, edges, torch.zeros(3, 3, dtype=torch.float64), torch.tensor([0, 1]))
    with pytest.raises(Exception, match="n_local"):
        deployed(pos, edges, shift, torch.tensor([0, 1]), 3)


def test_missing_file(tmp_path):
    with pytest.raises(mlff.ModelFileError, match="does not exist"):
        mlff.load(tmp_path / "nope.pt")


def test_corrupt_file(tmp_path, model_file):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(model_file.read_bytes()[:5000])
    with pytest.raises(mlff.ModelFileError, match="corrupt"):
        mlff.load(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a model" * 100)
    with pytest.raises(mlff.ModelFileError, match="not an mlff model"):
        mlff.load(garbage)


def test_torchscript_file_without_metadata(tmp_path):
    path = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(mlff.ModelFileError, match="not an mlff model"):
        mlff.load(path)


def test_other_format_version(tmp_path, model_file):
    path = tmp_path / "future.pt"
    edit_model_file(model_file, path, {"format_version": b"99"})
    with pytest.raises(mlff.ModelFileError, match="format version 99.*reads version 1"):
        mlff.load(path)


def test_deploy_refuses_other_objects(tmp_path):
    with pytest.raises(TypeError, match="expects an mlff Potential"):
        mlff.deploy(torch.nn.Linear(2, 2), tmp_path / "x.pt")


def test_deploy_leaves_the_model_as_it_was(tmp_path):
    """The file holds frozen weights in eval mode; the model being trained keeps its modes,
    requires_grad flags, modules (e3nn's scripting replaces submodules in place: deploy scripts a
    copy) and its own tensors."""
    model = tiny_model().train()
    model.layers[0].eval()                                  # modes and flags set by hand are kept
    frozen = next(model.layers[1].parameters())
    frozen.requires_grad_(False)
    modules = [type(m) for m in model.modules()]
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    path = mlff.deploy(model, tmp_path / "m.pt")
    assert [type(m) for m in model.modules()] == modules and not isinstance(model.layers[0], torch.jit.ScriptModule)
    assert [m.training for m in model.modules()] == modes and [p.requires_grad for p in model.parameters()] == flags
    scripted = torch.jit.load(path)
    assert not any(p.requires_grad for p in scripted.parameters())
    atoms = triclinic_cell(1)
    before = mlff.MLFFCalculator(path).get_potential_energy(atoms)
    with torch.no_grad():                                   # training goes on: the file does not move
        for p in model.parameters():
            p.add_(0.1)
    assert mlff.MLFFCalculator(path).get_potential_energy(atoms) == before
    with pytest.raises(RuntimeError, match="scripting failed"), \
            mock.patch("mlff.modelfile.export.script", side_effect=RuntimeError("scripting failed")):
        mlff.deploy(model, tmp_path / "failed.pt")
    assert [m.training for m in model.modules()] == modes and [p.requires_grad for p in model.parameters()] == flags


@pytest.mark.parametrize("backend", ["fused", "e3nn"])
def test_model_file_round_trip_and_reexport(tmp_path, backend):
    """A model file rebuilds into the same eager model; re-exporting it (also with the other
    convolution backend, as `mlff deploy model.pt -o new.pt --tp-backend ...` does) keeps the
    results."""
    model = tiny_model()
    path = mlff.deploy(model, tmp_path / "m.pt")
    rebuilt = model_from_file(path, tp_backend=backend)
    assert rebuilt.config.tp_backend == backend
    again = mlff.load(mlff.deploy(rebuilt, tmp_path / "again.pt"))
    atoms = triclinic_cell(13)
    first, second = _call(mlff.load(path), atoms), _call(again, atoms)
    for key in ("energy", "forces", "virial", "atomic_virial"):
        scale = float(np.abs(first[key].numpy()).max())
        # e3nn keeps its Clebsch-Gordan tables in the default dtype (float32 here): 1e-7 relative
        tol = 1e-12 if backend == "fused" else 1e-6
        np.testing.assert_allclose(second[key].numpy(), first[key].numpy(), rtol=0, atol=tol * scale, err_msg=key)


def test_deployed_model_with_no_edges(model_file):
    """Isolated atoms (no edge within r_cut): a frozen model's energy does not depend on the
    positions at all; forces and virials are zero, not an autograd error."""
    deployed = mlff.load(model_file)
    positions = torch.tensor([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0]], dtype=torch.float64)
    no_edges = torch.zeros((2, 0), dtype=torch.int64)
    for n_local in (2, 1):  # all local (ASE), or one ghost (LAMMPS)
        out = deployed(positions, no_edges, torch.zeros((0, 3), dtype=torch.float64),
                       torch.tensor([0, 1]), n_local)
        assert torch.isfinite(out["energy"])
        assert torch.all(out["forces"] == 0) and torch.all(out["virial"] == 0)


def test_three_layer_model_file_rebuilds(tmp_path):
    """A middle layer's tensor product (e3nn generated code) saves `_tensor_constantN` attributes
    in the file (here with both parities); they are rebuilt, not refused (the `medium` preset has three layers)."""
    model = mlff.build_model(mlff.ModelConfig(num_layers=3, l_max=2, parity=True, num_features=8, r_cut=4.0, dtype="float64"),
                             ["Cu", "O"], seed=0)
    path = mlff.deploy(model, tmp_path / "m.pt")
    assert any("_tensor_constant" in k for k in torch.jit.load(str(path)).state_dict())
    rebuilt = model_from_file(path)
    atoms = triclinic_cell(5)
    first, second = _call(mlff.load(path), atoms), _call(mlff.load(mlff.deploy(rebuilt, tmp_path / "again.pt")), atoms)
    np.testing.assert_allclose(second["forces"].numpy(), first["forces"].numpy(), rtol=0, atol=1e-12)
