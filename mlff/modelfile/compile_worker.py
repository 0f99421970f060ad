"""A worker process of :func:`mlff.modelfile.compiled_layers.compile_layers`:
``python -m mlff.modelfile.compile_worker FOLDER``. ``FOLDER`` (private to the building process)
holds ``job.pt`` (written with ``torch.save``; tensors, numbers and strings only, read with
``weights_only``): the model file, the device, the fix to name on failure, the building process's
torch threads (Inductor generates CPU code for them) and the tasks. Workers side by side each
take the next task no one has taken (``taskI.taken``, created exclusively), building the model
once, and write ``taskI.json``: ``{"lines": [...]}`` (its progress lines) or ``{"error": "..."}``
(a :class:`~mlff.aoti.CompileError`'s message, after which the worker stops)."""

from __future__ import annotations

import json
import os
import sys


def main(folder: str) -> int:
    import torch

    from ..aoti import CompileError
    from .compiled_layers import _build_package, _deployed

    job = torch.load(os.path.join(folder, "job.pt"), weights_only=True)
    torch.set_num_threads(job["threads"])
    deployed = None
    for i, task in enumerate(job["tasks"]):
        try:
            os.close(os.open(os.path.join(folder, f"task{i}.taken"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        if deployed is None:
            deployed = _deployed(job["model_path"], job["kind"])[1]
        try:
            result = {"lines": _build_package(deployed, job["kind"], job["fix"], *task)}
        except CompileError as error:
            result = {"error": str(error)}
        partial = os.path.join(folder, f"task{i}.json.partial")
        with open(partial, "w") as handle:
            json.dump(result, handle)
        os.replace(partial, os.path.join(folder, f"task{i}.json"))
        if "error" in result:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
