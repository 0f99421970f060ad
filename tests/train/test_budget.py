"""Training under a wall-time budget (time_limit) and stopped by SIGTERM: checkpoint, deploy or exit
with the way to resume, and resume with nothing lost."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mlff

from mlff.testing import run_cli
from mlff.train import TrainConfig
from mlff.train.budget import format_duration, parse_duration


def _rows(run_dir):
    with open(Path(run_dir) / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def _train(config):
    return run_cli(["train", config])


@pytest.mark.parametrize("text, seconds", [("20m", 1200), ("11h30m", 41400), ("1d 2h", 93600), ("90s", 90),
                                           ("1.5h", 5400), (45, 45), ("2h 5m 3s", 7503)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "10x", "5m and more", "0m", -3, ""])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="time_limit"):
        parse_duration(text)


def test_time_limit_is_checked_with_the_config(tmp_path):
    with pytest.raises(ValueError, match="is not a duration"):
        TrainConfig(train_file="x.extxyz", time_limit="an hour")
    assert format_duration(41400) == "11h30m00s" and format_duration(75) == "1m15s"


def test_the_budget_stops_before_a_step_that_would_not_fit():
    """The stopping rule with an injected clock: a step is taken only if it, one validation,
    writing the model (3 s) and a margin still fit in time_limit; earlier runs' time counts."""
    from mlff.train.budget import TimeBudget

    clock = {"now": 50.0}
    budget = TimeBudget(100.0, used_before=30.0, clock=lambda: clock["now"])
    budget.start()  # this run's time counts from 50 s on the clock
    # the margin is min(5 s, 2 % of the limit) = 2 s; a step (2 s, the slowest seen) + validation (4 s)
    # + writing (3 s) + margin (2 s) = 11 s must be left
    for used, fits in ((88.9, True), (89.1, False)):
        clock["now"] = 50.0 + used - 30.0
        assert budget.seconds_used() == pytest.approx(used)
        assert budget.step_fits([1.0, 2.0], 4.0, valid_batches=2) is fits, used
    # before any validation: estimated as a step per validation batch
    clock["now"] = 50.0 + (100.0 - 2.0 - 2 * 2.0 - 3.0 - 2.0 - 0.1) - 30.0
    assert budget.step_fits([1.0, 2.0], None, valid_batches=2)
    clock["now"] += 0.2
    assert not budget.step_fits([1.0, 2.0], None, valid_batches=2)
    assert budget.fraction_used() == pytest.approx(0.891)
    assert TimeBudget(None).step_fits([1e9], 1e9, 1) and TimeBudget(None).fraction_used() == 0.0


