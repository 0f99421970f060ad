from mlff.cli.main import main


def test_doctor_reports_a_working_installation(plugin, capsys):
    assert main(["lammps", "doctor"]) == 0
    out = capsys.readouterr().out
    for label in ("torch C++ ABI", "LAMMPS C++ ABI", "MPI (mpich wheel)", "C++ compiler", "CMake",
                  "LAMMPS loads plugin"):
        assert label in out
    assert "FAIL" not in out and "no problems found" in out


def test_path_and_build_are_cached(plugin, capsys):
    assert main(["lammps", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(plugin)
    assert main(["lammps", "build"]) == 0  # up to date: returns at once
    assert str(plugin) in capsys.readouterr().out
