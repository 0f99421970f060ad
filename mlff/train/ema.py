"""Exponential moving average of the model's weights (used for validation and export)."""

from __future__ import annotations

from typing import Dict

import torch


class EMA:
    """``shadow = decay * shadow + (1 - decay) * weights`` after each optimiser step, with the usual
    warm-up ``decay_t = min(decay, (1 + t) / (10 + t))``. ``decay = 0`` tracks the weights exactly."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.num_updates = 0
        state = model.state_dict()
        self.shadow: Dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in state.items()}
        # the model's tensors and their shadows, floating point ones (averaged) and the rest (copied);
        # state_dict() returns the live tensors, so these lists follow the model's in-place updates
        floating = [k for k, v in state.items() if v.dtype.is_floating_point]
        self._live = [state[k].detach() for k in floating]
        self._averaged = [self.shadow[k] for k in floating]
        self._copied = [(self.shadow[k], state[k]) for k in state if k not in floating]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One averaging step (of the model the EMA was made for: its tensors are held, not looked up)."""
        self.num_updates += 1
        decay = min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))
        torch._foreach_lerp_(self._averaged, self._live, 1.0 - decay)  # one call for all tensors
        for shadow, value in self._copied:
            shadow.copy_(value)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
