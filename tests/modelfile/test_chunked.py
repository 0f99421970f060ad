"""forward_chunked: the layers in chunks of atoms, recomputed for the forces (bounded memory),
must give forward's outputs."""

import numpy as np
import pytest
import torch

import mlff
from mlff.data import SpeciesMap, from_ase, keys
from mlff.testing import ghost_representation, tiny_model, triclinic_cell

OUTPUTS = ("energy", "atomic_energy", "forces", "virial", "atomic_virial")


def _args(deployed, atoms):
    data = from_ase(atoms, SpeciesMap(deployed.species), deployed.r_cut)
    return data["positions"], data["edge_index"], data["edge_shift"], data["species"], len(atoms)


def _assert_same(got, want, names, tol=1e-12):
    for name in names:
        scale = max(float(want[name].abs().max()), 1.0)
        err = float((got[name] - want[name]).abs().max())
        assert err <= tol * scale, f"{name}: {err:.3g}"


@pytest.mark.parametrize("overrides", [{}, {"tp_backend": "e3nn"}, {"dipole": True, "l_max": 1, "num_layers": 3},
                                       {"l_max": 0}],
                         ids=["fused", "e3nn", "dipole-3-layers", "l_max-0"])
def test_chunked_equals_forward(tmp_path, overrides):
    """Chunks of 1 atom, of a size that does not divide the atoms, and one chunk for all: the
    outputs of forward in float64, heads included; rows of every chunk get their own gradients."""
    deployed = mlff.load(mlff.deploy(tiny_model(**overrides), tmp_path / "m.pt"), compiled=False)
    atoms = triclinic_cell(3, repeat=(2, 1, 1))
    args = _args(deployed, atoms)
    want = deployed(*args)
    assert float(want["forces"].abs().max()) > 1e-3  # forces that could be wrong
    for chunk in (1, 5, 10_000):
        got = deployed(*args, chunk_atoms=chunk)
        _assert_same(got, want, list(want))


def test_chunked_with_ghosts(tmp_path):
    """With ghost atoms (n_local < n) each layer keeps only the edges it needs, as forward does."""
    deployed = mlff.load(mlff.deploy(tiny_model(), tmp_path / "m.pt"), compiled=False)
    atoms = triclinic_cell(12)
    positions, numbers, owner, n_local = ghost_representation(atoms, deployed.metadata.interaction_range)
    edge_index, edge_shift = mlff.data.neighbor_list(positions, None, False, deployed.r_cut)
    args = (torch.from_numpy(positions), torch.from_numpy(edge_index), torch.from_numpy(edge_shift),
            torch.from_numpy(SpeciesMap(deployed.species)(numbers)), n_local)
    want = deployed(*args)
    for chunk in (3, 64):
        _assert_same(deployed(*args, chunk_atoms=chunk), want, OUTPUTS)


def test_calculator_chunk_atoms(tmp_path):
    """MLFFCalculator(chunk_atoms=N) gives the calculator's results (stress included); a bad
    value and a file without the method are clear errors."""
    from ase.build import bulk

    path = mlff.deploy(tiny_model(species=("Cu",)), tmp_path / "m.pt")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=2)
    results = []
    for chunk in (0, 7):
        copy = atoms.copy()
        copy.calc = mlff.MLFFCalculator(path, chunk_atoms=chunk)
        results.append((copy.get_potential_energy(), copy.get_forces(), copy.get_stress()))
    for plain, chunked in zip(*results):
        np.testing.assert_allclose(chunked, plain, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="chunk_atoms is .auto. or a number of atoms"):
        mlff.MLFFCalculator(path, chunk_atoms=-1)
    deployed = mlff.load(path, compiled=False)
    with pytest.raises(torch.jit.Error, match="positive number of atoms"):
        deployed.module.forward_chunked(*_args(deployed, atoms), 0)
    older = mlff.load(path, compiled=False)
    object.__setattr__(older.metadata, "capabilities", ["forward", "halo_exchange"])  # as files before it
    with pytest.raises(mlff.modelfile.ModelFileError, match="mlff deploy OLD.pt -o NEW.pt"):
        mlff.MLFFCalculator(older, chunk_atoms=8)


