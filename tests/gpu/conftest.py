"""GPU tests (``pytest -m cuda``): each compares the accelerator with the CPU.

They run on the device given by ``MLFF_TEST_DEVICE`` (``benchmarks/gpu_check.sh --cpu`` sets it
to ``cpu``, so that the tests themselves are exercised on machines without a GPU), else on
``cuda`` when torch sees a GPU; otherwise they are reported as skipped, with the reason."""

import os

import pytest
import torch

NO_GPU = ("needs a CUDA GPU: run `bash benchmarks/gpu_check.sh` on a GPU machine "
          "(MLFF_TEST_DEVICE=cpu runs these tests on the CPU)")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.cuda)


@pytest.fixture(scope="session")
def device():
    wanted = os.environ.get("MLFF_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "")
    if not wanted:
        pytest.skip(NO_GPU)
    return wanted
