"""The fused convolution is the same layer as e3nn's TensorProduct followed by a scatter."""

import numpy as np
import pytest
import torch
from e3nn import o3

from mlff.data import SpeciesMap, from_ase
from mlff.nn.interaction import Interaction
from mlff.nn.tensor_product import FusedEdgeTensorProduct, dense_rows
from mlff.testing import evaluate, small_molecule, tiny_model, triclinic_cell, with_tp_backend


@pytest.fixture
def float64_default():
    """e3nn computes its Clebsch-Gordan constants in the default dtype: float64 for exact references."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _random_graph(num_nodes, num_edges, seed):
    g = torch.Generator().manual_seed(seed)
    center = torch.randint(0, num_nodes, (num_edges,), generator=g)
    neighbour = torch.randint(0, num_nodes, (num_edges,), generator=g)
    vec = torch.randn(num_edges, 3, generator=g, dtype=torch.float64)
    return center, neighbour, vec


@pytest.mark.parametrize("irreps_in,l_max,parity", [
    ("5x0e", 2, False),                        # first layer: scalar input
    ("4x0e+3x1o+2x2e", 2, False),              # hidden layer, natural parity
    ("3x0e+2x0o+3x1o+2x1e+2x2e+1x2o", 2, True),  # both parities
    ("2x0e+2x1o+2x2e+2x3o", 3, False),
])
@pytest.mark.parametrize("scalar_output", [False, True])
def test_matches_e3nn_with_gradients(irreps_in, l_max, parity, scalar_output, float64_default):
    torch.manual_seed(0)
    irreps_in = o3.Irreps(irreps_in)
    irreps_sh = o3.Irreps.spherical_harmonics(l_max)
    target = o3.Irreps("4x0e") if scalar_output else o3.Irreps(
        [(4, (l, p)) for l in range(l_max + 1) for p in ((1, -1) if parity else ((-1) ** l,))])
    layer = Interaction(irreps_in, irreps_sh, target, o3.Irreps("2x0e"), 4, 8, 1, 3.0)
    fused, tp = layer.conv, layer.tp
    n, num_edges = 7, 40
    center, neighbour, vec = _random_graph(n, num_edges, seed=1)
    order = torch.argsort(center, stable=True)
    center, neighbour, vec = center[order], neighbour[order], vec[order]
    x = torch.randn(n, irreps_in.dim, dtype=torch.float64, requires_grad=True)
    sh = o3.spherical_harmonics(irreps_sh, vec, normalize=True).requires_grad_(True)
    w = torch.randn(num_edges, tp.weight_numel, dtype=torch.float64, requires_grad=True)

    rows, slot, k_max = dense_rows(center, n)
    ours = fused(x, sh, w, neighbour, rows, slot, k_max)
    reference = torch.zeros(n, tp.irreps_out.dim, dtype=torch.float64).index_add(
        0, center, tp(x[neighbour], sh, w))
    np.testing.assert_allclose(ours.detach(), reference.detach(), rtol=0, atol=1e-12)

    # first and second derivatives (forces, and the force loss in training)
    probe = torch.randn_like(reference)
    g_ours = torch.autograd.grad((ours * probe).sum(), [x, sh, w], create_graph=True)
    g_ref = torch.autograd.grad((reference * probe).sum(), [x, sh, w], create_graph=True)
    for a, b in zip(g_ours, g_ref):
        np.testing.assert_allclose(a.detach(), b.detach(), rtol=0, atol=1e-12)
    second_ours = torch.autograd.grad(sum((g ** 2).sum() for g in g_ours), [x, w])
    second_ref = torch.autograd.grad(sum((g ** 2).sum() for g in g_ref), [x, w])
    for a, b in zip(second_ours, second_ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-11)


def test_dense_rows_layout():
    center = torch.tensor([0, 0, 0, 2, 2, 5])
    rows, slot, k_max = dense_rows(center, 7)
    assert k_max == 3
    assert rows.tolist() == [0, 2, 5]
    assert slot.tolist() == [0, 1, 2, 3, 4, 6]


@pytest.mark.parametrize("structure", ["periodic", "molecule"])
@pytest.mark.parametrize("options", [dict(), dict(parity=False), dict(l_max=3, num_layers=3), dict(l_max=0)])
def test_model_backends_agree(structure, options):
    """energy, forces, virial and per-atom virial: fused == e3nn to 1e-10 relative (float64)."""
    model = tiny_model(**options)
    atoms = triclinic_cell(2, repeat=(2, 1, 1)) if structure == "periodic" else small_molecule(3)
    fused = evaluate(with_tp_backend(model, "fused"), atoms)
    reference = evaluate(with_tp_backend(model, "e3nn"), atoms)
    for key in ("energy", "atomic_energy", "forces", "virial", "atomic_virial"):
        scale = np.abs(reference[key]).max()
        np.testing.assert_allclose(fused[key], reference[key], rtol=0, atol=1e-10 * scale, err_msg=key)


def test_edge_order_does_not_matter():
    """The model sorts the edges by centre itself: any order of the engine's list gives the same
    result."""
    model = tiny_model()
    atoms = triclinic_cell(5)
    data = from_ase(atoms, SpeciesMap(model.species), model.r_cut)
    perm = torch.randperm(data["edge_index"].shape[1], generator=torch.Generator().manual_seed(0))
    shuffled = dict(data, edge_index=data["edge_index"][:, perm], edge_shift=data["edge_shift"][perm])
    a, b = model(dict(data)), model(shuffled)
    for key in ("energy", "forces", "virial", "atomic_virial"):
        np.testing.assert_allclose(a[key].detach(), b[key].detach(), rtol=0, atol=1e-12)


def test_training_gradients_agree():
    """The force loss's parameter gradients (double backward) are the same on both backends."""
    model = tiny_model().train()
    atoms = triclinic_cell(6)
    grads = []
    for backend in ("fused", "e3nn"):
        m = with_tp_backend(model, backend)
        out = m(from_ase(atoms, SpeciesMap(m.species), m.r_cut))
        loss = out["energy"].sum() ** 2 + (out["forces"] ** 2).sum()
        grads.append(torch.autograd.grad(loss, [p for p in m.parameters() if p.requires_grad]))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_unsupported_tensor_product_is_refused():
    tp = o3.TensorProduct("2x0e", "1x0e", "2x0e", [(0, 0, 0, "uvw", True)], shared_weights=False,
                          internal_weights=False)
    with pytest.raises(ValueError, match="uvu"):
        FusedEdgeTensorProduct(tp)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="tp_backend"):
        tiny_model(tp_backend="cuda-magic")
