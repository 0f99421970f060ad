"""Evaluate an ASE structure with ``pair_style mlff`` inside LAMMPS (tests, benchmarks, checks).

``lammps_evaluate(atoms, "model.pt")`` returns the same quantities as :class:`mlff.MLFFCalculator`
(energy, energies, forces, stress, stresses in eV, Å, ASE sign) computed by LAMMPS, so the two
can be compared number by number. Under MPI run it as a module::

    mpiexec -np 2 python -m mlff.lammps.single_point structure.extxyz model.pt out.npz

(any file ASE reads; :func:`mpi_evaluate` writes an ``.npz`` of :func:`save_structure`, exact and
read without ``ase.io``, whose import would cost each rank about 0.4 s).
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

import numpy as np
from ase.data import atomic_masses, atomic_numbers
from ase.geometry import cellpar_to_cell

from .mpi import preload_mpi


def to_lammps_frame(atoms):
    """Rotate a periodic structure so that its cell has LAMMPS's form (a along x, b in the xy
    plane). Returns the rotated copy and ``R`` with ``r_lammps = r @ R``."""
    rotated = atoms.copy()
    if not atoms.pbc.any():
        return rotated, np.eye(3)
    if not atoms.pbc.all():
        raise ValueError("lammps_evaluate supports fully periodic structures or molecules, not mixed pbc")
    standard = cellpar_to_cell(atoms.cell.cellpar())
    rotation = np.linalg.solve(atoms.cell.array, standard)
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-8) or np.linalg.det(rotation) < 0:
        raise ValueError("LAMMPS needs a right-handed cell: swap two lattice vectors")
    rotated.set_cell(standard)
    rotated.positions = atoms.positions @ rotation
    rotated.wrap()
    return rotated, rotation


def save_structure(path, atoms) -> None:
    """``atoms``' numbers, positions, cell and pbc as an ``.npz`` (float64, exact)."""
    np.savez(path, numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=atoms.pbc)


def load_structure(path):
    """The structure of ``path``: an ``.npz`` of :func:`save_structure`, else any file ASE reads."""
    if str(path).endswith(".npz"):
        from ase import Atoms

        with np.load(path) as data:
            return Atoms(numbers=data["numbers"], positions=data["positions"], cell=data["cell"], pbc=data["pbc"])
    from ase.io import read

    return read(path)


def _setup_commands(atoms, elements: Sequence[str]) -> list[str]:
    commands = ["units metal", "atom_style atomic", "atom_modify map array"]
    if atoms.pbc.all():
        (ax, _, _), (bx, by, _), (cx, cy, cz) = atoms.cell.array.tolist()
        commands += ["boundary p p p"]
        if np.allclose([bx, cx, cy], 0.0):
            commands.append(f"region box block 0 {ax!r} 0 {by!r} 0 {cz!r} units box")
        else:
            commands.append(f"region box prism 0 {ax!r} 0 {by!r} 0 {cz!r} {bx!r} {cx!r} {cy!r} units box")
    else:
        lo = (atoms.positions.min(axis=0) - 1.0).tolist()
        hi = (atoms.positions.max(axis=0) + 1.0).tolist()
        commands += ["boundary s s s",
                     "region box block " + " ".join(f"{a!r} {b!r}" for a, b in zip(lo, hi)) + " units box"]
    commands.append(f"create_box {len(elements)} box")
    commands += [f"mass {t + 1} {float(atomic_masses[atomic_numbers[e]])!r}" for t, e in enumerate(elements)]
    return commands


