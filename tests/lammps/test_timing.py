"""MLFF_TIMING=1: pair_style mlff reports the milliseconds per step of each phase at the end of
each run, on every number of ranks (idle ranks take part in the reductions); off by default."""

import os
import re
import subprocess
import sys

import pytest

from mlff.lammps.mpi import lammps_env

DECK = """units metal
atom_style atomic
processors 1 1 {ranks}
lattice fcc 3.61
region box block 0 3 0 3 0 9
region filled block 0 3 0 3 0 3
create_box 2 box
create_atoms 1 region filled
set type 1 type/fraction 2 0.25 7
mass 1 63.546
mass 2 15.999
pair_style mlff{options}
pair_coeff * * {model} Cu O
velocity all create 300 1 mom yes rot yes
fix integrate all nve
run 3
run 2
"""
PHASES = ("graph", "upload", "model", "exchange", "download", "scatter")


def run_deck(model_file, tmp_path, ranks, options="", env=None):
    """DECK through `mpiexec -np ranks lmp` with `pair_style mlff{options}` (also used by
    test_compiled_layers.py): the finished process."""
    deck = tmp_path / "in.timing"
    deck.write_text(DECK.format(ranks=ranks, model=model_file, options=options))
    bindir = os.path.dirname(sys.executable)
    cmd = [os.path.join(bindir, "mpiexec"), "-np", str(ranks), os.path.join(bindir, "lmp"), "-in", str(deck),
           "-log", "none"]
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(lammps_env(), OMP_NUM_THREADS="1", **(env or {})),
                          cwd=tmp_path, timeout=300)


def _run(model_file, tmp_path, ranks, timing):
    res = run_deck(model_file, tmp_path, ranks, env={"MLFF_TIMING": "1"} if timing else None)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return [line for line in res.stdout.splitlines() if line.startswith("mlff timing")]


@pytest.mark.parametrize("ranks", [1, 3])
def test_timing_report_per_run(plugin, model_file, tmp_path, ranks):
    lines = _run(model_file, tmp_path, ranks, timing=True)
    # one line per run: setup + 3 steps, then setup + 2 steps (a subdomain of 3 ranks is empty)
    assert [re.search(r"over (\d+) steps \(mean/max over (\d+) ranks\)", line).groups() for line in lines] == \
        [("4", str(ranks)), ("3", str(ranks))]
    for line in lines:
        values = dict((name, (float(mean), float(most)))
                      for name, mean, most in re.findall(r" (\w+) ([\d.]+)/([\d.]+)", line.split(":", 1)[1]))
        assert tuple(values) == PHASES
        assert values["model"][0] > 0 and values["graph"][0] > 0
        assert all(mean <= most * ranks + 1e-9 for mean, most in values.values())


def test_no_timing_report_by_default(plugin, model_file, tmp_path):
    assert _run(model_file, tmp_path, 1, timing=False) == []
