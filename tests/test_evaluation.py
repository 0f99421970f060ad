"""The error breakdown of `mlff evaluate`: the low-energy tail and the structure families, with the
energy's signed bias, which mean errors hide."""

import json

import numpy as np
import pytest
from ase.build import bulk

from mlff.cli.main import main as mlff_main
from mlff.data.readers import Frame
from mlff.evaluation import error_breakdown, relative_energies
from mlff.testing import run_cli


def _frames():
    """20 Si-like frames of 2 atoms and 10 of 4 (energies per atom from -5.4 to -4.0), each with a
    config_type."""
    frames = []
    rng = np.random.default_rng(0)
    for k in range(30):
        atoms = bulk("Si", "diamond", a=5.43).repeat((1, 1, 1 + (k >= 20)))
        per_atom = -5.4 + 1.4 * k / 29
        energy = per_atom * len(atoms)
        atoms.info["config_type"] = "ground" if k < 3 else ("md" if k < 20 else "large")
        frames.append(Frame(atoms, energy, rng.normal(0, 1, (len(atoms), 3)), None, f"x:{k}"))
    return frames


def test_relative_energies_order_the_frames_and_ignore_reference_energies():
    frames = _frames()
    relative = relative_energies(frames)
    assert np.all(np.diff(relative) > 0)  # the frames were made in increasing energy per atom
    # another element in some frames, and a per-element reference energy added (another DFT code's
    # atoms): the relative energies do not change
    for k in (3, 10, 17, 24):
        frames[k].atoms.numbers[0] = 6
    before = relative_energies(frames)
    shifted = [Frame(f.atoms, f.energy + 7.0 * list(f.atoms.numbers).count(6) - 1.5 * len(f.atoms), f.forces,
                     None, f.source) for f in frames]
    np.testing.assert_allclose(relative_energies(shifted), before, atol=1e-12)


def test_a_bias_on_the_lowest_frames_shows_in_the_tail_and_its_family():
    """Like the silicon case: accurate on average, the ground states 300 meV/atom too high."""
    frames = _frames()
    predictions = [{"energy": f.energy + (0.3 * len(f.atoms) if k < 3 else 0.002 * (-1) ** k * len(f.atoms)),
                    "forces": f.forces, "stress": None} for k, f in enumerate(frames)]
    out = error_breakdown(frames, predictions, tail=0.1)
    assert out["tail"]["frames"] == 3
    assert out["tail"]["energy_mae"] == pytest.approx(300.0, rel=1e-12)
    assert out["tail"]["energy_mean_error"] == pytest.approx(300.0, rel=1e-12)
    assert out["all"]["energy_mae"] < 35.0  # the mean hides it
    assert out["families"]["ground"]["energy_mean_error"] == pytest.approx(300.0)
    assert out["families"]["md"]["frames"] == 17 and out["families"]["md"]["energy_mae"] == pytest.approx(2.0, rel=1e-12)
    with pytest.raises(ValueError, match="tail must be a fraction"):
        error_breakdown(frames, predictions, tail=0.0)


def test_errors_are_float64_where_total_energies_are_large():
    """A large cell's total energy (here -1.2e5 eV) in float32 has a spacing of 8 meV: errors of
    0.05 meV/atom must still come out to float64 rounding (1e-11 eV here), and a one-frame tail's bias equals its MAE."""
    atoms = bulk("Si", "diamond", a=5.43).repeat((1, 1, 1))
    frames, predictions = [], []
    for k, error in enumerate((5e-5, -2e-5, 3e-5)):
        frames.append(Frame(atoms.copy(), -123456.789 - k, np.zeros((2, 3)), None, f"x:{k}"))
        predictions.append({"energy": frames[-1].energy + 2 * error, "forces": np.full((2, 3), 1e-7), "stress": None})
    out = error_breakdown(frames, predictions, tail=0.3)
    assert out["all"]["energy_mae"] == pytest.approx(1e3 * (5e-5 + 2e-5 + 3e-5) / 3, rel=1e-6)
    assert out["all"]["forces_mae"] == pytest.approx(1e-4, rel=1e-8)
    assert out["tail"]["frames"] == 1 and out["tail"]["energy_mae"] == pytest.approx(0.03, rel=1e-6)
    assert abs(out["tail"]["energy_mean_error"]) == pytest.approx(out["tail"]["energy_mae"], rel=1e-12)


def test_evaluate_reports_the_tail_and_families(tmp_path, model_file, capsys):
    from ase.io import write

    from mlff.testing import calculator_results

    frames = []
    for k in range(10):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.02 * (k + 1), seed=k)
        ref = calculator_results(atoms, model_file)
        atoms.info.update(energy=float(ref["energy"]) + 0.01 * k, config_type="hot" if k > 4 else "cold")
        atoms.arrays["forces"] = ref["forces"]
        frames.append(atoms)
    write(tmp_path / "data.extxyz", frames)
    assert mlff_main(["evaluate", str(model_file), str(tmp_path / "data.extxyz"), "--json", "--no-plots",
                      "--tail", "0.2"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["tail"]["frames"] == 2 and document["tail"]["fraction"] == 0.2
    assert set(document["families"]) == {"cold", "hot"}
    # the model predicts the labels minus 0.01 k eV: a negative bias growing with k
    assert document["families"]["hot"]["energy_mean_error"] < document["families"]["cold"]["energy_mean_error"] < 0
    assert mlff_main(["evaluate", str(model_file), str(tmp_path / "data.extxyz"), "--no-plots"]) == 0
    table = capsys.readouterr().out
    assert "lowest-energy 10 %" in table and "config_type hot" in table and "mean error" in table



def test_evaluation_shows_progress_on_a_terminal_only(tmp_path):
    """mlff evaluate of >= 100 frames draws a progress bar on a terminal and stays quiet in a pipe
    (a log file)."""
    import os
    import sys
    from pathlib import Path

    from ase.io import read, write
    from terminal import stderr_on_a_terminal

    root = Path(__file__).resolve().parents[1]
    write(tmp_path / "frames.extxyz", read(root / "datasets" / "cu_emt.extxyz", index=":100"))  # the bar's threshold
    cmd = [sys.executable, "-m", "mlff.cli.main", "evaluate", str(root / "examples" / "potentials" / "cu" / "model.pt"),
           str(tmp_path / "frames.extxyz"), "--plots", str(tmp_path / "plots")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    piped = run_cli(cmd[3:])  # stderr is not a terminal
    assert piped.returncode == 0 and "evaluating" not in piped.stderr
    shown = stderr_on_a_terminal(cmd, env)
    assert b"evaluating" in shown and b"frame/s" in shown