def lammps_evaluate(atoms, model_path: str, elements: Sequence[str] | None = None,
                    pair_style: str = "pair_style mlff", cmdargs: Sequence[str] = (), md_steps: int = 0,
                    finalize: bool = False, pair_coeffs: Sequence[str] | None = None,
                    deviation: bool = False) -> dict:
    """Energy (eV), energies (eV), forces (eV/Å), and for periodic cells stress and stresses
    (Voigt, eV/Å^3, ASE sign), from one ``run 0`` of LAMMPS; rows ordered like ``atoms``.

    ``elements`` lists the element of each LAMMPS type (default: the sorted elements present).
    With ``md_steps > 0`` LAMMPS first runs that many NVE steps (2 fs, 800 K plus a uniform drift
    of 20 Å/ps along x, so that atoms move between MPI ranks); ``positions`` (Å, the frame of
    ``atoms``) then says where the quantities were evaluated. ``pair_coeffs`` replaces the
    ``pair_coeff * * MODEL ELEMENTS`` line (e.g. for ``pair_style hybrid/overlay mlff zbl ...``;
    ``model_path`` is then unused). ``deviation`` (a committee: several model files in
    ``pair_coeffs``) adds its spread through ``compute pair mlff`` and ``fix pair``: ``forces_std``
    (per atom, eV/Å), ``forces_std_relative`` and ``deviation`` (max, min and mean force deviation,
    energy deviation, max relative force deviation). ``finalize`` shuts MPI down afterwards (a
    script under ``mpiexec`` must: without it ranks are sometimes killed at exit).
    """
    preload_mpi()
    import lammps as lammps_module

    symbols = atoms.get_chemical_symbols()
    elements = list(elements) if elements is not None else sorted(set(symbols))
    frame, rotation = to_lammps_frame(atoms)
    lmp = lammps_module.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite", *cmdargs])
    try:
        lmp.commands_list(_setup_commands(frame, elements))
        n = len(atoms)
        types = [elements.index(s) + 1 for s in symbols]
        lmp.create_atoms(n, list(range(1, n + 1)), types, frame.positions.ravel().tolist())
        lmp.commands_list([
            pair_style,
            *(pair_coeffs if pair_coeffs is not None else [f"pair_coeff * * {model_path} {' '.join(elements)}"]),
            "compute pe_atom all pe/atom",
            "compute stress_atom all stress/atom NULL virial",
            "compute press all pressure NULL virial",
        ])
        if deviation:
            lmp.commands_list(["compute mlff_dev all pair mlff",
                               "fix mlff_devi all pair 1 mlff force_deviation 0 force_deviation_relative 0",
                               "thermo_style custom step pe c_press[*] c_mlff_dev[*]"])
        else:
            lmp.command("thermo_style custom step pe c_press[*]")
        if md_steps > 0:
            lmp.commands_list(["velocity all create 800.0 4928 mom yes rot yes dist gaussian",
                               "velocity all set 20.0 NULL NULL sum yes units box",
                               "fix mlff_nve all nve", "timestep 0.002", f"run {int(md_steps)}", "unfix mlff_nve"])
        lmp.command("run 0")
        if lmp.get_natoms() != n:
            raise RuntimeError(f"LAMMPS kept {lmp.get_natoms()} of {n} atoms (atoms outside the box?)")
        forces = np.array(lmp.gather_atoms("f", 1, 3)).reshape(n, 3) @ rotation.T
        result = {
            "energy": lmp.get_thermo("pe"),
            "energies": np.array(lmp.gather("c_pe_atom", 1, 1)),
            "forces": forces,
        }
        if deviation:
            from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR

            columns = np.array(lmp.gather("f_mlff_devi", 1, 2)).reshape(n, 2)
            result["forces_std"], result["forces_std_relative"] = columns[:, 0], columns[:, 1]
            result["deviation"] = np.array([lmp.extract_compute("mlff_dev", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR)[k]
                                            for k in range(5)])
        if md_steps > 0:
            result["positions"] = np.array(lmp.gather_atoms("x", 1, 3)).reshape(n, 3) @ rotation.T
        if atoms.pbc.all():
            from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR

            # LAMMPS's own eV/Å^3 -> bar factor (its constants differ from ASE's in the 8th digit)
            to_ev_per_a3 = 1.0 / lmp.extract_global("nktv2p")
            press = lmp.extract_compute("press", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR)
            pxx, pyy, pzz, pxy, pxz, pyz = (press[k] for k in range(6))
            pressure = np.array([[pxx, pxy, pxz], [pxy, pyy, pyz], [pxz, pyz, pzz]])
            stress = -rotation @ pressure @ rotation.T * to_ev_per_a3
            result["stress"] = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            per_atom = np.array(lmp.gather("c_stress_atom", 1, 6)).reshape(n, 6)  # bar Å^3, = -W_i
            s = per_atom[:, [0, 3, 4, 3, 1, 5, 4, 5, 2]].reshape(n, 3, 3)
            s = np.einsum("ab,nbc,dc->nad", rotation, s, rotation) * to_ev_per_a3 / atoms.get_volume()
            result["stresses"] = s[:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        return result
    finally:
        if finalize:
            lmp.finalize()
        else:
            lmp.close()


def mpi_evaluate(atoms, model_path: str, ranks: int, workdir, elements: Sequence[str] | None = None,
                 pair_style: str = "pair_style mlff", pair_coeffs: Sequence[str] | None = None,
                 md_steps: int = 0, timeout: float = 600.0, deviation: bool = False):
    """:func:`lammps_evaluate` on ``ranks`` MPI ranks (``mpiexec`` next to this Python, one thread
    each), through files in ``workdir``. Returns the results and the structure the ranks read
    (``atoms``' numbers, positions, cell and pbc, exactly). Raises ``RuntimeError`` with the run's
    output when it fails."""
    results, structures = mpi_evaluate_many([atoms], model_path, ranks, workdir, elements, [pair_style], pair_coeffs,
                                            md_steps, timeout, deviation)
    return results[0][0], structures[0]


def mpi_evaluate_many(structures, model_path: str, ranks: int, workdir, elements: Sequence[str] | None,
                      pair_styles: Sequence[str], pair_coeffs: Sequence[str] | None = None, md_steps: int = 0,
                      timeout: float = 600.0, deviation: bool = False):
    """:func:`mpi_evaluate` for each of ``structures`` with each of ``pair_styles`` in turn, each
    from its structure's start, in one run of the ranks (one start-up of Python, MPI and LAMMPS for
    all: about 1 s per rank). Returns ``results[structure][style]`` and the structures the ranks read."""
    import subprocess
    from pathlib import Path

    from .mpi import lammps_env

    workdir = Path(workdir)
    paths = [workdir / f"structure.{k}.npz" for k in range(len(structures))]
    for path, atoms in zip(paths, structures):
        save_structure(path, atoms)
    out = workdir / f"out-{ranks}-ranks.npz"
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [mpiexec, "-np", str(ranks), sys.executable, "-m", "mlff.lammps.single_point", str(paths[0]),
           str(model_path), str(out), *(elements or []), "--md-steps", str(md_steps)]
    for path in paths[1:]:
        cmd += ["--structure", str(path)]
    for style in pair_styles:
        cmd += ["--pair-style", style]
    for line in pair_coeffs or []:
        cmd += ["--pair-coeff", line]
    if deviation:
        cmd.append("--deviation")
    res = subprocess.run(cmd, capture_output=True, text=True, env=dict(lammps_env(), OMP_NUM_THREADS="1"),
                         timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    results = [[dict(np.load(_output(out, k, len(paths), i, len(pair_styles)))) for i in range(len(pair_styles))]
               for k in range(len(paths))]
    return results, [load_structure(path) for path in paths]


def _output(out, structure: int, structures: int, style: int, styles: int) -> str:
    """Where the results of one structure and pair style go: ``out`` itself for one of each, else
    ``out`` with ``.STYLE`` (several styles), ``.STRUCTURE`` (several structures) or both before
    its ``.npz``."""
    out = str(out)
    stem = out[:-4] if out.endswith(".npz") else out
    parts = ([str(structure)] if structures > 1 else []) + ([str(style)] if styles > 1 else [])
    return ".".join([stem, *parts]) + ".npz" if parts else out


def main(argv=None) -> int:
    """``python -m mlff.lammps.single_point STRUCTURE MODEL OUT.npz [ELEMENT ...] [--structure MORE ...]
    [--pair-style "pair_style mlff ..." ...] [--pair-coeff "pair_coeff ..." ...] [--md-steps N]`` (works
    under mpiexec)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mlff.lammps.single_point", description=main.__doc__)
    parser.add_argument("structure")
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("elements", nargs="*")
    parser.add_argument("--structure", dest="more", action="append", default=[],
                        help="another structure, evaluated after the first (OUT.0.npz, OUT.1.npz, ...)")
    parser.add_argument("--pair-style", action="append",
                        help="default: pair_style mlff; repeat to evaluate several in turn (OUT.0.npz, OUT.1.npz, ...; "
                             "with several structures OUT.STRUCTURE.STYLE.npz)")
    parser.add_argument("--pair-coeff", action="append", help="replaces the default pair_coeff line; repeat for several")
    parser.add_argument("--md-steps", type=int, default=0)
    parser.add_argument("--deviation", action="store_true", help="a committee's spread (compute pair, fix pair)")
    args = parser.parse_args(argv)
    styles = args.pair_style or ["pair_style mlff"]
    paths = [args.structure, *args.more]
    for k, path in enumerate(paths):
        atoms = load_structure(path)
        for index, style in enumerate(styles):
            last = k == len(paths) - 1 and index == len(styles) - 1
            result = lammps_evaluate(atoms, args.model, args.elements or None, style, md_steps=args.md_steps,
                                     finalize=last, pair_coeffs=args.pair_coeff, deviation=args.deviation)
            if int(os.environ.get("PMI_RANK", "0")) == 0:  # set by mpiexec (mpich/hydra)
                np.savez(_output(args.out, k, len(paths), index, len(styles)), **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
