"""Frame fingerprints (mlff.data.fingerprint): the same structure read back from a file keeps its
fingerprint; another structure, another atom order or another species does not."""

from ase.build import bulk
from ase.io import read, write

from mlff.cli.evaluate import seen_line
from mlff.data.fingerprint import fingerprint, overlap, read_split, write_split


def _frames():
    frames = []
    for k in range(4):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
        atoms.rattle(0.05, seed=k)
        frames.append(atoms)
    return frames


def test_fingerprint_survives_a_file_and_tells_structures_apart(tmp_path):
    frames = _frames()
    write(tmp_path / "frames.extxyz", frames)
    back = read(tmp_path / "frames.extxyz", ":")
    assert [fingerprint(a) for a in back] == [fingerprint(a) for a in frames]
    assert len({fingerprint(a) for a in frames}) == 4
    moved, swapped, other = frames[0].copy(), frames[0].copy(), frames[0].copy()
    moved.positions[3] += [0.01, 0.0, 0.0]
    swapped.positions[[0, 1]] = swapped.positions[[1, 0]]
    other.numbers[2] = 8
    assert len({fingerprint(a) for a in (frames[0], moved, swapped, other)}) == 4


def test_split_file_beside_the_model(tmp_path):
    frames = _frames()
    assert read_split(tmp_path / "model.pt") is None  # no split file: the run's split is unknown
    prints = [fingerprint(a) for a in frames]
    write_split(tmp_path, {"train": prints[:2], "valid": prints[2:3], "test": prints[3:]})
    splits = read_split(tmp_path / "model.pt")
    seen = overlap(frames, {k: splits[k] for k in ("train", "valid")})
    assert seen == {"train": 2, "valid": 1}
    assert seen_line(seen, 4).startswith("warning: 2 of the 4 frames were training frames and 1 validation")
    assert seen_line(overlap(frames[3:], splits), 1).startswith("held out: none of the 1 frames")


def test_split_file_of_many_integer_fingerprints(tmp_path):
    """A converted dataset's fingerprints come as uint64 values, written in chunks of 65536."""
    import numpy as np

    values = np.arange(70_000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15 % 2**63)
    write_split(tmp_path, {"train": values, "valid": ["00000000000000ab"], "test": []})
    splits = read_split(tmp_path / "model.pt")
    assert splits["train"] == {f"{int(v):016x}" for v in values} and len(splits["train"]) == 70_000
    assert splits["valid"] == {"00000000000000ab"} and splits["test"] == set()
