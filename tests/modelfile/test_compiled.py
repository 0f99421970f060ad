"""The AOTInductor copy of a model (``mlff deploy --compile``, mlff.modelfile.compiled_copy): built on
this machine, never taken from the file unless trusted; the same numbers as the TorchScript model,
on every kind of structure, and clear behaviour where it does not apply. One compilation (through
the CLI) is shared by the module."""

import contextlib
import io
import os
import shutil
import subprocess
import warnings
import zipfile

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

import mlff
from mlff.cli.main import main as cli
from mlff.data import SpeciesMap, from_ase
from mlff.modelfile import ModelFileError
from mlff.modelfile.compiled_copy import (COMPILE_REQUEST, INFO_ENTRY, PACKAGE_ENTRY, CompileError, compile_package,
                                  local_package_path)
from mlff.testing import (assert_e3_equivariant, assert_results_close, calculator_results, edit_model_file,
                          finite_difference_forces, tiny_model, triclinic_cell)

SPECIES = ("H", "C", "O", "Cu")

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="AOTInductor needs a C++ compiler (g++); none on PATH")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A plain float64 model file and its re-export with a compiled copy (via the CLI)."""
    directory = tmp_path_factory.mktemp("compiled")
    # one interaction layer: compiles in about half the time of two; the second layer's kind (l > 0
    # features in) is compiled in tests/lammps/test_compiled_layers.py
    plain = mlff.deploy(tiny_model(species=SPECIES, r_cut=4.0, num_layers=1), directory / "plain.pt")
    compiled = directory / "compiled.pt"
    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        assert cli(["deploy", str(plain), "-o", str(compiled), "--compile"]) == 0
    _SAID.append(said.getvalue())
    return plain, compiled


_SAID = []  # what `mlff deploy --compile` printed while it compiled


def test_deploy_compile_says_what_it_is_doing(files):
    """Minutes of compilation are not silent: each stage is announced with the time spent so far."""
    text = _SAID[0]
    stages = ["compiling compiled.pt for this machine's CPU", "tracing the graph", "exporting it with dynamic sizes",
              "generating and compiling C++", "checking it against the model", "compiled in"]
    positions = [text.find(stage) for stage in stages]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), text


def _structures():
    ethanol = molecule("CH3CH2OH")
    ethanol.rattle(0.05, seed=1)
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    cu.rattle(0.05, seed=2)
    water_on_cu = cu.copy() + molecule("H2O")
    water_on_cu.positions[-3:] += [1.8, 1.8, 9.0]
    water_on_cu.cell[2, 2] = 16.0
    return {
        "ethanol": ethanol,
        "cu32": cu,
        "cu+water": water_on_cu,
        "one atom": Atoms("O", positions=[[0.0, 0.0, 0.0]]),
        "dimer": Atoms("CO", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 1.13]]),
        "single atom, periodic": Atoms("Cu", cell=np.eye(3) * 2.6, pbc=True),
        "triclinic": triclinic_cell(5),
    }


def _raw(deployed, atoms):
    data = from_ase(atoms, SpeciesMap(deployed.species), deployed.r_cut)
    out = deployed(data["positions"], data["edge_index"], data["edge_shift"], data["species"])
    return {k: v.numpy() for k, v in out.items()}


def _entries(path):
    with zipfile.ZipFile(path) as archive:
        return [name.split("/", 1)[1] for name in archive.namelist()]


def test_the_file_asks_for_a_copy_built_here_and_carries_no_native_code(files):
    plain, compiled = files
    assert mlff.read_metadata(plain).compiled == {}
    assert mlff.read_metadata(compiled).compiled == COMPILE_REQUEST
    assert f"extra/{PACKAGE_ENTRY}" not in _entries(compiled)
    deployed = mlff.load(compiled)
    assert deployed.compiled is not None
    # the copy that runs is this machine's, in the per-user cache, shared by both exports of the model
    assert os.path.isfile(local_package_path(deployed.module, deployed.metadata))
    assert local_package_path(deployed.module, deployed.metadata) == \
        local_package_path(mlff.load(plain).module, mlff.load(plain).metadata)
    assert mlff.load(compiled, compiled=False).compiled is None
    assert mlff.load(plain).compiled is None  # not asked for: TorchScript
    assert mlff.load(plain, compiled=True).compiled is not None  # asked for: the cached copy


def _payload_package(directory, marker):
    """An AOTInductor package whose shared library runs code when it is loaded (writes ``marker``)."""
    source = directory / "payload.c"
    source.write_text('#include <stdio.h>\n__attribute__((constructor)) static void run(void) '
                      f'{{ FILE *f = fopen("{marker}", "w"); if (f) {{ fputs("ran", f); fclose(f); }} }}\n')
    library = directory / "payload.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    package = directory / "payload.pt2"
    with zipfile.ZipFile(package, "w") as archive:
        archive.write(library, "model/data/aotinductor/model/payload.so")
        archive.writestr("model/data/aotinductor/model/payload_metadata.json", '{"AOTI_DEVICE_KEY": "cpu"}')
        archive.writestr("model/archive_format", "pt2")
        archive.writestr("model/version", "0")
    return package.read_bytes()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="building the payload library needs gcc")
def test_a_files_native_code_never_runs_on_load(files, tmp_path):
    """A model file from an untrusted source carries a compiled package whose library runs code
    when loaded: mlff.load, the calculator and `mlff evaluate` never load it, unless the user says
    trust_native_code=True (which shows the payload is real)."""
    marker = tmp_path / "payload-ran"
    hostile = edit_model_file(files[0], tmp_path / "hostile.pt", {
        PACKAGE_ENTRY: _payload_package(tmp_path, marker),
        INFO_ENTRY: b'{"torch_version": "%s", "device": "cpu"}' % torch.__version__.encode()})
    deployed = mlff.load(hostile)
    assert deployed.compiled is not None  # this machine's own build of the same weights
    assert_results_close(_raw(deployed, _structures()["ethanol"]), _raw(mlff.load(files[0]), _structures()["ethanol"]),
                         rtol=1e-10)
    atoms = _structures()["cu32"]
    atoms.calc = mlff.MLFFCalculator(hostile)
    atoms.get_potential_energy()
    data = tmp_path / "data.extxyz"
    atoms.write(data)
    assert cli(["evaluate", str(hostile), str(data), "--no-plots"]) == 0
    assert not marker.exists()
    with pytest.raises(ModelFileError, match="could not be built or loaded"):
        mlff.load(hostile, compiled=True, trust_native_code=True)
    assert marker.exists()  # the payload is real: trusting the file ran it


@pytest.mark.parametrize("name", list(_structures()))
def test_compiled_equals_torchscript(files, name):
    plain, compiled = files
    atoms = _structures()[name]
    ours, ref = _raw(mlff.load(compiled, compiled=True), atoms), _raw(mlff.load(plain), atoms)
    assert set(ours) == set(ref)
    for key in ref:
        assert ours[key].dtype == np.float64 and ours[key].shape == ref[key].shape, key
    assert_results_close(ours, ref, rtol=1e-10)


def test_calculator_runs_the_compiled_copy(files):
    plain, compiled = files
    for atoms in (_structures()["cu+water"], _structures()["ethanol"]):
        assert_results_close(calculator_results(atoms, compiled), calculator_results(atoms, plain), rtol=1e-10)


def test_the_device_checks_compiled_copy_step(files, tmp_path, capfd):
    """benchmarks/gpu/check.py's compiled_copy step (left out of tests/test_gpu_check.py, whose model
    would need its own minute of compiling): its GPU tests run (on the CPU, skipped naming this
    module's test), then on this module's copy, already built, MLFFCalculator with TorchScript and
    with the copy, timed, in the report."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(os.path.dirname(__file__), "..", "..",
                                                                            "benchmarks", "gpu", "check.py"))
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    report = check.Report(tmp_path, "cpu")
    plan = dict(check.PLAN["cpu"], max_call=5.0, measure_s=0.1)
    with report.step("compiled_copy") as record:
        check.compiled_copy_step(record, files[1], "tiny", "cpu", [32, 108], plan, float("inf"), report)
    assert record["status"] == "ok", record.get("error")
    assert record["compile_s"] >= 0 and "compiling" not in capfd.readouterr().err  # found in the cache
    assert [row["atoms"] for row in record["rows"]] == [32, 108]
    assert all(row[f"{k}_{engine}"] > 0 for row in record["rows"] for k in ("ms", "atom_steps_per_s")
               for engine in ("torchscript", "compiled"))
    # its GPU test (-m compiles) ran: on the CPU, it is this module's test_compiled_equals_torchscript
    assert record["tests"].startswith("1 skipped")
    assert "on the CPU this is" in (tmp_path / "pytest_compiles.log").read_text()
    assert record["result"].startswith("tests: 1 skipped") and "tiny: built in" in record["result"]
    assert "108 atoms" in record["result"]
    text = (tmp_path / "gpu_check.md").read_text()
    assert "| compiled_copy | ok |" in text and "| compiled copy (MLFFCalculator), ms/call |" in text


