"""The model on the accelerator equals the model on the CPU: energies, forces, virials (float64
to 1e-10, float32 to 1e-5 relative), symmetry, the halo protocol, model files moved between
devices, training steps, and LAMMPS with ``device cuda`` on one and two ranks."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.io import read, write

import mlff
from mlff.data import SpeciesMap, from_ase
from mlff.testing import (assert_e3_equivariant, assert_out_of_memory_handled, calculator_results, image_halo,
                          lammps_out_of_memory_report, out_of_memory_report, small_molecule, tiny_model, triclinic_cell)

TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
STRUCTURES = {"triclinic": triclinic_cell(4, repeat=(2, 1, 1)), "molecule": small_molecule(1)}


def _raw(model, atoms):
    """All outputs of one call of a loaded model file, as float64 numpy arrays."""
    data = from_ase(atoms, SpeciesMap(model.species), model.r_cut)
    out = model(data["positions"], data["edge_index"], data["edge_shift"], data["species"])
    return {key: value.detach().cpu().numpy() for key, value in out.items()}


def _assert_close(ours, reference, rtol):
    for key, ref in reference.items():
        scale = max(np.abs(ref).max(), 1e-6)
        np.testing.assert_allclose(ours[key], ref, rtol=0, atol=rtol * scale, err_msg=key)


@pytest.fixture(scope="module", params=["float64", "float32"])
def model_path(request, tmp_path_factory):
    return mlff.deploy(tiny_model(dtype=request.param), tmp_path_factory.mktemp("gpu") / f"{request.param}.pt")


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_outputs_equal_cpu(device, model_path, name):
    dtype = mlff.read_metadata(model_path).dtype
    on_device, on_cpu = mlff.load(model_path, device), mlff.load(model_path, "cpu")
    out = _raw(on_device, STRUCTURES[name])
    assert out["forces"].dtype == np.float64  # float64 at the boundary whatever the device
    _assert_close(out, _raw(on_cpu, STRUCTURES[name]), TOLERANCE[dtype])


def test_calculator_on_device(device, model_path):
    dtype = mlff.read_metadata(model_path).dtype
    results = []
    for dev in (device, "cpu"):
        atoms = STRUCTURES["triclinic"].copy()
        atoms.calc = mlff.MLFFCalculator(model_path, device=dev)
        results.append({"energy": np.array(atoms.get_potential_energy()), "forces": atoms.get_forces(),
                        "stress": atoms.get_stress(), "stresses": atoms.get_stresses()})
    _assert_close(results[0], results[1], TOLERANCE[dtype])


@pytest.mark.compiles
@pytest.mark.same_on_cpu("tests/modelfile/test_compiled.py::test_compiled_equals_torchscript")
def test_compiled_copy_on_device(device, tmp_path):
    """``mlff.load(path, device, compiled=True)``: a copy compiled here for the device (AOTInductor;
    one interaction layer, l_max 1, float64, to keep the compile short) gives the CPU TorchScript
    model's numbers, directly and through the calculator."""
    path = mlff.deploy(tiny_model(num_layers=1, l_max=1, parity=False), tmp_path / "model.pt")
    compiled, reference = mlff.load(path, device, compiled=True), mlff.load(path, "cpu", compiled=False)
    assert compiled.compiled is not None and compiled.compiled.device.type == torch.device(device).type
    for atoms in STRUCTURES.values():
        _assert_close(_raw(compiled, atoms), _raw(reference, atoms), TOLERANCE["float64"])
    results = [calculator_results(STRUCTURES["triclinic"], model) for model in (compiled, reference)]
    _assert_close(*results, TOLERANCE["float64"])
    assert compiled.compiled is not None  # it ran every call (a failure would have given way to TorchScript)


def test_chunked_calculator_on_device(device, model_path):
    """chunk_atoms (layers in chunks, recomputed for the forces) on the device: the CPU's results."""
    dtype = mlff.read_metadata(model_path).dtype
    results = []
    for dev, chunk in ((device, 5), ("cpu", 0)):
        atoms = STRUCTURES["triclinic"].copy()
        atoms.calc = mlff.MLFFCalculator(model_path, device=dev, chunk_atoms=chunk)
        results.append({"energy": np.array(atoms.get_potential_energy()), "forces": atoms.get_forces(),
                        "stress": atoms.get_stress()})
    _assert_close(results[0], results[1], TOLERANCE[dtype])


def test_batched_structures_on_device(device, model_path):
    """Many structures per model call (mlff.calculators.batched) on the device: the CPU's numbers."""
    from mlff.calculators.batched import predict_batched

    dtype = mlff.read_metadata(model_path).dtype
    structures = [STRUCTURES["triclinic"], STRUCTURES["molecule"], triclinic_cell(7)]
    on_device = list(predict_batched(mlff.MLFFCalculator(model_path, device=device), structures, batch_atoms=40))
    on_cpu = list(predict_batched(mlff.MLFFCalculator(model_path, device="cpu"), structures, batch_atoms=40))
    for ours, reference in zip(on_device, on_cpu):
        _assert_close({k: np.asarray(v) for k, v in ours.items() if v is not None},
                      {k: np.asarray(v) for k, v in reference.items() if v is not None}, TOLERANCE[dtype])


