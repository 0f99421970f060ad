"""LAMMPS runs driven like a user would: the `lmp` command, `plugin load`, NVE energy conservation."""

import os
import re
import subprocess
import sys

import numpy as np

from mlff.lammps.mpi import lammps_env

DECK = """
units metal
atom_style atomic
lattice fcc 3.7
region box block 0 2 0 2 0 2
create_box 2 box
create_atoms 1 box
set type 1 type/fraction 2 0.25 4242
mass 1 63.546
mass 2 15.999
{plugin}
# an untrained model is not repulsive at short range: at 600 K two atoms come within 0.6 Å, which
# the default min_distance guard (meant for fitted potentials) would stop
pair_style mlff min_distance 0.2
pair_coeff * * {model} Cu O
velocity all create 600.0 12345 mom yes rot yes
fix integrate all nve
timestep 0.001
thermo_style custom step temp pe etotal press
thermo_modify format float %.12g
thermo {thermo}
run {steps}
"""


def _thermo(log: str):
    rows = []
    for line in log.splitlines():
        parts = line.split()
        if len(parts) == 5 and re.fullmatch(r"\d+", parts[0]):
            try:
                rows.append([float(p) for p in parts])
            except ValueError:
                pass
    return np.array(rows)


def _lmp(args, deck, tmp_path, env=None):
    path = tmp_path / "in.test"
    path.write_text(deck)
    res = subprocess.run(args + ["-in", str(path), "-log", "none"], capture_output=True, text=True,
                         env=env or dict(lammps_env(), OMP_NUM_THREADS="1"), cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def test_lmp_command_autoloads_plugin_and_conserves_energy(plugin, model_file, tmp_path):
    """NVE, 1000 steps of 1 fs at 600 K: total-energy drift reported and bounded."""
    lmp = os.path.join(os.path.dirname(sys.executable), "lmp")
    out = _lmp([lmp], DECK.format(plugin="", model=model_file, thermo=50, steps=1000), tmp_path)
    assert "mlff: atom type 1 -> Cu" in out
    rows = _thermo(out)
    assert rows.shape[0] == 21 and rows[-1, 0] == 1000
    natoms, time_ps = 32, 1.0
    etot = rows[:, 3]
    drift = (etot[-1] - etot[0]) / natoms / time_ps
    fluctuation = np.std(etot) / natoms
    print(f"NVE 1000 steps x 1 fs, 32 atoms, 600 K: drift {drift:.2e} eV/atom/ps, "
          f"std {fluctuation:.2e} eV/atom, T range {rows[:, 1].min():.0f}-{rows[:, 1].max():.0f} K")
    assert rows[:, 1].std() > 1.0  # atoms really move
    assert abs(drift) < 1e-5
    assert fluctuation < 1e-4


def test_plugin_load_of_the_built_file(plugin, model_file, tmp_path):
    """The raw binary (no entry points): `plugin load` of the built file works."""
    import lammps

    raw = os.path.join(os.path.dirname(lammps.__file__), "lmp")
    env = dict(lammps_env(), OMP_NUM_THREADS="1")
    env.pop("LAMMPS_PLUGIN_PATH", None)
    out = _lmp([raw], DECK.format(plugin=f"plugin load {plugin}", model=model_file, thermo=5, steps=5),
               tmp_path, env)
    assert "Loading plugin: mlff" in out or "mlff" in out
    assert _thermo(out).shape[0] == 2


def test_torch_blas_rebound_inside_lmp(plugin, model_file, tmp_path):
    """`lmp` links LAMMPS's reference BLAS, which takes over libtorch's float64 matrix products
    (2.6x slower models); the plugin binds them back. Same trajectory either way."""
    lmp = os.path.join(os.path.dirname(sys.executable), "lmp")
    deck = DECK.format(plugin="", model=model_file, thermo=10, steps=20)
    quiet = _lmp([lmp], deck, tmp_path)
    assert "BLAS" not in quiet                      # an internal detail: silent unless asked
    rebound = _lmp([lmp], deck, tmp_path, dict(lammps_env(), OMP_NUM_THREADS="1", MLFF_VERBOSE="1"))
    assert re.search(r"mlff: bound \d+ of libtorch's BLAS calls \(e\.g\. dgemm_\)", rebound)
    kept = _lmp([lmp], deck, tmp_path, dict(lammps_env(), OMP_NUM_THREADS="1", MLFF_VERBOSE="1",
                                              MLFF_KEEP_BLAS_BINDING="1"))
    assert "BLAS calls" not in kept
    a, b = _thermo(rebound), _thermo(kept)
    assert a.shape == b.shape == (3, 5)
    assert np.array_equal(_thermo(quiet), a)
    np.testing.assert_allclose(a, b, rtol=1e-10)