def test_compiled_is_equivariant_and_conservative(files):
    calc = mlff.MLFFCalculator(files[1])
    assert calc.model.compiled is not None

    def evaluate(atoms):
        atoms = atoms.copy()
        atoms.calc = calc
        out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if atoms.pbc.all():
            out["stress"] = atoms.get_stress(voigt=False)
        return out

    for atoms in (_structures()["triclinic"], _structures()["ethanol"]):
        assert_e3_equivariant(evaluate, atoms)
    atoms = _structures()["ethanol"]
    fd = finite_difference_forces(lambda a: evaluate(a)["energy"], atoms)
    np.testing.assert_allclose(evaluate(atoms)["forces"], fd, atol=1e-7)


@pytest.mark.parametrize("which", ["plain", "compiled"])
def test_bad_input_is_the_same_error_on_both_paths(files, which):
    """The compiled copy checks its input like the scripted model (its kernels do not bounds-check
    indices: a wrong species or atom index must not read out of bounds)."""
    deployed = mlff.load(files[which == "compiled"])
    assert (deployed.compiled is not None) == (which == "compiled")
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]], dtype=torch.float64)
    edges, shift, species = torch.tensor([[0, 1], [1, 0]]), torch.zeros(2, 3, dtype=torch.float64), torch.tensor([0, 1])
    assert torch.isfinite(deployed(pos, edges, shift, species)["energy"])
    with pytest.raises(Exception, match="species index out of range"):
        deployed(pos, edges, shift, torch.tensor([0, len(SPECIES)]))
    with pytest.raises(Exception, match="edge_index refers to atoms outside"):
        deployed(pos, torch.tensor([[0, 1], [1, 2]]), shift, species)
    with pytest.raises(Exception, match="edge_shift must have shape"):
        deployed(pos, edges, torch.zeros(3, 3, dtype=torch.float64), species)
    with pytest.raises(Exception, match="positions must have shape"):
        deployed(pos[:, :2], edges, shift, species)


