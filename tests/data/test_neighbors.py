import numpy as np
import pytest
from ase.build import bulk
from ase.neighborlist import primitive_neighbor_list

from mlff.data import neighbor_list
from mlff.testing import small_molecule, triclinic_cell


def _pairs(i, j, d):
    return sorted(zip(i.tolist(), j.tolist(), np.round(d, 9).tolist()))


@pytest.mark.parametrize(
    "atoms,pbc",
    [
        (triclinic_cell(1), [True, True, True]),
        (bulk("Cu", "fcc", a=3.6), [True, True, True]),  # 1 atom, cell << cutoff: many images
        (triclinic_cell(2), [True, False, True]),  # mixed periodicity
        (small_molecule(), [False, False, False]),
    ],
)
def test_matches_ase_neighbor_list(atoms, pbc):
    atoms.pbc = pbc
    r_cut = 4.5
    edge_index, edge_shift = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, r_cut)
    i, j, d = primitive_neighbor_list("ijd", atoms.pbc, atoms.cell.array, atoms.positions, r_cut)
    vec = atoms.positions[edge_index[1]] - atoms.positions[edge_index[0]] + edge_shift
    assert len(i) > 0
    assert _pairs(edge_index[0], edge_index[1], np.linalg.norm(vec, axis=1)) == _pairs(i, j, d)


def test_periodic_zero_lattice_vector_is_an_error():
    atoms = small_molecule()
    with pytest.raises(ValueError, match="lattice vector 0"):
        neighbor_list(atoms.positions, np.zeros((3, 3)), [True, False, False], 3.0)


def test_face_distances_are_the_volume_over_each_face():
    """The cross products written out equal np.cross's, bit for bit, and degenerate faces give 0."""
    from mlff.data.neighbors import _face_distances

    rng = np.random.default_rng(3)
    cells = [rng.normal(size=(3, 3)) * scale for scale in (0.01, 1.0, 300.0)]
    cells += [np.diag([3.6, 4.0, 5.0]), np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]]), np.zeros((3, 3))]
    for cell in cells:
        volume = abs(np.linalg.det(cell))
        areas = [np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
        expected = [volume / area if area > 0 else 0.0 for area in areas]
        assert _face_distances(cell).tolist() == expected, cell
