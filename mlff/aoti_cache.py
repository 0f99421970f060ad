"""Where AOTInductor packages built on this machine are kept, and what their keys depend on.

A compiled package is native code (a C++ shared library): loading one runs it. mlff therefore
only loads packages that this machine built itself, from the portable TorchScript model or the
training model, and keeps them in a per-user cache keyed by everything the code depends on:
the model's content, the mlff code it was traced from, the torch version and the CPU's
instruction set (Inductor compiles for the CPU it runs on). A model file never supplies the
native code that runs (docs/trust.md).

The cache folder is ``$MLFF_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlff``, else ``~/.cache/mlff``;
it is created readable by its owner only.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Iterable

import torch


def cache_dir() -> str:
    """The folder of locally built packages (created, mode 0700)."""
    root = os.environ.get("MLFF_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "mlff")
    os.makedirs(root, mode=0o700, exist_ok=True)
    return root


def machine() -> Dict[str, object]:
    """What compiled code depends on besides the model: the CPU's instruction set (Inductor compiles
    with ``-march=native``, so a package from another node type could crash) and the thread count
    (it is fixed in the generated loops of a training step)."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        pass
    return {"threads": torch.get_num_threads(), "capability": torch.backends.cpu.get_cpu_capability(),
            "flags": hashlib.sha256(flags.encode()).hexdigest()[:16]}


def source_digest(files: Iterable[str] = ()) -> str:
    """Digest of the code a compiled graph is traced from: the model and its layers (``mlff/model``,
    ``mlff/nn``) and ``files``."""
    from . import model as model_pkg, nn as nn_pkg

    digest = hashlib.sha256()
    paths = []
    for folder in (os.path.dirname(model_pkg.__file__), os.path.dirname(nn_pkg.__file__)):
        paths += [os.path.join(folder, name) for name in sorted(os.listdir(folder)) if name.endswith(".py")]
    for path in list(paths) + list(files):
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def key_of(parts: dict) -> str:
    """A short hex key of ``parts`` (JSON-able values) and this torch version."""
    text = json.dumps({"torch": torch.__version__, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
