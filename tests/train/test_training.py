"""End-to-end training through the CLI: learning, kill -9 and resume, data parallelism, evaluate."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mlff
from mlff.testing import run_cli
from mlff.cli.main import main as mlff_main



def _rows(run_dir):
    with open(Path(run_dir) / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def _train(config, extra=()):
    res = run_cli(["train", config, *extra])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_training_lowers_force_error_and_deploys(tmp_path, make_config, cu_files):
    config = make_config(tmp_path / "cu.yaml", max_epochs=8)
    _train(config)
    run = tmp_path / "run"
    rows = _rows(run)
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    first, best = float(rows[0]["forces_mae"]), min(float(r["forces_mae"]) for r in rows)
    # measured here: 280 meV/Å after epoch 1, 128 meV/Å after epoch 8 (40 frames, 8 features)
    assert best < 160.0 and best < 0.6 * first
    for name in ("best.pt", "last.pt", "model.pt", "dataset_summary.json", "training_summary.json"):
        assert (run / name).exists(), name
    summary = json.loads((run / "dataset_summary.json").read_text())
    assert summary["train"]["frames"] == 40 and summary["species"] == ["Cu"]
    meta = mlff.read_metadata(run / "model.pt")
    assert meta.species == ["Cu"] and meta.r_cut == 4.0

    # the deployed file reproduces the best epoch's validation metrics
    out = tmp_path / "eval.json"
    assert mlff_main(["evaluate", str(run / "model.pt"), str(cu_files[1]), "--json", str(out),
                      "--plots", str(tmp_path / "plots")]) == 0
    metrics = json.loads(out.read_text())
    best_row = rows[json.loads((run / "training_summary.json").read_text())["best_epoch"] - 1]
    for key in ("energy_mae", "forces_mae", "stress_mae"):
        assert metrics[key] == pytest.approx(float(best_row[key]), rel=1e-6), key
    for name in ("energy", "forces", "stress"):
        assert (tmp_path / "plots" / f"parity_{name}.png").stat().st_size > 1000

    # mlff deploy of the checkpoint gives the same model
    assert mlff_main(["deploy", str(run / "best.pt"), "-o", str(tmp_path / "again.pt")]) == 0
    assert mlff.read_metadata(tmp_path / "again.pt").config == meta.config


def test_kill_and_resume_gives_the_uninterrupted_result(tmp_path, make_config, cu_files, env):
    (tmp_path / "a").mkdir()
    straight = make_config(tmp_path / "a" / "cu.yaml", max_epochs=4)
    _train(straight)

    (tmp_path / "b").mkdir()
    killed = make_config(tmp_path / "b" / "cu.yaml", max_epochs=4, checkpoint_every=3)
    cmd = [sys.executable, "-m", "mlff.cli.main", "train", str(killed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    last = tmp_path / "b" / "run" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and len(_rows(tmp_path / "b" / "run")) >= 1:
            time.sleep(0.3)  # now mid-way through epoch 2, after a step checkpoint or two
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(_rows(tmp_path / "b" / "run")) < 4
    _train(killed)  # the same command resumes

    a, b = _rows(tmp_path / "a" / "run"), _rows(tmp_path / "b" / "run")
    assert [r["epoch"] for r in b] == ["1", "2", "3", "4"]
    for ra, rb in zip(a, b):
        for key in ("val_loss", "train_loss", "energy_mae", "forces_mae", "stress_mae", "lr"):
            assert float(rb[key]) == pytest.approx(float(ra[key]), rel=1e-9), (ra["epoch"], key)


def test_resume_refuses_a_changed_config(tmp_path, make_config, cu_files):
    config = make_config(tmp_path / "cu.yaml", max_epochs=1)
    _train(config)
    make_config(tmp_path / "cu.yaml", max_epochs=1, learning_rate=0.5)
    res = run_cli(["train", config])
    assert res.returncode != 0 and "different options ['learning_rate']" in res.stderr
    assert "learning_rate: 0.01 in the run, 0.5 now" in res.stderr


@pytest.fixture(scope="module")
def one_process_rows(tmp_path_factory, session_config):
    """The metrics of the one-process run both DDP runs must reproduce."""
    folder = tmp_path_factory.mktemp("one")
    _train(session_config(folder / "cu.yaml", max_epochs=2, batch_size=6))
    return _rows(folder / "run")


@pytest.mark.parametrize("preload", [True, False])
def test_two_process_ddp_matches_one_process(tmp_path, make_config, cu_files, env, preload, one_process_rows):
    """Also from a converted dataset read when drawn (preload: false), where each rank builds the
    graphs of its own structures only."""
    from mlff.data.store import convert

    (tmp_path / "two").mkdir()
    extra = {}
    if not preload:
        convert([cu_files[0]], tmp_path / "train.db")
        extra = {"train_file": str(tmp_path / "train.db"), "preload": False}
    two = make_config(tmp_path / "two" / "cu.yaml", max_epochs=2, batch_size=6, **extra)
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "mlff.cli.train", str(two)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    a, b = one_process_rows, _rows(tmp_path / "two" / "run")
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        for key in ("val_loss", "energy_mae", "forces_mae", "stress_mae"):
            assert float(rb[key]) == pytest.approx(float(ra[key]), rel=1e-6), key


def test_dipole_training_on_dft_water(tmp_path):
    """The dipole head learns PBE dipoles of water (datasets/water_pyscf.extxyz)."""
    from pathlib import Path as _Path

    import yaml

    data = _Path(__file__).resolve().parents[2] / "datasets" / "water_pyscf.extxyz"
    config = tmp_path / "water.yaml"
    config.write_text(yaml.safe_dump({
        "train_file": str(data), "valid_fraction": 0.2, "seed": 0,
        "model": {"preset": "small", "r_cut": 3.0, "num_features": 8, "radial_hidden": 16, "dtype": "float64"},
        "max_epochs": 12, "batch_size": 4, "learning_rate": 0.01, "dipole_weight": 100.0,
        "output_dir": str(tmp_path / "run"), "progress": False, "tensorboard": "off",
    }))
    _train(config)
    rows = _rows(tmp_path / "run")
    first, best = float(rows[0]["dipole_mae"]), min(float(r["dipole_mae"]) for r in rows)
    # measured here: 18.4 me Å after epoch 1, 2.5 me Å after 12 epochs (dipoles are ~ 400 me Å)
    assert best < 0.4 * first and best < 5.0
    meta = mlff.read_metadata(tmp_path / "run" / "model.pt")
    assert meta.outputs == ["dipole"] and meta.config["dipole"] is True
    out = tmp_path / "eval.json"
    assert mlff_main(["evaluate", str(tmp_path / "run" / "model.pt"), str(data), "--json", str(out), "--no-plots"]) == 0
    assert "dipole_mae" in json.loads(out.read_text())


def test_checkpoint_write_failure_keeps_the_previous_one(tmp_path, monkeypatch):
    """A full disk while writing a checkpoint: a clear error, the previous checkpoint intact and
    loadable, no temporary file left behind."""
    import errno

    import torch

    from mlff.train.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, path)
    real_save = torch.save

    def full_disk(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"cannot write checkpoint .*No space left.*previous last.pt is intact"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_unwritable_output_dir_is_a_clear_error(tmp_path):
    from mlff.train.checkpoint import save_checkpoint

    missing = tmp_path / "gone" / "last.pt"  # its folder does not exist (removed under a running job)
    with pytest.raises(OSError, match="cannot write checkpoint .*choose another output_dir"):
        save_checkpoint({"epoch": 1}, missing)


def test_a_test_split_is_held_out_and_scored(tmp_path, make_config, cu_files):
    """test_fraction holds frames out of training and validation, after the validation split (which
    stays as it was); the deployed model scores them once, and they are written for mlff evaluate."""
    from mlff.train import load_config, train
    from mlff.train.prepare import load_datasets

    options = dict(valid_file=None, valid_fraction=0.2, max_epochs=2)
    plain = load_config(make_config(tmp_path / "plain.yaml", test_fraction=0.0, **options))
    held = load_config(make_config(tmp_path / "cu.yaml", test_fraction=0.25, **options))
    train_0, valid_0, test_0 = load_datasets(plain)
    train_1, valid_1, test_1 = load_datasets(held)
    assert test_0 == [] and [f.source for f in valid_1] == [f.source for f in valid_0]
    assert len(valid_1) == 8 and len(test_1) == 8 and len(train_1) == 24
    assert not {f.source for f in test_1} & {f.source for f in train_1 + valid_1}

    result = train(held)
    summary = json.loads((result.output_dir / "training_summary.json").read_text())
    assert summary["test_frames"] == 8
    assert json.loads((result.output_dir / "dataset_summary.json").read_text())["test"]["frames"] == 8
    out = tmp_path / "test_eval.json"
    assert mlff_main(["evaluate", str(result.model_path), str(result.output_dir / "test.extxyz"), "--json", str(out),
                      "--plots", str(tmp_path / "plots")]) == 0
    scored = json.loads(out.read_text())
    assert scored["frames"] == 8
    for key in ("energy_mae", "forces_mae", "stress_mae"):
        assert scored[key] == pytest.approx(summary["test_metrics"][key], rel=1e-6), key
    # evaluate knows the run's split: its test frames are held out, the training file is not
    assert scored["seen_in_run"] == {"train": 0, "valid": 0}
    files = [held.train_file] if isinstance(held.train_file, str) else held.train_file
    assert mlff_main(["evaluate", str(result.model_path), *files, "--json", str(out), "--no-plots"]) == 0
    assert json.loads(out.read_text())["seen_in_run"] == {"train": 24, "valid": 8}