def test_time_limit_stops_deploys_and_resumes(tmp_path, make_config):
    config = make_config(tmp_path / "cu.yaml", max_epochs=500, time_limit="6s")
    res = _train(config)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "time_limit 0m06s reached" in res.stdout + res.stderr
    run = tmp_path / "run"
    summary = json.loads((run / "training_summary.json").read_text())
    # where it stops is tested with a fake clock below (wall time depends on the machine's load)
    assert summary["stopped_by"] == "time_limit"
    assert (run / "model.pt").exists() and summary["best_epoch"] >= 1
    first_epochs = summary["epochs"]

    # the same budget again: it is used up, nothing more is trained
    res = _train(config)
    assert res.returncode == 0 and json.loads((run / "training_summary.json").read_text())["epochs"] == first_epochs

    # a larger budget continues where the run stopped, and the budget counts both runs; the
    # budget is ample and max_epochs ends the run one epoch later, so that nothing here depends
    # on how fast or loaded the machine is
    first_seconds = json.loads((run / "training_summary.json").read_text())["seconds_used"]
    config = make_config(tmp_path / "cu.yaml", max_epochs=first_epochs + 1, time_limit="1h")
    res = _train(config)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((run / "training_summary.json").read_text())
    assert summary["epochs"] == first_epochs + 1 and summary["stopped_by"] != "time_limit"
    assert summary["seconds_used"] > first_seconds
    assert [int(r["epoch"]) for r in _rows(run)] == list(range(1, summary["epochs"] + 1))


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def test_sigterm_checkpoints_and_says_how_to_resume(tmp_path, make_config, env):
    config = make_config(tmp_path / "cu.yaml", max_epochs=5)
    proc = subprocess.Popen([sys.executable, "-m", "mlff.cli.main", "train", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    run = tmp_path / "run"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (run / "metrics.csv").exists() and len(_rows(run)) >= 1:
            time.sleep(0.2)  # mid-way through epoch 2
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before the signal"
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-2000:] + err[-2000:]
    assert "received SIGTERM" in out + err and "Resume with the same command" in err
    assert (run / "last.pt").exists() and len(_rows(run)) < 5
    # every stop leaves a model of the best weights and a strict-JSON summary
    assert mlff.read_metadata(run / "model.pt").species == ["Cu"]
    summary = json.loads((run / "training_summary.json").read_text(), parse_constant=_no_constant)
    assert summary["stopped_by"] == "signal"

    res = _train(config)  # resumes and finishes
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert [int(r["epoch"]) for r in _rows(run)] == [1, 2, 3, 4, 5]


def test_batches_by_atom_count_train(tmp_path, make_config):
    config = make_config(tmp_path / "cu.yaml", max_epochs=2, batch_atoms=100)
    res = _train(config)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert [int(r["epoch"]) for r in _rows(tmp_path / "run")] == [1, 2]


def test_final_stage_switches_weights_and_learning_rate(tmp_path, make_config):
    config = make_config(tmp_path / "cu.yaml", max_epochs=4, final_stage=0.5, final_energy_weight=50.0,
                         final_learning_rate=0.001)
    res = _train(config)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "final stage from epoch 3: loss weights {'energy': 50.0" in res.stdout + res.stderr
    rows = _rows(tmp_path / "run")
    assert float(rows[2]["lr"]) == pytest.approx(0.001) and float(rows[1]["lr"]) > 0.001
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["best_epoch"] >= 3  # the best model is chosen within the final stage


def test_a_time_limited_final_stage_starts_while_two_epochs_fit():
    """With epochs long against the budget the final stage starts while two epochs still fit, even
    before the budget's last final_stage fraction; without a time limit only the fraction counts."""
    from mlff.train.schedule import Schedule

    schedule = Schedule(TrainConfig(train_file="x.extxyz", max_epochs=1000, final_stage=0.3))
    assert not schedule.final_stage_begins(1, 0.2, seconds_left=80.0, epoch_seconds=30.0)
    assert schedule.final_stage_begins(1, 0.2, seconds_left=59.0, epoch_seconds=30.0)
    assert schedule.final_stage_begins(1, 0.7, seconds_left=1e6, epoch_seconds=1.0)
    assert not schedule.final_stage_begins(1, 0.0, seconds_left=None, epoch_seconds=30.0)
    assert not Schedule(TrainConfig(train_file="x.extxyz", final_stage=0.0)).final_stage_begins(1, 0.99, 1.0, 30.0)


def test_time_limit_mid_epoch_deploys_the_unfinished_epoch_if_better(tmp_path, make_config):
    """A time limit that stops an epoch half-way validates the weights reached; they are deployed
    if better than the best epoch, and the deployed file is the model training_summary describes."""
    from mlff.data.readers import read_frames
    from mlff.evaluation import error_metrics, predict_frames
    from mlff.train import Trainer, load_config

    trainer = Trainer(load_config(make_config(tmp_path / "cu.yaml", max_epochs=6, final_stage=0.0, time_limit="1h")))
    stop_at = 25  # global step: in the third epoch of 10 steps
    original = trainer._stop_reason
    trainer._stop_reason = lambda: "time_limit" if trainer.state.global_step >= stop_at else original()
    result = trainer.run()
    assert result.stopped_by == "time_limit" and trainer.state.epoch == 2 and trainer.state.step_in_epoch == 5
    rows = _rows(tmp_path / "run")
    best_finished = min(float(r["val_loss"]) for r in rows)
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["best_val_loss"] <= best_finished  # at least as good as the best seen
    # the partial epoch's weights validate better here (early in training), so they are the model
    assert summary["best_epoch"] == 3 and summary["best_val_loss"] < best_finished
    # the deployed file is that model: its errors on the validation frames are the summary's
    frames = read_frames(trainer.config.valid_file)
    metrics = error_metrics(frames, predict_frames(tmp_path / "run" / "model.pt", frames))
    for key in ("energy_mae", "forces_mae", "stress_mae"):
        assert metrics[key] == pytest.approx(summary["best_metrics"][key], rel=1e-6), key


def _half_cosine(start, low, fraction):
    return low + 0.5 * (start - low) * (1 + math.cos(math.pi * fraction))


def test_cosine_schedule_spans_each_stage(tmp_path, make_config):
    """scheduler: cosine anneals from learning_rate over the main stage's epochs, then again from
    final_learning_rate over the final stage's."""
    config = make_config(tmp_path / "cu.yaml", max_epochs=6, scheduler="cosine", learning_rate=0.01,
                         min_learning_rate=1e-5, final_stage=0.5, final_learning_rate=0.002)
    res = _train(config)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lrs = [float(r["lr"]) for r in _rows(tmp_path / "run")]
    expected = [_half_cosine(0.01, 1e-5, e / 3) for e in range(3)] + [_half_cosine(0.002, 1e-5, e / 3) for e in range(3)]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_cosine_schedule_follows_the_time_budget(tmp_path, make_config):
    """With a time budget shorter than max_epochs, the rate follows the seconds used instead: it is
    well under the start before the budget ends, though few of the 10000 epochs have run."""
    config = make_config(tmp_path / "cu.yaml", max_epochs=10000, scheduler="cosine", learning_rate=0.01,
                         time_limit="12s", final_stage=0.0)
    res = _train(config)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lrs = [float(r["lr"]) for r in _rows(tmp_path / "run")]
    assert len(lrs) >= 3 and lrs[0] == pytest.approx(0.01) and lrs[-1] < 0.006
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_final_stage_defaults():
    """On by default (measured in docs/benchmarks/2026-11_training_experiments.md): the last 30 %, energy weight x 20, learning
    rate / 5, the other weights unchanged; explicit values win."""
    config = TrainConfig(train_file="x.extxyz", energy_weight=2.0, stress_weight=50.0, learning_rate=0.01)
    assert config.final_stage == 0.3
    assert config.final_weights() == {"energy": 40.0, "forces": 10.0, "stress": 50.0}
    assert config.final_start_learning_rate() == pytest.approx(0.002)
    config = TrainConfig(train_file="x.extxyz", final_energy_weight=5.0, final_forces_weight=1.0,
                         final_learning_rate=0.003)
    assert config.final_weights() == {"energy": 5.0, "forces": 1.0, "stress": 100.0}
    assert config.final_start_learning_rate() == 0.003


def test_final_stage_options_are_checked():
    with pytest.raises(ValueError, match="set final_stage too"):
        TrainConfig(train_file="x.extxyz", final_stage=0.0, final_energy_weight=100.0)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        TrainConfig(train_file="x.extxyz", final_stage=1.5)


def test_resume_keeps_the_architecture_the_run_started_with(tmp_path, make_config):
    """A run started before a model default changed (here: a checkpoint written before
    `radial_species` existed, so without the key) resumes with the model it started with."""
    from mlff.train.checkpoint import load_checkpoint, save_checkpoint

    model = {"preset": "small", "r_cut": 4.0, "num_features": 8, "radial_hidden": 16, "dtype": "float64"}
    config = make_config(tmp_path / "cu.yaml", max_epochs=2, model={**model, "radial_species": False})
    assert _train(config).returncode == 0
    last = tmp_path / "run" / "last.pt"
    state = load_checkpoint(last)
    for saved in (state["model_config"], state["train_config"]["model"]):  # as an older mlff wrote them
        del saved["radial_species"]
    save_checkpoint(state, last)

    res = _train(make_config(tmp_path / "cu.yaml", max_epochs=4, model=model))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "resuming with the model the run started with: radial_species=False" in res.stdout + res.stderr
    assert json.loads((tmp_path / "run" / "training_summary.json").read_text())["epochs"] == 4
    resumed = load_checkpoint(last)
    assert resumed["model_config"]["radial_species"] is False and resumed["epoch"] == 4
