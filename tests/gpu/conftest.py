"""GPU tests (``pytest -m cuda``): each compares the accelerator with the CPU.

They run on the device given by ``MLFF_TEST_DEVICE`` (``benchmarks/gpu_check.sh --cpu`` sets it
to ``cpu``, so that the tests themselves are exercised on machines without a GPU), else on
``cuda`` when torch sees a GPU; otherwise they are reported as skipped, with the reason. A test
marked ``same_on_cpu("tests/...::test_...")`` is, on the CPU, that test of the main suite (the
same code, no GPU branch): there it is skipped, naming it."""

import os

import pytest
import torch

NO_GPU = ("needs a CUDA GPU: run `bash benchmarks/gpu_check.sh` on a GPU machine "
          "(MLFF_TEST_DEVICE=cpu runs these tests on the CPU)")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.cuda)


@pytest.fixture(autouse=True)
def _main_suite_runs_it_on_the_cpu(request):
    marker = request.node.get_closest_marker("same_on_cpu")
    if marker is not None and os.environ.get("MLFF_TEST_DEVICE") == "cpu":
        pytest.skip(f"on the CPU this is {marker.args[0]}, which the main suite runs")


@pytest.fixture(scope="session")
def device():
    wanted = os.environ.get("MLFF_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "")
    if not wanted:
        pytest.skip(NO_GPU)
    return wanted
