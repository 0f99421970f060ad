"""The halo protocol of model files (mlff.modelfile.halo): layer by layer on local atoms plus one
cutoff of ghosts, with the ghost features exchanged between layers, equals the whole-structure
forward exactly (float64)."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

import mlff
from mlff.modelfile.halo import halo_evaluate, image_exchange
from mlff.testing import fold_ghosts, image_halo, small_molecule, tiny_model, triclinic_cell


def _domain(atoms, model):
    return image_halo(atoms, model.species, model.r_cut)


def _halo(model, atoms, chunk_atoms=0):
    positions, edge_index, species, owner, n = _domain(atoms, model)
    forward, reverse = image_exchange(owner, n)
    out = halo_evaluate(model.module, positions, edge_index, species, n, forward, reverse, chunk_atoms)
    owner = owner.numpy()
    return {"energy": out["energy"].item(), "energies": out["atomic_energy"].numpy(),
            "forces": fold_ghosts(out["forces"].numpy(), owner, n),
            "virial": out["virial"].numpy(),
            "atomic_virial": fold_ghosts(out["atomic_virial"].numpy(), owner, n)}


def _whole(model, atoms):
    from mlff.data import SpeciesMap, from_ase

    data = from_ase(atoms, SpeciesMap(model.species), model.r_cut)
    out = model(data["positions"], data["edge_index"], data["edge_shift"], data["species"])
    return {"energy": out["energy"].item(), "energies": out["atomic_energy"].numpy(),
            "forces": out["forces"].numpy(), "virial": out["virial"].numpy(),
            "atomic_virial": out["atomic_virial"].numpy()}


def _tiny_cell():
    atoms = bulk("Cu", "fcc", a=3.6).repeat((1, 1, 2))  # far smaller than the cutoff sphere
    atoms.numbers[1] = 8
    atoms.positions[1] += [0.1, -0.1, 0.15]
    return atoms


STRUCTURES = {"triclinic": triclinic_cell(3), "tiny_cell": _tiny_cell(), "molecule": small_molecule(2)}
MODELS = {
    "2_layers": {},
    "1_layer": {"num_layers": 1},
    "3_layers_parity": {"num_layers": 3, "parity": True},
    "medium_irreps": {"num_layers": 3, "l_max": 3, "parity": False},  # the default preset's features
    "l_max_0": {"l_max": 0},
    "channels_per_l": {"num_layers": 3, "l_max": 3, "parity": False, "num_features": [8, 6, 4, 2]},
    "heads": {"dipole": True, "outputs": {"polarizability": "1x0e+1x2e"}},
    "e3nn_backend": {"tp_backend": "e3nn"},
}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("halo")
    return {name: mlff.deploy(tiny_model(**options), root / f"{name}.pt") for name, options in MODELS.items()}


@pytest.mark.parametrize("chunk_atoms", [0, 3], ids=["whole-layers", "chunked"])
@pytest.mark.parametrize("structure", list(STRUCTURES))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_halo_protocol_equals_forward(model_files, model_name, structure, chunk_atoms):
    """Also the chunked variant (halo_layer_chunked / halo_layer_grad: bounded memory), here with
    chunks of 3 local atoms."""
    model = mlff.load(model_files[model_name])
    atoms = STRUCTURES[structure]
    halo, whole = _halo(model, atoms, chunk_atoms), _whole(model, atoms)
    for key in whole:
        scale = max(np.abs(whole[key]).max(), 1e-6)
        np.testing.assert_allclose(halo[key], whole[key], rtol=0, atol=1e-12 * scale, err_msg=key)


def test_float32_model(tmp_path):
    model = mlff.load(mlff.deploy(tiny_model(dtype="float32"), tmp_path / "f32.pt"))
    atoms = STRUCTURES["triclinic"]
    halo, whole = _halo(model, atoms), _whole(model, atoms)
    np.testing.assert_allclose(halo["energy"], whole["energy"], rtol=1e-6)
    np.testing.assert_allclose(halo["forces"], whole["forces"], atol=1e-5 * np.abs(whole["forces"]).max())


def test_feature_dim_is_the_exchanged_width(model_files):
    module = mlff.load(model_files["2_layers"]).module
    model = tiny_model()
    assert module.halo_feature_dim() == model.layers[0].irreps_out.dim
    assert mlff.load(model_files["1_layer"]).module.halo_feature_dim() == 0


def test_isolated_atoms(model_files):
    """No edges at all: energies are the per-species shifts and forces vanish."""
    model = mlff.load(model_files["2_layers"])
    atoms = Atoms("CuO", positions=[[0, 0, 0], [10, 0, 0]])
    halo, whole = _halo(model, atoms), _whole(model, atoms)
    np.testing.assert_allclose(halo["energies"], whole["energies"], rtol=1e-14)
    assert np.all(halo["forces"] == 0)


def test_unsorted_or_ghost_centred_edges_are_refused(model_files):
    module = mlff.load(model_files["2_layers"]).module
    positions, edge_index, species, _, n = _domain(STRUCTURES["triclinic"], mlff.load(model_files["2_layers"]))
    with pytest.raises(Exception, match="sorted by centre"):
        module.halo_edges(positions, edge_index.flip(1), species, n)
    ghost_centred = edge_index.clone()
    ghost_centred[0, -1] = n
    with pytest.raises(Exception, match="centred on local atoms"):
        module.halo_edges(positions, ghost_centred, species, n)


@pytest.mark.parametrize("model_name", ["2_layers", "l_max_0", "e3nn_backend"])
@pytest.mark.parametrize("edge_block", [7, 262144], ids=["blocks-of-7-edges", "one-block"])
def test_edge_gradients_recompute_what_halo_outputs_differentiates(model_files, model_name, edge_block):
    """halo_edge_gradients (chunks: the edges' embedding ran without a graph) gives halo_outputs'
    forces and virials for any edge-feature gradients, the pair repulsion's column included (the
    tiny models have it), recomputing the embedding a block of edges at a time."""
    import torch

    module = mlff.load(model_files[model_name]).module
    positions, edge_index, species, _, n = _domain(STRUCTURES["triclinic"], mlff.load(model_files[model_name]))
    vec, sh, radial = module.halo_edges(positions, edge_index, species, n)
    generator = torch.Generator().manual_seed(3)
    grad_sh = torch.randn(sh.shape, generator=generator, dtype=sh.dtype)
    grad_radial = torch.randn(radial.shape, generator=generator, dtype=radial.dtype)
    want = module.halo_outputs(vec, sh, radial, grad_sh, grad_radial, edge_index, positions.shape[0])
    with torch.no_grad():  # as the engines call halo_edges then
        module.halo_edges(positions, edge_index, species, n)
    got = module.halo_edge_gradients(positions, edge_index, species, grad_sh, grad_radial, positions.shape[0],
                                     edge_block)
    assert float(want[0].abs().max()) > 1e-3 and edge_index.shape[1] > 7 * 5  # several blocks of 7
    for name, g, w in zip(("forces", "virial", "atomic_virial"), got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=0, atol=1e-12 * float(w.abs().max()), err_msg=name)


@pytest.mark.parametrize("model_name", ["2_layers", "1_layer", "3_layers_parity", "l_max_0", "heads"])
def test_last_layer_chunked_is_the_unfused_last_layer(model_files, model_name):
    """halo_last_layer_chunked (the last layer once, each chunk's backward right after its forward)
    gives what the last layer's halo_layer_chunked, halo_energy, halo_grad and halo_layer_grad give:
    the energies and the gradients w.r.t. the layer input and the edge features, the pair
    repulsion's column included (the tiny models have it); chunks of 5 local atoms."""
    import torch

    model = mlff.load(model_files[model_name])
    module = model.module
    assert "last_layer_chunked" in model.metadata.capabilities
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1))
    atoms.numbers[::3] = 8
    atoms.rattle(0.1, seed=4)
    positions, edge_index, species, owner, n = _domain(atoms, model)
    forward, _ = image_exchange(owner, n)
    with torch.no_grad():
        _, sh, radial = module.halo_edges(positions, edge_index, species, n)
    last, chunk = int(module.num_layers) - 1, 5
    x = module.halo_embed(species)
    for k in range(last):  # the last layer's input
        y = module.halo_layer_chunked(k, x, species, edge_index, sh, radial, n, chunk)
        x = module.halo_join(y, forward(y))
    y = module.halo_layer_chunked(last, x, species, edge_index, sh, radial, n, chunk)
    leaf = module.halo_join(y, y[:0])
    energy = module.halo_energy(leaf, species[:n])
    grad = module.halo_grad(energy, torch.ones_like(energy), leaf, True, sh, radial)[0]
    want = (energy.detach(),) + tuple(module.halo_layer_grad(last, x, species, edge_index, sh, radial, n, chunk,
                                                             grad, last > 0))
    got = module.halo_last_layer_chunked(x, species, edge_index, sh, radial, n, chunk)
    assert n == 16 and float(want[2].abs().max()) > 1e-3  # several chunks, nonzero gradients
    for name, g, w in zip(("energy", "grad_x", "grad_sh", "grad_radial"), got, want):
        assert g.shape == w.shape, name
        np.testing.assert_allclose(g.detach().numpy(), w.detach().numpy(), rtol=0,
                                   atol=1e-12 * max(float(w.abs().max()), 1e-6), err_msg=name)
