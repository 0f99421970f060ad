"""Converted datasets (mlff data convert -> one ASE database): the frames come back exactly, bad
records are named and leave no file, other tools' databases and newer formats are handled, and a
run trains from the database as from the original file."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.db import connect
from ase.io import read, write

from mlff.data.readers import LabelKeys, read_frames
from mlff.data.store import STORE_VERSION, convert, read_store, store_metadata
from mlff.testing import run_cli

DATA = Path(__file__).resolve().parents[2] / "datasets"


def _slice(tmp_path):
    """Two input files: Cu EMT frames with stress (and a config_type), ethanol molecules without."""
    cu = read(DATA / "cu_emt.extxyz", ":")[::40]
    for atoms in cu[:3]:
        atoms.info["config_type"] = "rattled"
    ethanol = read(DATA / "ethanol_xtb.extxyz", ":")[:5]
    write(tmp_path / "cu.extxyz", cu)
    write(tmp_path / "ethanol.extxyz", ethanol)
    return [tmp_path / "cu.extxyz", tmp_path / "ethanol.extxyz"]


def _assert_same_frames(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert (a.atoms.numbers == b.atoms.numbers).all() and (a.atoms.pbc == b.atoms.pbc).all()
        np.testing.assert_array_equal(a.atoms.positions, b.atoms.positions)
        np.testing.assert_array_equal(a.atoms.cell.array, b.atoms.cell.array)
        assert a.energy == b.energy
        np.testing.assert_array_equal(a.forces, b.forces)
        if b.stress is None:
            assert a.stress is None
        else:
            np.testing.assert_allclose(a.stress, b.stress, rtol=0, atol=1e-15)  # Voigt and back
        assert a.atoms.info.get("config_type") == b.atoms.info.get("config_type")
        if b.dipole is None:
            assert a.dipole is None
        else:
            np.testing.assert_array_equal(a.dipole, b.dipole)


def test_round_trip_is_exact_and_names_the_original_records(tmp_path):
    inputs = _slice(tmp_path)
    summary = convert(inputs, tmp_path / "data.db", workers=2)
    want = read_frames([str(p) for p in inputs])
    got = read_frames(str(tmp_path / "data.db"))
    _assert_same_frames(got, want)
    assert want[-1].dipole is not None and want[0].stress is not None  # both kinds of label travel
    assert got[0].source == f"{tmp_path / 'data.db'}:0 ({inputs[0]}:0)"
    assert got[-1].source.endswith(f"({inputs[1]}:4)")
    assert summary["frames"] == len(want) and summary["frames_with_stress"] == sum(f.stress is not None for f in want)
    metadata = store_metadata(tmp_path / "data.db")
    assert metadata["mlff_store"] == STORE_VERSION and metadata["summary"]["atoms"] == summary["atoms"]
    assert not (tmp_path / "data.db.partial").exists()


def test_a_bad_record_is_named_and_leaves_no_file(tmp_path):
    inputs = _slice(tmp_path)
    frames = read(inputs[0], ":")
    frames[2].calc.results["forces"][1, 0] = np.nan
    write(tmp_path / "bad.extxyz", frames)
    with pytest.raises(ValueError, match=rf"{tmp_path / 'bad.extxyz'}:2: forces contains NaN"):
        convert([inputs[1], tmp_path / "bad.extxyz"], tmp_path / "out.db", workers=2)
    assert not (tmp_path / "out.db").exists() and not (tmp_path / "out.db.partial").exists()


def test_existing_output_needs_overwrite(tmp_path):
    inputs = _slice(tmp_path)
    convert(inputs[:1], tmp_path / "data.db")
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        convert(inputs, tmp_path / "data.db")
    assert convert(inputs, tmp_path / "data.db", overwrite=True)["frames"] == len(read_frames([str(p) for p in inputs]))


def test_a_newer_format_is_refused(tmp_path):
    inputs = _slice(tmp_path)
    convert(inputs[:1], tmp_path / "data.db")
    db = connect(tmp_path / "data.db")
    db.metadata = dict(db.metadata, mlff_store=STORE_VERSION + 1, written_by="mlff 9.0")
    with pytest.raises(ValueError, match=rf"written by mlff 9.0 in dataset format {STORE_VERSION + 1}.*upgrade mlff"):
        read_frames(str(tmp_path / "data.db"))


def test_another_tools_database_is_read_with_the_callers_keys(tmp_path):
    frames = read(DATA / "cu_emt.extxyz", ":")[:4]
    with connect(tmp_path / "theirs.db") as db:
        for atoms in frames:
            plain = atoms.copy()
            plain.calc = None
            db.write(plain, REF_energy=atoms.get_potential_energy(), data={"REF_forces": atoms.get_forces()})
    got = read_store(tmp_path / "theirs.db", LabelKeys(energy_key="REF_energy", forces_key="REF_forces"))
    assert [f.energy for f in got] == [a.get_potential_energy() for a in frames]
    np.testing.assert_array_equal(got[3].forces, frames[3].get_forces())
    assert got[1].source == f"{tmp_path / 'theirs.db'}:1"


def test_not_a_database(tmp_path):
    (tmp_path / "junk.db").write_text("not sqlite")
    with pytest.raises(ValueError, match="could not open .* as an ASE database"):
        read_frames(str(tmp_path / "junk.db"))


def test_cli_converts_and_reports(tmp_path):
    inputs = _slice(tmp_path)
    out = tmp_path / "data.db"
    res = subprocess.run([sys.executable, "-m", "mlff.cli.main", "data", "convert", *map(str, inputs), "-o", str(out),
                          "--workers", "2"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"{out}: {len(read_frames([str(p) for p in inputs]))} frames" in res.stdout and "with stress" in res.stdout
    again = run_cli(["data", "convert", inputs[0], "-o", out])
    assert again.returncode == 1 and "exists: pass --overwrite" in again.stderr


@pytest.mark.parametrize("workers", [0, 2])
def test_lazy_data_and_prefetcher_give_the_same_batches(tmp_path, workers):
    """preload: false: a StoreFrames view, graphs built when indexed, the next batches prefetched
    (by a thread, or by DataLoader worker processes); the same items as in-memory data, also when
    an epoch resumes in the middle or a batch is skipped."""
    import torch

    from mlff.data.dataset import LazyAtomicData, Prefetcher, epoch_batches, to_atomic_data
    from mlff.data.store import StoreFrames

    inputs = _slice(tmp_path)
    convert(inputs[:1], tmp_path / "data.db")
    frames = StoreFrames(tmp_path / "data.db").subset([5, 0, 3, 7, 2, 1])
    eager = to_atomic_data(read_frames(str(tmp_path / "data.db")), ["Cu"], 4.0)
    eager = [eager[i] for i in (5, 0, 3, 7, 2, 1)]
    lazy = LazyAtomicData(frames, ["Cu"], 4.0)
    batches = epoch_batches(len(lazy), 2, seed=0, epoch=1)
    assert len(batches) == 3
    for steps in ([0, 1, 2], [1, 2], [0, 2]):  # a whole epoch, one resumed at its second batch, a jump
        prefetch = Prefetcher(lazy, batches, workers=workers)
        try:
            for k in steps:
                got, want = prefetch.take(k), [eager[i] for i in batches[k]]
                assert len(got) == len(want)
                for a, b in zip(got, want):
                    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
        finally:
            prefetch.close()


def test_store_frames_iterate_as_they_index(tmp_path):
    from mlff.data.store import StoreFrames

    convert(_slice(tmp_path), tmp_path / "data.db")
    frames = StoreFrames(tmp_path / "data.db")
    for view in (frames, frames.subset([1, 4, 5, 11]), frames.subset([6, 2, 9]), frames[3:7]):
        assert [f.source for f in view] == [view[k].source for k in range(len(view))]
        _assert_same_frames(list(view), [view[k] for k in range(len(view))])


def test_many_files_keep_their_order(tmp_path):
    """More input files than the window read ahead (2 per worker): rows still follow the inputs."""
    cu = read(DATA / "cu_emt.extxyz", ":")[:10]
    inputs = []
    for k in range(5):
        inputs.append(tmp_path / f"part{k}.extxyz")
        write(inputs[-1], cu[2 * k:2 * k + 2])
    summary = convert(inputs, tmp_path / "data.db", workers=1)
    got = read_frames(str(tmp_path / "data.db"))
    assert summary["frames"] == 10
    assert [f.source.split(" (")[1] for f in got] == [f"{p}:{i})" for p in inputs for i in (0, 1)]
    _assert_same_frames(got, read_frames([str(p) for p in inputs]))
