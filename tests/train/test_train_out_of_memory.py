"""Batches that do not fit in memory train (and validate) in parts with the same gradients; a
structure that does not fit alone is a clear error. The memory runs out for real: a child process
caps its address space (mlff.testing.memory_cap)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from mlff.train.parts import MemoryParts, split

CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB."


def test_batches_split_in_halves_down_to_one_structure():
    assert [len(g) for g in split(list(range(7)), 2)] == [4, 3]
    assert [len(g) for g in split(list(range(7)), 16)] == [1] * 7
    items = [{"positions": torch.zeros(n, 3)} for n in (5, 12, 7)]
    logged, undone, sizes = [], [], []

    def work(group):
        sizes.append(len(group))
        if len(group) > 1:
            raise torch.OutOfMemoryError(CUDA_OOM)
        return len(group)

    parts = MemoryParts("training on", torch.device("cpu"), logged.append)
    assert parts.run(items, work, lambda: undone.append(1)) == [1, 1, 1]
    assert parts.parts == 3 and len(undone) == 2 and sizes == [3, 2, 1, 1, 1]  # 1 part, 2 parts (fails), 3
    assert logged[0].startswith("out of cpu memory training on 3 structures (24 atoms) at once: from now on each "
                                "batch runs in 2 parts")
    assert parts.run(items[:2], work, lambda: None) == [1, 1]  # later batches start from the parts that fitted

    def never(group):
        raise RuntimeError("The following operation failed in the TorchScript interpreter.\nRuntimeError: "
                           "DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 bytes.")

    with pytest.raises(MemoryError, match=r"out of cpu memory training on one structure at a time \(DefaultCPU"
                                          r"Allocator: .*the largest structure of the batch has 12 atoms"):
        parts.run(items, never, lambda: None)
    with pytest.raises(RuntimeError, match="shape"):  # other errors pass through, untouched
        parts.run(items, lambda group: (_ for _ in ()).throw(RuntimeError("shape mismatch")), lambda: None)


CHILD = r"""
import json, sys
from pathlib import Path
import torch
from mlff.testing import address_space, memory_cap
from mlff.train.config import TrainConfig
from mlff.train.trainer import Trainer

torch.set_num_threads(1)
train, valid, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])

def trainer(name):
    return Trainer(TrainConfig.from_dict({
        "train_file": train, "valid_file": valid, "output_dir": str(out / name),
        "model": {"preset": "small", "r_cut": 4.0, "num_features": 16, "radial_hidden": 16, "dtype": "float64"},
        "max_epochs": 2, "batch_size": 20, "learning_rate": 0.01, "seed": 1, "test_fraction": 0.0,
        "progress": False, "tensorboard": "off"}))

whole = trainer("whole")
before = address_space()
whole.run()
need = address_space("VmPeak") - before
parts = trainer("parts")
with memory_cap(need // 2):
    parts.run()
want = dict(whole.model.named_parameters())
error = max(float((p - want[n]).detach().abs().max()) for n, p in parts.model.named_parameters())
print(json.dumps({"need_mb": need / 2**20, "weights_error": error, "parts": parts.step_parts.parts,
                  "loss": [whole.state.best_loss, parts.state.best_loss], "epochs": parts.state.epoch}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="caps the address space with RLIMIT_AS (Linux)")
def test_training_that_runs_out_of_memory_goes_on_in_parts(cu_files, tmp_path):
    """The same run twice, the second with half the memory its batches of 20 structures needed:
    it says so once per halving and ends with the first run's weights (float64)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="65536")
    done = subprocess.run([sys.executable, "-c", CHILD, *map(str, cu_files), str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["need_mb"] > 50 and out["epochs"] == 2, out
    assert out["parts"] > 1 and "out of cpu memory training on 20 structures (" in done.stdout, out
    assert out["weights_error"] < 1e-10, out
    assert abs(out["loss"][1] - out["loss"][0]) <= 1e-10 * out["loss"][0], out
