"""Which frames a run trained on: a short fingerprint per structure, so that `mlff evaluate` can
say how many of the frames it scores were training or validation frames of the run that wrote the
model (a score on training frames is not a test).

A fingerprint hashes the atomic numbers, the positions and the cell rounded to 1e-3 Å, and the
periodic directions: the same structure read back from any file format (extxyz writes 8
decimals) gives the same fingerprint; the labels are not part of it. The run folder keeps them in
``split_fingerprints.json``: ``{"version": 1, "train": [...], "valid": [...], "test": [...]}``.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Iterable, List, Optional

import numpy as np
from ase import Atoms

SPLIT_FILE = "split_fingerprints.json"
VERSION = 1


def fingerprint(atoms: Atoms) -> str:
    """16 hex digits identifying the structure (not its labels)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    for values in (atoms.positions, atoms.cell.array):
        digest.update(np.rint(np.asarray(values, dtype=np.float64) * 1000.0).astype(np.int64).tobytes())
    digest.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    return digest.hexdigest()


def write_split(folder: str | os.PathLike, splits: Dict[str, Iterable]) -> str:
    """Write the fingerprints of each split (name -> :func:`fingerprint` of its structures, as
    strings or as their integer values) into ``folder``; returns the path. Written as it goes: a
    million frames' fingerprints are never a list of strings in memory."""
    path = os.path.join(folder, SPLIT_FILE)
    with open(path, "w") as handle:
        handle.write(f'{{"version": {VERSION}')
        for name, prints in splits.items():
            handle.write(f", {json.dumps(name)}: [")
            chunk: List[str] = []
            first = True
            for value in prints:
                chunk.append(value if isinstance(value, str) else f"{int(value):016x}")
                if len(chunk) == 65536:
                    handle.write(("" if first else ", ") + ", ".join(f'"{p}"' for p in chunk))
                    chunk, first = [], False
            if chunk:
                handle.write(("" if first else ", ") + ", ".join(f'"{p}"' for p in chunk))
            handle.write("]")
        handle.write("}")
    return path


def read_split(model_path: str | os.PathLike) -> Optional[Dict[str, set]]:
    """The splits of the run whose folder holds ``model_path``, or None when it has no split file
    (a model copied elsewhere, or written by an mlff before the file existed)."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), SPLIT_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        document = json.load(handle)
    if document.get("version") != VERSION:
        return None
    return {name: set(values) for name, values in document.items() if name != "version"}


def overlap(frames: Iterable[Atoms], splits: Dict[str, set]) -> Dict[str, int]:
    """How many of ``frames`` are in each split."""
    prints: List[str] = [fingerprint(a) for a in frames]
    return {name: sum(p in members for p in prints) for name, members in splits.items()}
