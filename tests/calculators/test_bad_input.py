"""Bad structures and settings give clear errors, never NaN or a meaningless energy."""

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import CalculatorError

import mlff
from mlff.cli.main import main as mlff_main
from mlff.testing import tiny_model


def test_overlapping_atoms_are_named(model_file):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.positions[2] = atoms.positions[1]
    atoms.calc = mlff.MLFFCalculator(model_file)
    with pytest.raises(CalculatorError, match=r"atoms 1 and 2 are 0\.000 Å apart.*min_distance=0\.6"):
        atoms.get_forces()


def test_atom_close_to_its_own_image(model_file):
    atoms = Atoms("Cu", cell=[0.5, 0.5, 0.5], pbc=True)
    atoms.calc = mlff.MLFFCalculator(model_file)
    with pytest.raises(CalculatorError, match="atom 0 is 0.500 Å from its own periodic image"):
        atoms.get_potential_energy()
    atoms.calc = mlff.MLFFCalculator(model_file, min_distance=0.0)  # explicitly allowed
    assert np.isfinite(atoms.get_potential_energy())


def test_non_finite_output_stops_with_the_atoms(tmp_path):
    model = tiny_model(dtype="float32")
    model.scale_shift.set(float("inf"), [0.0, 0.0])  # stands for a float32 overflow
    path = mlff.deploy(model, tmp_path / "huge.pt")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.1, seed=0)
    atoms.calc = mlff.MLFFCalculator(path)
    with pytest.raises(CalculatorError, match="not finite"):
        atoms.get_forces()


def test_missing_gpu_is_named(model_file):
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match=r"device 'cuda:7' is not available: torch sees"):
        if count > 7:
            raise ValueError("device 'cuda:7' is not available: torch sees (skipped: 8 GPUs here)")
        mlff.MLFFCalculator(model_file, device="cuda:7")


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert mlff_main(["train", str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mlff train: error: ") and "missing.yaml" in err and "Traceback" not in err
    with pytest.raises(OSError):  # --debug: the exception itself
        mlff_main(["--debug", "train", str(tmp_path / "missing.yaml")])


def test_cli_says_what_ran_out_of_memory(tmp_path, capsys, monkeypatch):
    """A MemoryError of mlff (mlff.modelfile.memory, mlff.train.parts) is a message, not a traceback."""
    def out_of_memory(args):
        raise MemoryError("out of cuda:0 memory training on one structure at a time (...): the largest structure")

    monkeypatch.setattr("mlff.cli.train.run", out_of_memory)
    assert mlff_main(["train", str(tmp_path / "any.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mlff train: error: out of cuda:0 memory training on one structure") and "Traceback" not in err


def test_evaluate_json_to_stdout(tmp_path, model_file, capsys):
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((4, 3)))
    write(tmp_path / "data.extxyz", [atoms])
    assert mlff_main(["evaluate", str(model_file), str(tmp_path / "data.extxyz"), "--json",
                      "--plots", str(tmp_path / "plots")]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["frames"] == 1 and document["forces_mae"] > 0


def test_model_file_deleted_or_replaced_during_a_run(tmp_path):
    """The calculator holds the model in memory: the file can go away mid-run."""
    path = mlff.deploy(tiny_model(), tmp_path / "m.pt")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.calc = mlff.MLFFCalculator(path)
    before = atoms.get_potential_energy()
    (tmp_path / "m.pt").write_bytes(b"replaced by something else")
    atoms.positions[0] += 0.01
    atoms.get_forces()
    atoms.positions[0] -= 0.01
    assert atoms.get_potential_energy() == pytest.approx(before, rel=1e-12)


def test_empty_structure_is_refused(model_file):
    atoms = Atoms()
    atoms.calc = mlff.MLFFCalculator(model_file)
    with pytest.raises(ValueError, match="no atoms"):
        atoms.get_potential_energy()


def test_parity_plot_titles_carry_mae_rmse_and_units(tmp_path, monkeypatch):
    import matplotlib.figure

    from mlff.data.readers import Frame
    from mlff.evaluation import parity_plots

    from mlff.evaluation import _mathtext

    assert _mathtext("meV/Å^3") == "meV/Å$^{3}$" and _mathtext("meV/Å") == "meV/Å"  # rendered, not literal
    headers, titles = [], []
    original = matplotlib.figure.Figure.savefig

    def record(figure, *args, **kwargs):
        headers.append(figure.axes[0].get_title().splitlines()[0])
        titles.append(figure.axes[0].get_title().splitlines()[-1])
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    frames = [Frame(atoms, -4.0, np.zeros((4, 3)), None, "x:0")]
    predictions = [{"energy": -3.996, "forces": np.full((4, 3), 0.002), "stress": None}]
    parity_plots(frames, predictions, tmp_path, "cu.extxyz", "model.pt")
    assert headers == ["cu.extxyz · model.pt, 1 frame"] * 2  # the data, the model, the frame count
    assert "energy: MAE 1 meV/atom, RMSE 1 meV/atom" in titles
    assert "forces: MAE 2 meV/Å, RMSE 2 meV/Å" in titles