def test_ghost_atoms_run_torchscript(files):
    """The compiled copy has no ghosts: calls with n_local < n take the TorchScript model."""
    plain, compiled = files
    atoms = _structures()["ethanol"]
    data = from_ase(atoms, SpeciesMap(SPECIES), 4.0)
    args = (data["positions"], data["edge_index"], data["edge_shift"], data["species"])
    keep = data["edge_index"][0] < 6
    ghosts = (args[0], args[1][:, keep], args[2][keep], args[3])
    ours, ref = mlff.load(compiled)(*ghosts, n_local=6), mlff.load(plain)(*ghosts, n_local=6)
    assert_results_close({k: v.numpy() for k, v in ours.items()}, {k: v.numpy() for k, v in ref.items()})


def test_a_file_without_the_mark_loads_quietly(files):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file without a copy loads quietly under "auto"
        mlff.load(files[0])
    with pytest.raises(ValueError, match="compiled must be"):
        mlff.load(files[0], compiled="yes")


def test_another_torch_or_cpu_builds_its_own_copy(files, monkeypatch):
    """The cache key holds the torch version and the CPU's instruction set: a package is never run
    by another torch or on another kind of CPU (no compilation here: the key alone)."""
    deployed = mlff.load(files[1])
    here = local_package_path(deployed.module, deployed.metadata)
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    assert local_package_path(deployed.module, deployed.metadata) != here
    monkeypatch.undo()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "OTHER")
    assert local_package_path(deployed.module, deployed.metadata) != here


