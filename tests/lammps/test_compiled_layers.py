"""Compiled layers in LAMMPS (`mlff lammps compile`, mlff.modelfile.compiled_layers; `pair_style mlff
compiled yes|no|auto`): built on this machine from the model file, found by the plugin from the
file's content, and exact: the same energies, forces and virials as ASE (float64, 1e-10) on 1 and 3
ranks, on cells smaller than the cutoff and with empty subdomains (those calls run TorchScript).
The model here is its own file (not the session's), so the other LAMMPS tests keep running
TorchScript."""

import contextlib
import io
import os
import re
import shutil

import numpy as np
import pytest
import torch

import mlff
from mlff.cli.main import main as cli
from mlff.aoti import CompileError
from mlff.modelfile.compiled_layers import (FASTER_MARGIN, MANIFEST, CompiledLayers, _run_tasks, package_dir,
                                            read_manifest)
from mlff.modelfile.halo import halo_evaluate, image_exchange
from mlff.testing import image_halo, small_molecule, tiny_model
from test_halo_exchange import CASES, assert_cases_agree
from test_timing import run_deck

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="AOTInductor needs a C++ compiler (g++); none on PATH")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """A float64 model file and its compiled layers, built through the CLI (its 4 packages by 2
    worker processes); what it printed. Features to l = 1 (the second layer takes l > 0 in): 0.7x the
    compile time of l = 2, whose graph tests/modelfile/test_compiled.py compiles."""
    path = mlff.deploy(tiny_model(seed=7, l_max=1), tmp_path_factory.mktemp("compiled_layers") / "model.pt")
    said = io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
        assert cli(["lammps", "compile", str(path), "--jobs", "2"]) == 0
    return path, said.getvalue()


def test_compile_reports_its_stages_and_is_cached(compiled):
    path, said = compiled
    folder = package_dir(path)
    stages = ["compiling the 2 layers of model.pt", "2 at a time", "layer 0 forward", "tracing the graph",
              "generating and compiling C++", "layer 0 backward", "layer 1 forward",
              "layer 1 backward", "compiled in", "TorchScript's speed here", f"for cpu: {folder}"]
    positions = [said.find(stage) for stage in stages]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), said
    manifest = read_manifest(folder)
    assert manifest["num_layers"] == "2" and manifest["dtype"] == "float64" and manifest["device"] == "cpu"
    # `compiled auto` runs them only beyond the margin of this machine's timing noise
    assert manifest["margin"] == f"{FASTER_MARGIN:.2f}" and FASTER_MARGIN > 1.0
    assert manifest["faster"] == ("yes" if float(manifest["speedup"]) >= FASTER_MARGIN else "no")
    verdict = "runs them" if manifest["faster"] == "yes" else "keeps TorchScript: not 1.05x at every size"
    assert f"(compiled auto) {verdict}" in said, said
    again = io.StringIO()
    with contextlib.redirect_stderr(again), contextlib.redirect_stdout(again):
        assert cli(["lammps", "compile", str(path)]) == 0
    assert "compiling" not in again.getvalue() and folder in again.getvalue()


def test_a_worker_that_stops_is_a_clear_error(tmp_path):
    """A worker process that stops without a result (here: its task names a model file that is
    gone) is a CompileError that names the package and shows why, not a wait for ever."""
    task = (0, "forward", [torch.zeros(2)], [None], str(tmp_path / "layer0_forward.pt2"))
    job = {"model_path": str(tmp_path / "gone.pt"), "kind": "cpu", "fix": "FIX", "threads": 1, "tasks": [task, task]}
    with pytest.raises(CompileError, match="no process compiled layer 0 forward") as error:
        list(_run_tasks(job, 2, lambda line: None))
    assert "gone.pt" in str(error.value) and "FIX" in str(error.value)


def test_another_model_file_has_another_folder(compiled, tmp_path):
    other = mlff.deploy(tiny_model(seed=8), tmp_path / "model.pt")
    assert package_dir(other) != package_dir(compiled[0])
    assert read_manifest(package_dir(other)) is None


