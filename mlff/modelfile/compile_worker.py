"""A worker process of :func:`mlff.modelfile.compiled_layers.compile_layers`:
``python -m mlff.modelfile.compile_worker FOLDER N``. ``FOLDER`` (private to the building process)
holds ``task0.pt`` ... ``task{N-1}.pt``, the arguments of ``_build_package`` (written with
``torch.save``; tensors, numbers and strings only, read with ``weights_only``). Workers side by side
each take the next task no one has taken (``taskI.taken``, created exclusively) and write
``taskI.json``: ``{"lines": [...]}`` (its progress lines) or ``{"error": "..."}`` (a
:class:`~mlff.aoti.CompileError`'s message, after which the worker stops)."""

from __future__ import annotations

import json
import os
import sys


def main(folder: str, count: int) -> int:
    import torch

    from ..aoti import CompileError
    from .compiled_layers import _build_package

    for i in range(count):
        try:
            os.close(os.open(os.path.join(folder, f"task{i}.taken"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        try:
            result = {"lines": _build_package(*torch.load(os.path.join(folder, f"task{i}.pt"), weights_only=True))}
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
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
