"""Loss weights of frames: a frame's own weight (``config_weight`` in the extxyz info) times
``config_type_weights`` of its family multiplies each of its loss terms; the weights are read,
checked, stored in converted datasets, and reach the training batches (eager and lazy)."""

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.db import connect
from ase.io import read, write

from mlff.data import keys
from mlff.data.atomic_data import collate
from mlff.data.readers import LabelKeys, read_frames, write_frames
from mlff.data.store import StoreFrames, convert, read_store
from mlff.data.validate import DataValidationError
from mlff.train.config import TrainConfig
from mlff.train.loss import TERMS, weighted_loss
from mlff.train.prepare import describe_loss_weights, prepare_data


def _batch_and_outputs(seed=0):
    """Three structures (2, 3, 4 atoms) with labels (one NaN force component, one frame without
    stress or dipole) and model outputs that differ from them."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [2, 3, 4]
    n, g = sum(sizes), len(sizes)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    ref_forces = rand(n, 3)
    ref_forces[4, 1] = float("nan")
    batch = {
        keys.PTR_KEY: torch.tensor([0, 2, 5, 9]),
        keys.BATCH_KEY: torch.repeat_interleave(torch.arange(g), torch.tensor(sizes)),
        keys.REF_ENERGY_KEY: rand(g), keys.REF_FORCES_KEY: ref_forces,
        keys.CELL_KEY: torch.diag_embed(3.0 + rand(g, 3).abs()), keys.REF_STRESS_KEY: 0.01 * rand(g, 3, 3),
        keys.HAS_STRESS_KEY: torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64),
        keys.REF_DIPOLE_KEY: rand(g, 3), keys.HAS_DIPOLE_KEY: torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64),
    }
    out = {keys.ENERGY_KEY: rand(g), keys.FORCES_KEY: rand(n, 3), keys.VIRIAL_KEY: rand(g, 3, 3),
           keys.DIPOLE_KEY: rand(g, 3)}
    return batch, out


def _labels_exact_except(batch, out, k):
    """``batch`` with the labels of every frame but ``k`` set to the outputs (zero error)."""
    exact = {key: value.clone() for key, value in batch.items()}
    others = torch.arange(len(batch[keys.REF_ENERGY_KEY])) != k
    atoms = others[batch[keys.BATCH_KEY]]
    exact[keys.REF_ENERGY_KEY][others] = out[keys.ENERGY_KEY][others]
    exact[keys.REF_FORCES_KEY][atoms] = out[keys.FORCES_KEY][atoms]
    volume = torch.linalg.det(batch[keys.CELL_KEY]).abs()
    exact[keys.REF_STRESS_KEY][others] = (-out[keys.VIRIAL_KEY] / volume.view(-1, 1, 1))[others]
    exact[keys.REF_DIPOLE_KEY][others] = out[keys.DIPOLE_KEY][others]
    return exact


@pytest.mark.parametrize("kind", ["mse", "huber"])
def test_the_loss_is_linear_in_the_frame_weights(kind):
    batch, out = _batch_and_outputs()
    norms = {"energy": 3.0, "forces": 26.0, "stress": 18.0, "dipole": 6.0}
    factors = {"energy": 1.0, "forces": 10.0, "stress": 100.0, "dipole": 2.0}

    def loss(weights):
        data = dict(batch) if weights is None else {**batch, keys.LOSS_WEIGHT_KEY: torch.tensor(weights,
                                                                                             dtype=torch.float64)}
        return weighted_loss(out, data, norms, factors, TERMS, kind, delta=0.05)

    plain = loss(None)
    assert torch.isfinite(plain) and plain > 0
    assert loss([1.0, 1.0, 1.0]) == plain
    parts = [loss(list(np.eye(3)[k])) for k in range(3)]  # each frame's share alone
    for k, part in enumerate(parts):  # = the plain loss where the other frames' labels are exact
        exact = _labels_exact_except(batch, out, k)
        torch.testing.assert_close(part, weighted_loss(out, exact, norms, factors, TERMS, kind, delta=0.05),
                                   rtol=1e-14, atol=1e-300)
        assert part > 0
    weights = [2.5, 0.0, 0.3]
    torch.testing.assert_close(loss(weights), sum(w * p for w, p in zip(weights, parts)), rtol=1e-14, atol=0)
    # term by term: each frame's forces carry that frame's weight (not the first frame's)
    for term in TERMS:
        one = lambda w: weighted_loss(out, {**batch, keys.LOSS_WEIGHT_KEY: torch.tensor(w, dtype=torch.float64)},  # noqa: E731
                                      norms, factors, [term], kind, 0.05)
        torch.testing.assert_close(one(weights), sum(w * one(list(np.eye(3)[k])) for k, w in enumerate(weights)),
                                   rtol=1e-14, atol=0)


def _labelled(n=4):
    frames = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_forces()
        atoms.info["config_type"] = ["bulk", "vacancy"][k % 2]
        frames.append(atoms)
    return frames


def test_frames_read_and_write_their_weight_and_bad_weights_are_named(tmp_path):
    frames = _labelled()
    frames[1].info["config_weight"] = 3.0
    frames[2].info["my_weight"] = 0.0
    write(tmp_path / "a.extxyz", frames)
    got = read_frames(str(tmp_path / "a.extxyz"))
    assert [f.weight for f in got] == [1.0, 3.0, 1.0, 1.0]
    assert [f.weight for f in read_frames(str(tmp_path / "a.extxyz"), LabelKeys(weight_key="my_weight"))] == \
        [1.0, 1.0, 0.0, 1.0]
    write_frames(tmp_path / "b.extxyz", got)  # e.g. a run's test.extxyz keeps them
    assert [f.weight for f in read_frames(str(tmp_path / "b.extxyz"))] == [1.0, 3.0, 1.0, 1.0]
    for bad, message in ((-1.0, "is -1.0"), ("heavy", "is 'heavy', not a number"), (float("nan"), "is nan")):
        frames[3].info["config_weight"] = bad
        write(tmp_path / "bad.extxyz", frames)
        with pytest.raises(ValueError, match=f"bad.extxyz:3: config_weight {message}"):
            read_frames(str(tmp_path / "bad.extxyz"))


def test_converted_datasets_keep_the_weights(tmp_path):
    frames = _labelled(6)
    frames[1].info["config_weight"] = 3.0
    frames[4].info["config_weight"] = 0.5
    write(tmp_path / "a.extxyz", frames)
    convert([str(tmp_path / "a.extxyz")], str(tmp_path / "a.db"))
    assert [f.weight for f in read_store(tmp_path / "a.db")] == [1.0, 3.0, 1.0, 1.0, 0.5, 1.0]
    view = StoreFrames(tmp_path / "a.db").subset([4, 1, 0])
    assert view.weight_labels() == [("bulk", 0.5), ("vacancy", 3.0), ("bulk", 1.0)]
    assert [(f.atoms.info["config_type"], f.weight) for f in view] == view.weight_labels()
    frames[4].info["w"] = 7.0  # another key, named when converting
    write(tmp_path / "b.extxyz", frames)
    convert([str(tmp_path / "b.extxyz")], str(tmp_path / "b.db"), LabelKeys(weight_key="w"))
    assert [f.weight for f in read_store(tmp_path / "b.db")] == [1.0, 1.0, 1.0, 1.0, 7.0, 1.0]
    # another tool's database: its key-value pairs, read with the run's weight key
    with connect(tmp_path / "other.db") as db:
        for k, atoms in enumerate(frames[:3]):
            db.write(atoms, config_type=f"family{k % 2}", **({"config_weight": 2.0} if k == 2 else {}))
    other = StoreFrames(tmp_path / "other.db")
    assert other.weight_labels() == [("family0", 1.0), ("family1", 1.0), ("family0", 2.0)]
    assert [(f.atoms.info["config_type"], f.weight) for f in other] == other.weight_labels()


def test_config_type_weights_are_checked():
    with pytest.raises(ValueError, match=r"config_type_weights\['vacancy'\] is -2.0"):
        TrainConfig(train_file="x.extxyz", config_type_weights={"vacancy": -2.0})
    with pytest.raises(ValueError, match="maps config_type names"):
        TrainConfig(train_file="x.extxyz", config_type_weights=[4.0])
    frames = read_frames(_labelled())
    with pytest.raises(DataValidationError, match=r"names \['vacancies'\].*config_types: \['bulk', 'vacancy'\]"):
        describe_loss_weights(frames, {"vacancies": 4.0})
    with pytest.raises(DataValidationError, match="every training frame has loss weight 0"):
        describe_loss_weights(frames, {"vacancy": 0.0, "bulk": 0.0})
    assert describe_loss_weights(frames, {}) is None
    frames[0].weight = 2.0
    assert describe_loss_weights(frames, {"vacancy": 0.0}) == (
        "loss weights: config_type vacancy x0 (2 frames); 1 frames with their own weight (1-2); 2 training frames weigh 0")


@pytest.mark.parametrize("preload", [True, False])
def test_training_batches_carry_the_weights(cu_files, tmp_path, preload):
    train, valid = cu_files
    frames = read(train, ":")
    frames[0].info["config_weight"] = 2.0
    write(tmp_path / "train.extxyz", frames)
    config = TrainConfig(train_file=str(tmp_path / "train.extxyz"), valid_file=str(valid), test_fraction=0.0,
                         preload=preload, config_type_weights={"vacancy": 4.0, "surface": 0.0},
                         model={"preset": "small", "r_cut": 4.0})
    lines = []
    data = prepare_data(config, None, None, lines.append)
    assert any(line.startswith("loss weights: config_type surface x0 (6 frames); config_type vacancy x4 (5 frames)")
               for line in lines)
    family_weight = {"vacancy": 4.0, "surface": 0.0}
    for items, atoms_list in ((data.train, frames), (data.valid, read(valid, ":"))):
        want = [family_weight.get(a.info["config_type"], 1.0) * a.info.get("config_weight", 1.0) for a in atoms_list]
        got = collate([items[k] for k in range(len(items))])[keys.LOSS_WEIGHT_KEY]
        assert got.tolist() == want
    assert 0.0 in want and 4.0 in want