def test_chunked_refused_in_training():
    """The chunked path recomputes layers without a graph for the weights: training must not use it."""
    model = tiny_model().train()
    data = from_ase(triclinic_cell(1), SpeciesMap(model.species), model.r_cut)
    data[keys.CHUNK_ATOMS_KEY] = torch.tensor(4)
    with pytest.raises(RuntimeError, match="chunk_atoms is for inference"):
        model(data)


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_chunks_keep_no_graph_of_every_edge(order):
    """In chunks nothing the size of all the edges is saved for the backward (the edge embedding
    is recomputed chunk by chunk, the virials take no graph), whether the edges come sorted by
    centre (then they are not copied) or not; the outputs stay forward's."""
    model = tiny_model().eval()
    atoms = triclinic_cell(5, repeat=(3, 2, 2))
    data = from_ase(atoms, SpeciesMap(model.species), model.r_cut)
    center = data["edge_index"][0]
    perm = torch.argsort(center, stable=True) if order == "sorted" else torch.randperm(len(center))
    data["edge_index"], data["edge_shift"] = data["edge_index"][:, perm], data["edge_shift"][perm]
    num_edges = data["edge_index"].shape[1]
    want = model(dict(data))
    saved = []

    def pack(tensor):
        saved.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        got = model(dict(data, **{keys.CHUNK_ATOMS_KEY: torch.tensor(8)}))
    assert saved and not [shape for shape in saved if shape and shape[0] == num_edges], saved
    _assert_same({k: v.detach() for k, v in got.items()}, {k: v.detach() for k, v in want.items()}, OUTPUTS)


@pytest.mark.parametrize("tp_backend", ["fused", "e3nn"])
def test_chunk_reads_only_its_neighbourhood(tp_backend):
    """A chunk's backward keeps nothing the size of all the atoms: it gathers the rows of its edges'
    neighbours and runs the layer's input linear on them, so the memory beside the gradient of the
    layer's input is one chunk's (and so is the time: no gradient of every atom per chunk). The
    gradients equal autograd through the whole layer."""
    model = tiny_model(tp_backend=tp_backend).eval()
    atoms = triclinic_cell(5, repeat=(4, 4, 4))  # more atoms than a chunk of 4 has edges
    data = from_ase(atoms, SpeciesMap(model.species), model.r_cut)
    center, neighbour = data["edge_index"][0], data["edge_index"][1]
    order = torch.argsort(center, stable=True)
    center, neighbour = center[order], neighbour[order]
    n = len(atoms)
    vec = (data["positions"][neighbour] + data["edge_shift"][order] - data["positions"][center]).to(torch.float64)
    sh, radial = model.edge_embedding(vec, torch.stack([center, neighbour]), data["species"])
    attrs = model.attributes(data["species"])
    layer = model.layers[1]
    x = torch.randn(n, layer.irreps_in.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grad_out = torch.randn(n, layer.out_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    bounds = list(range(0, n, 4)) + [n]
    edge_bounds = torch.searchsorted(center, torch.tensor(bounds)).tolist()
    saved = []

    def pack(tensor):
        saved.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        grad_x, grad_sh, grad_radial = layer.chunked_backward(x, attrs, sh.detach(), radial.detach(), center, neighbour,
                                                              bounds, edge_bounds, grad_out, True)
    assert saved and not [shape for shape in saved if shape and shape[0] >= n], saved

    leaves = [x.clone().requires_grad_(True), sh.detach().requires_grad_(True), radial.detach().requires_grad_(True)]
    out = layer(leaves[0], attrs, torch.stack([center, neighbour]), leaves[1], leaves[2])
    want = torch.autograd.grad([out], leaves, [grad_out])
    for got, expected in zip((grad_x, grad_sh, grad_radial), want):
        assert torch.allclose(got, expected, rtol=0, atol=1e-12 * max(1.0, float(expected.abs().max())))
    forward = layer.chunked_forward(x, attrs, sh.detach(), radial.detach(), center, neighbour, bounds, edge_bounds)
    assert torch.allclose(forward, out.detach(), rtol=0, atol=1e-12)


def test_only_the_layers_below_the_last_run_twice():
    """In chunks the last layer and the readout take each chunk's gradient right after its forward
    (the readout is per atom): each of its chunks runs once, the other layers' twice (forward
    without a graph, then recomputed for the backward); the outputs stay forward's."""
    model = tiny_model(num_layers=3).eval()
    atoms = triclinic_cell(5, repeat=(2, 2, 2))
    data = from_ase(atoms, SpeciesMap(model.species), model.r_cut)
    want = model(dict(data))
    calls = [0] * len(model.layers)
    for index, layer in enumerate(model.layers):
        def counted(*args, index=index, run=layer._chunk):
            calls[index] += 1
            return run(*args)
        layer._chunk = counted
    got = model(dict(data, **{keys.CHUNK_ATOMS_KEY: torch.tensor(8)}))
    chunks = -(-len(atoms) // 8)
    assert calls == [2 * chunks, 2 * chunks, chunks], calls
    _assert_same({k: v.detach() for k, v in got.items()}, {k: v.detach() for k, v in want.items()}, OUTPUTS)
