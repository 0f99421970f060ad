"""The frame table stored with a converted dataset gives what the passes over its frames give
(summary, statistics, checks, splits' element sets, fingerprints, sizes), so that a run on a
converted dataset reads no frame before its first step; a stale or missing table falls back to
the passes."""

import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect
from ase.io import read, write

from mlff.data import frame_table, stats
from mlff.data.dataset import split_indices
from mlff.data.fingerprint import SPLIT_FILE, fingerprint, write_split
from mlff.data.readers import Frame, describe
from mlff.data.store import StoreFrames, convert, read_table
from mlff.data.validate import DataValidationError, validate_frames
from mlff.train.prepare import atom_counts, element_matrix, fingerprints

DATA = Path(__file__).resolve().parents[2] / "datasets"


@pytest.fixture
def store(tmp_path):
    """Cu EMT frames (periodic, with stress; one slab without) and ethanol molecules, two files."""
    cu = read(DATA / "cu_emt.extxyz", ":")[::25]
    ethanol = read(DATA / "ethanol_xtb.extxyz", ":")[:6]
    write(tmp_path / "cu.extxyz", cu)
    write(tmp_path / "ethanol.extxyz", ethanol)
    convert([tmp_path / "cu.extxyz", tmp_path / "ethanol.extxyz"], tmp_path / "data.db", workers=2)
    return tmp_path / "data.db"


def _assert_same_summary(got, want):
    assert got.keys() == want.keys()
    for key in want:
        if isinstance(want[key], float):
            assert got[key] == pytest.approx(want[key], rel=1e-12)
        else:
            assert got[key] == want[key], key


@pytest.mark.parametrize("view", ["all", "subset"])
def test_table_gives_what_the_passes_give(store, view, tmp_path):
    frames = StoreFrames(store)
    if view == "subset":
        frames = frames.subset([17, 2, 5, 14, 0, 9])
    listed = list(frames)  # the same frames in memory: the passes
    table = frames.frame_table()
    assert table is not None and len(table) == len(listed)
    _assert_same_summary(describe(frames), describe(listed))
    species = sorted({s for f in listed for s in f.atoms.get_chemical_symbols()})
    np.testing.assert_allclose(stats.energy_shifts(frames, species), stats.energy_shifts(listed, species),
                               rtol=1e-12, atol=1e-9)
    assert stats.force_rms(frames) == pytest.approx(stats.force_rms(listed), rel=1e-12)
    for r_cut in (3.0, 4.0, 5.0, 6.25):  # on the stored grid
        assert table.edges[:, list(frame_table.NEIGHBOR_CUTOFFS).index(r_cut)].sum() > 0
        assert stats.average_num_neighbors(frames, r_cut) == stats.average_num_neighbors(listed, r_cut)
    assert frame_table.average_num_neighbors(table, 4.1) is None  # off the grid: a pass
    radii = stats.repulsion_radii(frames, species)
    assert radii == stats.repulsion_radii(listed, species) and radii  # Cu-Cu and C-H are closer than covalent
    assert stats.closest_pairs(frames, 3.0) == stats.closest_pairs(listed, 3.0)
    assert stats.average_num_neighbors(frames, 4.1) == stats.average_num_neighbors(listed, 4.1)
    symbols, present = element_matrix(frames)
    want_symbols, want_present = element_matrix(listed)
    assert symbols == want_symbols and np.array_equal(present, want_present)
    for seed in range(5):  # the same split from the table as from the frames
        for a, b in zip(split_indices(len(listed), 0.3, seed, present), split_indices(len(listed), 0.3, seed,
                        [set(f.atoms.get_chemical_symbols()) for f in listed])):
            np.testing.assert_array_equal(a, b)
    write_split(tmp_path, {"a": fingerprints(frames), "b": fingerprints(listed)})
    written = json.loads((tmp_path / SPLIT_FILE).read_text())
    assert written["a"] == written["b"] == [fingerprint(f.atoms) for f in listed]
    assert atom_counts(frames).tolist() == atom_counts(listed) == [len(f.atoms) for f in listed]


