"""Input a user or a script may hand the calculator: every value is checked before native code sees
it (never a crash of the process, never NaN), and a calculator shared by threads returns each
thread its own structure's results."""

import threading

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import CalculatorError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlff
from mlff.data.neighbors import neighbor_list

CLEAR_ERRORS = (ValueError, CalculatorError)


def _energy(model_file, atoms, **options):
    atoms = atoms.copy()
    atoms.calc = mlff.MLFFCalculator(model_file, **options)
    return atoms.get_potential_energy()


@pytest.mark.parametrize("value, message", [
    (float("nan"), "cell contains NaN or inf"),
    (float("inf"), "cell contains NaN or inf"),
    (1e300, "lattice vector 0 is 1e\\+300 Å long"),
    (1e7, "lattice vector 0 is 1e\\+07 Å long"),
])
def test_absurd_cells_are_clear_errors(model_file, value, message):
    """These cells killed the process (SIGFPE in the neighbour list) before they were checked."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    cell = atoms.cell.array.copy()
    cell[0, 0] = value
    atoms.set_cell(cell)
    with pytest.raises(ValueError, match=message):
        _energy(model_file, atoms)


def test_a_cell_far_smaller_than_the_cutoff_is_refused_at_once(model_file):
    atoms = Atoms("Cu", cell=np.eye(3) * 0.01, pbc=True)
    with pytest.raises(CalculatorError, match="atom 0 is 0.010 Å from its own periodic image"):
        _energy(model_file, atoms)
    with pytest.raises(ValueError, match="far smaller than the cutoff"):  # with the check switched off
        _energy(model_file, atoms, min_distance=0.0)


@pytest.mark.parametrize("cell, pbc, second", [
    (np.diag([1000.0, 5000.0, 3.6]), True, [1.5, 1.5, 1.5]),        # elongated and sparse
    (np.diag([2000.0, 2000.0, 0.8 * 5]), True, [1.5, 1.5, 1.5]),
    (np.diag([3.6, 1.0, 1.0]), [True, False, False], [1e5, 0.0, 1.0]),  # a wire, atoms far apart
    (np.diag([3.6, 3.6, 0.0]), [True, True, False], [0.0, 1.0, 1e4]),   # a slab with no c vector
    (np.zeros((3, 3)), False, [1e5, 0.0, 0.0]),                     # a long thin molecule
])
def test_boxes_that_crashed_the_cell_list_give_ases_edges(cell, pbc, second):
    """vesin divides by zero when it rescales the bins of such boxes; they are searched with ASE's
    neighbour list instead, with the same edges."""
    from ase.neighborlist import primitive_neighbor_list

    positions = np.array([[0.0, 0.0, 0.0], second, [1.0, 1.2, 0.3]])
    edge_index, shift, lengths = neighbor_list(positions, cell, pbc, 4.0, with_lengths=True)
    pbc3 = np.broadcast_to(pbc, 3)
    i, j, d = primitive_neighbor_list("ijd", pbc3, cell, positions, 4.0)
    assert sorted(zip(i.tolist(), j.tolist(), np.round(d, 9).tolist())) == \
        sorted(zip(edge_index[0].tolist(), edge_index[1].tolist(), np.round(lengths, 9).tolist()))
    vectors = positions[edge_index[1]] - positions[edge_index[0]] + shift
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), lengths, atol=1e-9)


@pytest.mark.parametrize("option, value", [("charge", float("nan")), ("charge", "one"),
                                           ("min_distance", -1.0), ("min_distance", float("inf"))])
def test_calculator_options_are_checked(model_file, option, value):
    with pytest.raises(ValueError, match=option):
        mlff.MLFFCalculator(model_file, **{option: value})


_floats = st.one_of(
    st.floats(-12.0, 12.0),
    st.sampled_from([0.0, 1e-300, -1e-12, 0.3, 2.5, 3.6, 1e5, 1e7, 1e300, float("nan"), float("inf"), -float("inf")]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@st.composite
def _structures(draw):
    n = draw(st.integers(1, 6))
    numbers = draw(st.lists(st.sampled_from([29, 29, 8, 8, 1, 0]), min_size=n, max_size=n))
    positions = draw(st.lists(st.lists(_floats, min_size=3, max_size=3), min_size=n, max_size=n))
    diagonal = draw(st.lists(st.one_of(st.floats(2.0, 12.0), _floats), min_size=3, max_size=3))
    cell = np.diag(diagonal) + draw(st.sampled_from([0.0, 1.0])) * np.array(
        draw(st.lists(st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3), min_size=3, max_size=3)))
    pbc = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    return numbers, positions, cell.tolist(), pbc


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(structure=_structures())
def test_random_structures_give_results_or_clear_errors(model_file, structure):
    """Random cells, positions, elements and sizes through the calculator and mlff.predict: finite
    results of the right shapes, or a ValueError / CalculatorError; nothing else, and no crash."""
    numbers, positions, cell, pbc = structure
    with np.errstate(all="ignore"):  # ASE's own arithmetic on an absurd cell
        atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
    calc = _shared_calculator(model_file)
    try:
        result = mlff.predict(atoms, calc)
    except CLEAR_ERRORS as error:
        assert str(error)
        return
    assert np.isfinite(result["energy"])
    assert result["forces"].shape == (len(atoms), 3) and np.isfinite(result["forces"]).all()
    if atoms.pbc.all():
        assert result["stress"].shape == (6,) and np.isfinite(result["stress"]).all()


_CALCULATORS = {}


def _shared_calculator(model_file):
    if model_file not in _CALCULATORS:
        _CALCULATORS[model_file] = mlff.MLFFCalculator(model_file)
    return _CALCULATORS[model_file]


def test_one_calculator_shared_by_threads_returns_each_its_own_results(model_file):
    """Before the lock, 158 of 600 calls returned another thread's structure's results."""
    structures = []
    for k in range(4):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1, 1, 2))
        atoms.rattle(0.05 + 0.02 * k, seed=k)
        structures.append(atoms)
    structures.append(molecule("H2O"))
    structures[-1].symbols[:] = "OOO"
    expected = []
    for atoms in structures:
        atoms.calc = mlff.MLFFCalculator(model_file)
        expected.append((atoms.get_potential_energy(), atoms.get_forces()))
    shared = mlff.MLFFCalculator(model_file)
    wrong, errors = [], []

    def work(k):
        atoms = structures[k].copy()
        atoms.calc = shared
        try:
            for _ in range(30):
                energy, forces = atoms.get_potential_energy(), atoms.get_forces()
                if abs(energy - expected[k][0]) > 1e-9 or not np.allclose(forces, expected[k][1], atol=1e-9):
                    wrong.append(k)
                if k % 2:  # half of the threads also clear the shared results between calls
                    shared.reset()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(structures))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert not wrong, f"{len(wrong)} of {30 * len(structures)} calls returned another structure's results"


def test_a_refused_structure_never_returns_the_previous_results(model_file):
    """Found by the random test: a structure refused by the checks became ASE's current structure,
    with the previous structure's graph kept; asking again returned the previous results."""
    calc = mlff.MLFFCalculator(model_file)
    good = Atoms("Cu", cell=np.eye(3) * 2.6, pbc=True)
    good.calc = calc
    good.get_potential_energy()
    bad = bulk("Cu", "fcc", a=3.6, cubic=True)
    bad.positions[2, 2] = 3e16
    bad.calc = calc
    for _ in range(2):
        with pytest.raises(ValueError, match="beyond"):
            bad.get_forces()