@pytest.mark.same_on_cpu("tests/modelfile/test_out_of_memory.py::test_auto_chunks_where_whole_layers_do_not_fit")
def test_out_of_device_memory_falls_back_to_chunks(device, tmp_path):
    """chunk_atoms="auto": where whole layers do not fit in the device's memory (capped to half of
    what they need), chunks that do, with the uncapped results; fixed settings are clear errors."""
    report = out_of_memory_report(tmp_path / "m.pt", device)
    assert_out_of_memory_handled(report, str(torch.device(device)))


def test_lammps_out_of_device_memory_falls_back_to_chunks(device, plugin, tmp_path):
    """pair_style mlff (chunk auto) where whole layers do not fit in the device's memory (capped to
    half of what the step needs): the step again in chunks, the uncapped energy, and a log line."""
    out = lammps_out_of_memory_report(tmp_path / "m.pt", device)
    assert out["need_mb"] > 10 and out["error"] < 1e-9, out
    kind = torch.device(device).type
    assert out["chunked"] and all(f"ran out of {kind}" in line and "up to 2048 local atoms" in line
                                  for line in out["chunked"]), out


def test_equivariance_on_device(device, tmp_path):
    path = mlff.deploy(tiny_model(parity=True), tmp_path / "parity.pt")
    calc = mlff.MLFFCalculator(path, device=device)

    def evaluate(atoms):
        atoms = atoms.copy()
        atoms.calc = calc
        return {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}

    assert_e3_equivariant(evaluate, small_molecule(3), seed=1, tol=1e-10)


def test_halo_protocol_on_device(device, model_file):
    """The layer-by-layer protocol LAMMPS uses (here with a single domain's image exchange)."""
    from mlff.modelfile.halo import halo_evaluate, image_exchange

    model = mlff.load(model_file, device)
    atoms = STRUCTURES["triclinic"]
    positions, edge_index, species, owner, n = image_halo(atoms, model.species, model.r_cut)
    forward, reverse = image_exchange(owner.to(device), n)
    out = halo_evaluate(model.module, positions.to(device), edge_index.to(device), species.to(device), n,
                        forward, reverse)
    assert out["forces"].device.type == torch.device(device).type
    reference = _raw(mlff.load(model_file, "cpu"), atoms)
    np.testing.assert_allclose(out["energy"].item(), reference["energy"], rtol=1e-12)
    np.testing.assert_allclose(out["virial"].cpu().numpy(), reference["virial"], atol=1e-10 * np.abs(reference["virial"]).max())


def test_model_files_move_between_devices(device, model_file, tmp_path):
    """Deployed from a model that lives on the accelerator, loaded on the CPU, and the reverse."""
    model = tiny_model().to(device)
    path = mlff.deploy(model, tmp_path / "from_device.pt")
    reference = _raw(mlff.load(model_file, device), STRUCTURES["molecule"])  # tiny_model() deployed on the CPU
    _assert_close(_raw(mlff.load(path, "cpu"), STRUCTURES["molecule"]), reference, 1e-10)


def test_training_on_device_reduces_loss(device, tmp_path):
    from mlff.train import TrainConfig, train

    frames = read(os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "cu_emt.extxyz"), ":")
    write(tmp_path / "train.extxyz", frames[1::7][:24])
    write(tmp_path / "valid.extxyz", frames[3::25][:8])
    config = TrainConfig.from_dict({
        "train_file": str(tmp_path / "train.extxyz"), "valid_file": str(tmp_path / "valid.extxyz"),
        "model": {"preset": "small", "r_cut": 4.0, "num_features": 8, "radial_hidden": 16, "dtype": "float64"},
        "max_epochs": 4, "batch_size": 4, "learning_rate": 0.01, "seed": 1, "device": device, "final_stage": 0.0,
        "output_dir": str(tmp_path / "run"), "progress": False, "tensorboard": "off"})
    train(config)
    with open(tmp_path / "run" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(row["train_loss"]) for row in rows]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    # the model trained on the accelerator, deployed, runs on the CPU
    assert np.isfinite(_raw(mlff.load(tmp_path / "run" / "model.pt", "cpu"), frames[0])["forces"]).all()


@pytest.mark.parametrize("graph", ["auto", "cells"])  # auto: graph device on a GPU; cells: the cell list there
def test_lammps_on_device_matches_ase(device, plugin, model_file, graph):
    from mlff.lammps.single_point import lammps_evaluate

    atoms = STRUCTURES["triclinic"]
    out = lammps_evaluate(atoms, str(model_file), ["Cu", "O"],
                          pair_style=f"pair_style mlff device {device} graph {graph}")
    _assert_close(out, calculator_results(atoms, model_file), 1e-10)


@pytest.mark.parametrize("graph", ["auto", "cells"])
def test_lammps_two_ranks_share_the_device(device, plugin, model_file, tmp_path, graph):
    from mlff.lammps.mpi import lammps_env

    write(tmp_path / "structure.extxyz", STRUCTURES["triclinic"])
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [mpiexec, "-np", "2", sys.executable, "-m", "mlff.lammps.single_point", str(tmp_path / "structure.extxyz"),
           str(model_file), str(tmp_path / "out.npz"), "Cu", "O", "--pair-style",
           f"pair_style mlff device {device} graph {graph}"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=dict(lammps_env(), OMP_NUM_THREADS="1"), timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = dict(np.load(tmp_path / "out.npz"))
    _assert_close(out, calculator_results(read(tmp_path / "structure.extxyz"), model_file), 1e-10)