def _frame(atoms):
    return Frame(atoms, atoms.get_potential_energy(), atoms.get_forces(), None, "test")


def test_pair_column_merges_across_tables_and_old_tables_fall_back(tmp_path):
    """Tables of frames with other elements concatenate pair by pair (a pair one table lacks is
    inf there); a table stored before the pair column reads as unknown, and the closest pairs
    then come from a pass over the frames."""
    cu = read(DATA / "cu_emt.extxyz", ":")[::40]
    ethanol = read(DATA / "ethanol_xtb.extxyz", ":")[:3]
    whole = frame_table.FrameTable.from_frames([_frame(a) for a in cu + ethanol])
    parts = frame_table.FrameTable.concatenate([frame_table.FrameTable.from_frames([_frame(a) for a in ethanol]),
                                                frame_table.FrameTable.from_frames([_frame(a) for a in cu])])
    order = list(range(len(cu), len(cu) + len(ethanol))) + list(range(len(cu)))
    assert parts.symbols == whole.symbols == ["C", "Cu", "H", "O"]
    np.testing.assert_array_equal(parts.pair_closest, whole.pair_closest[order])
    names = frame_table.pair_names(whole.symbols)
    assert np.isinf(whole.pair_closest[0, names.index("C-Cu")]) and np.isfinite(whole.pair_closest[0, names.index("Cu-Cu")])
    shortest = frame_table.closest_pairs(whole, 3.0)
    assert set(shortest) == {"C-C", "C-H", "C-O", "Cu-Cu", "H-H", "H-O"}
    assert shortest == stats.closest_pairs([_frame(a) for a in cu + ethanol], 3.0)

    with np.load(io.BytesIO(whole.to_bytes())) as arrays:  # as an older mlff stored it
        old = {name: arrays[name] for name in arrays.files if name != "pair_closest"}
    buffer = io.BytesIO()
    np.savez(buffer, **old)
    stored = frame_table.FrameTable.from_bytes(buffer.getvalue())
    assert stored is not None and np.isnan(stored.pair_closest).all()
    np.testing.assert_array_equal(stored.edges, whole.edges)  # the rest is still read
    assert frame_table.closest_pairs(stored, 3.0) is None


def _message(frames, **options):
    with pytest.raises(DataValidationError) as error:
        validate_frames(frames, **options)
    return str(error.value)


def test_checks_on_the_table_stop_at_the_frame_the_pass_stops_at(store, tmp_path):
    frames = StoreFrames(store)
    listed = list(frames)
    assert frames.frame_table() is not None
    validate_frames(frames, ["C", "Cu", "H", "O"], min_distance=0.5)  # as converted: nothing to say
    for options in (dict(species=["Cu"]),  # ethanol's elements are not the model's
                    dict(species=["C", "Cu", "H", "O"], min_distance=2.0)):  # stricter than at conversion
        message = _message(frames, **options)
        assert message == _message(listed, **options)
        assert "data.db:" in message and "(" in message  # names the record and its original source
    # frames without forces, converted with --no-forces: a run that fits forces names the first
    ethanol = read(DATA / "ethanol_xtb.extxyz", ":")[:4]
    for k, atoms in enumerate(ethanol):
        results = {"energy": atoms.get_potential_energy()}
        if k != 2:
            results["forces"] = atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, **results)
    write(tmp_path / "some.extxyz", ethanol)
    convert([tmp_path / "some.extxyz"], tmp_path / "some.db", need_forces=False)
    some = StoreFrames(tmp_path / "some.db")
    assert _message(some, need_forces=True) == _message(list(some), need_forces=True)
    assert "some.db:2" in _message(some, need_forces=True)
    validate_frames(some, need_forces=False)


