"""Checkpoints: written atomically (temporary file + rename), read with ``weights_only=True``."""

from __future__ import annotations

import os

import torch

from ..files import atomic_path
from ..model import ModelConfig, Potential

CHECKPOINT_FORMAT = "mlff-checkpoint-1"


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` so that a kill at any moment leaves either the old or the new file, never a
    truncated one (a temporary left by ``kill -9`` is removed by the next write, :mod:`mlff.files`)."""
    path = os.fspath(path)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                torch.save({"format": CHECKPOINT_FORMAT, **state}, handle)
                handle.flush()
                os.fsync(handle.fileno())
    except (OSError, RuntimeError) as error:  # full disk, quota, read-only or vanished folder
        kept = f"; the previous {os.path.basename(path)} is intact" if os.path.exists(path) else ""
        raise OSError(f"cannot write checkpoint {path} ({error}){kept}: free space or choose another "
                      "output_dir, then re-run the same command to resume") from error


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path!r} is not a readable mlff checkpoint ({str(error).splitlines()[0]})") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path!r} is not an mlff checkpoint (format {CHECKPOINT_FORMAT} expected); "
                         "a deployed model.pt is not a checkpoint")
    return state


def checkpoint_weights(state: dict, use_ema: bool = True) -> dict:
    """A checkpoint's model weights: the EMA's (by default, where it has one), else the raw ones."""
    return state["ema"]["shadow"] if use_ema and state.get("ema") else state["model"]


def model_from_checkpoint(state: dict, use_ema: bool = True, **config_overrides) -> Potential:
    """Rebuild the potential (EMA weights by default) from a checkpoint's config and species;
    ``config_overrides`` may change options that keep the parameters (``tp_backend``)."""
    config = ModelConfig.from_saved({**state["model_config"], **config_overrides})
    return Potential.from_state(config, state["species"], checkpoint_weights(state, use_ema)).eval()