def test_a_gpu_runs_torchscript_unless_a_compiled_copy_is_asked_for(files):
    """On a GPU ``compiled="auto"`` runs TorchScript, with no warning; ``compiled=True`` builds a copy
    for the GPU (tests/gpu/test_device.py), and says why not where torch sees none."""
    from mlff.modelfile.load import _compiled_copy

    deployed = mlff.load(files[1], compiled=False)
    args = (str(files[1]), deployed.module, deployed.metadata, "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ModelFileError, match="cannot run compiled: this torch sees no GPU for 'cuda'"):
            _compiled_copy(*args, True, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # on a GPU the TorchScript model is the expected path: no warning
        assert _compiled_copy(*args, "auto", False) is None


def test_a_gpu_copy_has_its_own_key_per_kind_of_gpu(files, monkeypatch):
    """A copy for a GPU is never the CPU's, nor another kind of GPU's (the key alone, no compiling)."""
    deployed = mlff.load(files[1])
    cpu = local_package_path(deployed.module, deployed.metadata)
    assert local_package_path(deployed.module, deployed.metadata, "cpu") == cpu
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "GPU A")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (9, 0))
    gpu = local_package_path(deployed.module, deployed.metadata, "cuda")
    assert gpu != cpu and local_package_path(deployed.module, deployed.metadata, "cuda:0") == gpu
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (8, 0))
    assert local_package_path(deployed.module, deployed.metadata, "cuda") not in (gpu, cpu)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "GPU B")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (9, 0))
    assert local_package_path(deployed.module, deployed.metadata, "cuda") not in (gpu, cpu)


def test_models_with_extra_outputs_are_refused(tmp_path):
    model = tiny_model(outputs={"charge_like": "1x0e"})
    with pytest.raises(CompileError, match="extra outputs"):
        compile_package(model, str(tmp_path / "model.pt2"))


def test_tracing_settings_apply_while_compiling_and_are_restored():
    import torch.fx.config as fx_config
    import torch.fx.experimental._config as fx_experimental

    from mlff.aoti import tracing_settings

    before = (fx_config.do_not_emit_stack_traces, fx_experimental.use_duck_shape,
              torch.are_deterministic_algorithms_enabled())
    with pytest.raises(KeyError), tracing_settings():
        # no stack trace per graph node (14 % of a compile), sizes stay independent, and
        # deterministic scatter-adds
        assert fx_config.do_not_emit_stack_traces and not fx_experimental.use_duck_shape
        assert torch.are_deterministic_algorithms_enabled()
        raise KeyError("a failed compile")
    assert (fx_config.do_not_emit_stack_traces, fx_experimental.use_duck_shape,
            torch.are_deterministic_algorithms_enabled()) == before


def test_only_the_named_axes_are_symbols_when_tracing():
    """aoti.symbolic_inputs: the sizes of the axes the dynamic shapes name are symbols, every other
    size (a weight's, a trailing 3) a plain integer, and gradients are still taken."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from mlff import aoti

    weight, positions = torch.randn(6, 4, requires_grad=True), torch.randn(5, 3)
    dims = aoti.dynamic_dims("atoms")
    fake_weight, fake_positions = aoti.symbolic_inputs([weight, positions], (None, {0: dims["atoms"]}))
    assert all(isinstance(size, int) for size in fake_weight.shape) and fake_weight.requires_grad
    assert isinstance(fake_positions.shape[0], torch.SymInt) and isinstance(fake_positions.shape[1], int)

    def f(w, x):  # a reshape of the weight, as e3nn's layers do, and its gradient
        energy = (x.repeat(1, 4) @ w.reshape(-1, 2)).square().sum()
        return torch.autograd.grad(energy, [w])

    graph = make_fx(f, tracing_mode="symbolic", _allow_non_fake_inputs=True)(fake_weight, fake_positions)
    weight_node = next(n for n in graph.graph.nodes if n.op == "placeholder")
    views = (torch.ops.aten.view.default, torch.ops.aten.reshape.default)
    reshapes = [n for n in weight_node.users if n.target in views]
    assert reshapes and all(isinstance(size, int) for n in reshapes for size in n.args[1]), reshapes
    x = torch.randn(7, 3)  # another number of atoms: the graph takes it
    torch.testing.assert_close(graph(weight, x)[0], f(weight, x)[0])