def test_stale_or_missing_table_falls_back_to_the_passes(store):
    listed = list(StoreFrames(store))
    with connect(store) as db:  # another tool adds a row: the table no longer describes the file
        db.write(listed[0].atoms)
    assert read_table(store) is None and StoreFrames(store).frame_table() is None
    assert describe(StoreFrames(store))["frames"] == len(listed) + 1
    connection = sqlite3.connect(store)
    with connection:
        connection.execute("DELETE FROM systems WHERE id = (SELECT MAX(id) FROM systems)")
    connection.close()
    assert read_table(store) is not None  # consistent again
    connection = sqlite3.connect(store)
    with connection:  # a dataset converted before tables were stored
        connection.execute("DROP TABLE mlff_frame_table")
    connection.close()
    frames = StoreFrames(store)
    assert frames.frame_table() is None
    _assert_same_summary(describe(frames), describe(listed))
    assert stats.average_num_neighbors(frames, 5.0) == stats.average_num_neighbors(listed, 5.0)


def test_preparing_a_run_reads_no_frame(store, monkeypatch):
    """preload: false on a converted dataset: splits, checks, statistics, sizes and fingerprints
    all come from the table; the frames are read only when their batch is drawn."""
    from mlff.train.config import TrainConfig
    from mlff.train.prepare import prepare_data

    reads = []
    monkeypatch.setattr(StoreFrames, "__getitem__", lambda self, index: reads.append(index))
    monkeypatch.setattr(StoreFrames, "__iter__", lambda self: reads.append("iter") or iter(()))
    config = TrainConfig(train_file=str(store), preload=False, valid_fraction=0.2, test_fraction=0.2,
                         model={"num_features": 8, "num_layers": 1, "r_cut": 4.0, "pair_repulsion_radii": "data"})
    data = prepare_data(config, None, None, lambda message: None)
    assert reads == []
    assert data.summary["train"]["frames"] + data.summary["valid"]["frames"] + data.summary["test"]["frames"] == 18
    assert len(data.split_fingerprints["train"]) == len(data.train_sizes) == data.summary["train"]["frames"]
    assert data.model_config.avg_num_neighbors > 1.0 and data.scale > 0.1
    assert data.model_config.pair_repulsion_radii  # from the table's pair column: Cu-Cu or C-H
    assert set(data.model_config.pair_repulsion_radii) <= {"Cu-Cu", "C-H", "C-C", "C-O", "H-O", "H-H"}


def test_an_element_only_in_held_out_frames_is_named_from_the_table(tmp_path):
    from mlff.train.config import TrainConfig
    from mlff.train.prepare import prepare_data

    cu = read(DATA / "cu_emt.extxyz", ":")[:6]
    mixed = read(DATA / "cu_emt.extxyz", ":")[6:9] + read(DATA / "ethanol_xtb.extxyz", ":")[:2]
    write(tmp_path / "cu.extxyz", cu)
    write(tmp_path / "mixed.extxyz", mixed)
    convert([tmp_path / "cu.extxyz"], tmp_path / "train.db")
    convert([tmp_path / "mixed.extxyz"], tmp_path / "valid.db")
    messages = []
    for preload in (True, False):  # the frames in memory (a pass), and the table
        config = TrainConfig(train_file=str(tmp_path / "train.db"), valid_file=str(tmp_path / "valid.db"),
                             preload=preload, test_fraction=0.0)
        with pytest.raises(DataValidationError, match="occur only in the validation or test data") as error:
            prepare_data(config, None, None, lambda message: None)
        messages.append(str(error.value))
    assert messages[0] == messages[1] and "valid.db:3" in messages[1] and "['C', 'H', 'O']" in messages[1]


def test_label_counts_come_without_graphs(store):
    """Validation's loss normalisers of frames read when drawn: from the table, or one pass over
    the labels; the same as counting the built items."""
    from mlff.data.dataset import LazyAtomicData
    from mlff.train.loss import batch_counts

    frames = StoreFrames(store)
    lazy = LazyAtomicData(frames, ["C", "Cu", "H", "O"], 4.0)
    want = batch_counts([lazy[i] for i in range(len(lazy))])
    assert want["stress_components"] > 0 and want["dipole_components"] > 0 and want["force_components"] > 0
    assert frames.frame_table() is not None and lazy.label_counts() == want
    assert LazyAtomicData(list(frames), ["C", "Cu", "H", "O"], 4.0).label_counts() == want
