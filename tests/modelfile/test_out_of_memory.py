"""Out of memory: chunk_atoms="auto" (the calculator's default) evaluates in chunks where whole
layers do not fit, with the same results; a fixed setting that does not fit is a MemoryError that
says what to change. The memory runs out for real: a child process caps its address space."""

import sys

import pytest
import torch

from mlff.modelfile.memory import MIN_CHUNK_ATOMS, ChunkPolicy, allocator_message, check_chunk_atoms, is_out_of_memory
from mlff.testing import assert_out_of_memory_handled, out_of_memory_report

CUDA_OOM = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB of which "
            "1.20 GiB is free.")
TORCHSCRIPT_OOM = ("The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript, "
                   "serialized code (most recent call last):\n  File \"code/__torch__/x.py\", line 3, in forward\n"
                   "RuntimeError: [enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                   "memory: you tried to allocate 37158912 bytes. Error code 12 (Cannot allocate memory)\n")


def test_out_of_memory_is_recognised_and_chunks_halve():
    assert is_out_of_memory(torch.OutOfMemoryError(CUDA_OOM)) and is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError(TORCHSCRIPT_OOM)) and is_out_of_memory(RuntimeError(CUDA_OOM))
    assert is_out_of_memory(RuntimeError("std::bad_alloc"))  # C++'s own allocation inside an operator
    assert allocator_message(RuntimeError("The following operation failed...\nRuntimeError: std::bad_alloc")) == (
        "std::bad_alloc")
    assert not is_out_of_memory(RuntimeError("The size of tensor a (3) must match the size of tensor b (4)"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not an error the allocators raise
    assert allocator_message(RuntimeError(TORCHSCRIPT_OOM)).startswith("DefaultCPUAllocator: can't allocate memory")
    assert allocator_message(torch.OutOfMemoryError(CUDA_OOM)) == CUDA_OOM

    policy = ChunkPolicy()
    assert policy.start(3000) == 0  # whole layers until they have not fitted
    tried = [policy.next_after(0, 3000)]
    while tried[-1] is not None:
        tried.append(policy.next_after(tried[-1], 3000))
    assert tried == [2048, 1024, 512, 256, 128, 64, None] and MIN_CHUNK_ATOMS == 64
    policy.settle(256)
    assert policy.start(3000) == 256 and policy.start(200) == 0  # a smaller structure runs whole
    policy.settle(512)
    assert policy.start(3000) == 256  # the smallest that was needed

    assert check_chunk_atoms("auto") == "auto" and check_chunk_atoms(0) == 0 and check_chunk_atoms(7) == 7
    for bad in (-1, True, 2.5, "all"):
        with pytest.raises(ValueError, match="chunk_atoms is 'auto' or a number of atoms"):
            check_chunk_atoms(bad)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="caps the address space with RLIMIT_AS (Linux)")
def test_auto_chunks_where_whole_layers_do_not_fit(tmp_path):
    """mlff.testing.out_of_memory_probe in a process that caps its address space (fresh pages for
    every large allocation: MALLOC_MMAP_THRESHOLD_); tests/gpu/test_device.py runs it on a GPU."""
    assert_out_of_memory_handled(out_of_memory_report(tmp_path / "m.pt", "cpu"), "cpu")


def test_a_compiled_copy_that_fails_at_run_time_gives_way_to_torchscript(tmp_path):
    """AOTInductor reports only that its run failed (out of memory included): the model's
    TorchScript runs instead, from then on, with a warning; bad inputs stay errors."""
    import numpy as np

    import mlff
    from mlff.data import SpeciesMap, from_ase
    from mlff.testing import tiny_model, triclinic_cell

    deployed = mlff.load(mlff.deploy(tiny_model(), tmp_path / "m.pt"), compiled=False)
    data = from_ase(triclinic_cell(2), SpeciesMap(deployed.species), deployed.r_cut)
    graph = [data[k] for k in ("positions", "edge_index", "edge_shift", "species")]
    want = deployed(*graph)
    calls = []

    def failing(*inputs):
        calls.append(1)
        raise RuntimeError("run_func_( container_handle_, ...) API call failed at model_container_runner.cpp")

    deployed.compiled = failing
    with pytest.warns(RuntimeWarning, match=r"the compiled copy of this model failed \(run_func_.*API call failed"):
        got = deployed(*graph)
    for name in want:
        np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), rtol=0, atol=1e-12)
    deployed(*graph)
    assert deployed.compiled is None and len(calls) == 1  # not tried again

    def bad_inputs(*inputs):
        raise ValueError("mlff: species index out of range for this model")

    deployed.compiled = bad_inputs
    with pytest.raises(ValueError, match="species index out of range"):
        deployed(*graph)