@pytest.mark.parametrize("structure", ["triclinic_supercell", "cell_smaller_than_cutoff", "molecule"])
def test_compiled_halo_protocol_equals_torchscript(compiled, structure):
    """The Python reference of the plugin's path (halo_evaluate with the compiled layers); the
    molecule has no ghost atoms at all."""
    atoms = small_molecule(3) if structure == "molecule" else CASES[structure]
    model = mlff.load(compiled[0], compiled=False)
    positions, edge_index, species, owner, n = image_halo(atoms, model.species, model.r_cut)
    exchange = image_exchange(owner, n)
    plain = halo_evaluate(model.module, positions, edge_index, species, n, *exchange)
    layers = CompiledLayers(package_dir(compiled[0]))
    fast = halo_evaluate(model.module, positions, edge_index, species, n, *exchange, compiled=layers)
    for key, want in plain.items():
        scale = max(float(want.abs().max()), 1e-6)
        torch.testing.assert_close(fast[key], want, rtol=0, atol=1e-12 * scale, msg=key)


@pytest.mark.parametrize("ranks", [1, 3])
def test_lammps_compiled_matches_ase(plugin, compiled, tmp_path, ranks):
    """`compiled yes` stops the run unless the plugin finds the layers `mlff lammps compile` built;
    three cases in one run of the ranks, each disagreement named."""
    assert_cases_agree(["triclinic_supercell", "cell_smaller_than_cutoff", "vacuum_slab"],
                       ["pair_style mlff compiled yes"], compiled[0], tmp_path, ranks)


def _lmp(model, tmp_path, options, ranks=1):
    """test_timing's deck (atoms in the lowest third of the box along z) with these pair_style options."""
    res = run_deck(model, tmp_path, ranks, " " + options if options else "")
    return res.returncode, res.stdout + res.stderr


def _energies(text):
    return np.array([float(line.split()[2]) for line in text.splitlines() if re.match(r"^\s+\d+\s+[\d.]+\s+-?\d", line)])


def test_compiled_runs_every_call_it_can_and_says_so(plugin, compiled, tmp_path):
    """3 ranks along z, atoms in the lowest third (an empty rank evaluates nothing)."""
    code, text = _lmp(compiled[0], tmp_path, "compiled yes", ranks=3)
    assert code == 0, text[-3000:]
    assert "runs the compiled layers built on this machine for cpu" in text
    ran = re.search(r"compiled layers ran (\d+) of (\d+) model evaluations", text)
    assert ran and 0 < int(ran.group(1)) == int(ran.group(2)), text[-2000:]
    code, plain = _lmp(compiled[0], tmp_path, "compiled no", ranks=3)
    assert code == 0 and "compiled layers" not in plain
    np.testing.assert_allclose(_energies(text), _energies(plain), rtol=1e-12)


@contextlib.contextmanager
def _measured(path, faster: bool, speedup: str = None):
    """The manifest of ``path``'s compiled layers says they were (not) faster (at ``speedup``), for
    the block."""
    manifest = os.path.join(package_dir(path), MANIFEST)
    with open(manifest) as handle:
        original = handle.read()
    text = re.sub(r"(?m)^faster .*$", f"faster {'yes' if faster else 'no'}", original)
    with open(manifest, "w") as handle:
        handle.write(re.sub(r"(?m)^speedup .*$", f"speedup {speedup or ('2.000' if faster else '0.500')}", text))
    try:
        yield
    finally:
        with open(manifest, "w") as handle:
            handle.write(original)


def test_auto_follows_the_measured_speed(plugin, compiled, tmp_path):
    """`compiled auto` (the default) runs the compiled layers only where `mlff lammps compile` found
    them faster than TorchScript on this machine, beyond its timing noise (1.03x is a tie)."""
    for faster, expected in ((True, "runs the compiled layers"), (False, "runs its layers as TorchScript")):
        with _measured(compiled[0], faster, None if faster else "1.030"):
            code, said = _lmp(compiled[0], tmp_path, "", ranks=1)
        assert code == 0 and expected in said, said[-3000:]
        assert bool(re.search(r"compiled layers ran \d+ of", said)) == faster
    assert "ran at 1.030x TorchScript's speed" in said and "compiled auto runs them from 1.05x" in said


