"""A wheel (non-editable install) carries the plugin sources, so `mlff lammps build` works there."""

import subprocess
import sys
import zipfile
from pathlib import Path

from mlff.lammps import locate

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_the_plugin_sources(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = tmp_path.glob("mlff-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    shipped = tmp_path / "site" / "mlff" / "lammps" / "plugin_src"
    names = [path.name for path in locate.source_files(ROOT / "lammps_plugin")]
    assert {"CMakeLists.txt", "pair_mlff.cpp", "pair_mlff.h"} <= set(names)
    for name in names:
        assert (shipped / name).read_bytes() == (ROOT / "lammps_plugin" / name).read_bytes(), name
    # the installed package finds them where the build looks
    code = "from mlff.lammps.locate import source_dir; print(source_dir())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert Path(out.stdout.strip()) == shipped.resolve()