def test_auto_runs_torchscript_where_the_compiled_layers_fail(plugin, compiled, tmp_path):
    """`compiled auto` (the default): a compiled layer that fails at run time (here: the cache's
    layer 1 forward and backward packages swapped, so the forward package gets the backward's
    inputs) makes the rank evaluate the step again with TorchScript, and keep to it; the energies
    are `compiled no`'s and the log names the failure. `compiled yes` stops instead."""
    folder = package_dir(compiled[0])
    forward, backward = (os.path.join(folder, f"layer1_{name}.pt2") for name in ("forward", "backward"))
    with _measured(compiled[0], True):
        os.rename(forward, forward + ".away")
        os.rename(backward, forward)
        os.rename(forward + ".away", backward)
        try:
            runs = {options: _lmp(compiled[0], tmp_path, options) for options in ("", "compiled yes")}
        finally:
            os.rename(backward, backward + ".away")
            os.rename(forward, backward)
            os.rename(backward + ".away", forward)
    code, text = runs[""]
    assert code == 0, text[-3000:]
    assert re.search(r"mlff: the compiled layers of .*model\.pt failed at step 0 on 1 of 1 rank\(s\): evaluating the "
                     r"step again, that rank with TorchScript from now on \(compiled auto; 'compiled yes' stops "
                     r"instead\)\. Rank 0's error: \S", text), text[-3000:]
    assert len(re.findall("failed at step", text)) == 1 and "compiled layers ran 0 of" in text, text[-3000:]
    code, plain = _lmp(compiled[0], tmp_path, "compiled no")
    assert code == 0
    np.testing.assert_allclose(_energies(text), _energies(plain), rtol=1e-12)
    code, text = runs["compiled yes"]
    assert code != 0 and "mlff model evaluation failed" in text, text[-3000:]


@pytest.mark.parametrize("options, message", [
    ("compiled yes", "run `mlff lammps compile"),
    ("compiled yes chunk 4", "use one of the two"),
    ("compiled yes halo shell", "remove 'halo shell'"),
    ("compiled maybe", "compiled must be yes"),
])
def test_clear_errors(plugin, model_file, compiled, tmp_path, options, message):
    """The session's model has no compiled layers: `compiled yes` says how to build them."""
    model = compiled[0] if "chunk" in options or "shell" in options else model_file
    code, text = _lmp(model, tmp_path, options)
    assert code != 0 and message in text, text[-3000:]


def test_the_device_checks_compiled_layers_step(plugin, compiled, tmp_path):
    """benchmarks/gpu/check.py's compiled_layers step (left out of tests/test_gpu_check.py, whose
    model would need its own minute of compiling): on this module's layers, already built, LAMMPS
    with `compiled no` and `compiled yes`, timed, with the model phase, in the report."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(os.path.dirname(__file__), "..", "..",
                                                                            "benchmarks", "gpu", "check.py"))
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    report = check.Report(tmp_path, "cpu")
    with report.step("compiled_layers") as record:
        check.compiled_layers_step(record, tmp_path, compiled[0], "tiny", "cpu", [256], report)
    assert record["status"] == "ok", record.get("error")
    measured = float(read_manifest(package_dir(compiled[0]))["speedup"])
    assert record["compile_s"] >= 0 and record["speedup_at_compile"] == measured
    (row,) = record["rows"]
    assert row["atoms"] == 256 and all(row[k] > 0 for k in ("ms_torchscript", "ms_compiled", "model_ms_torchscript",
                                                             "model_ms_compiled"))
    assert record["result"].startswith("tiny: built in") and "256 atoms" in record["result"]
    assert "| compiled_layers | ok |" in (tmp_path / "gpu_check.md").read_text()
