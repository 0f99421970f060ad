"""A compiled training step: the loss *and its gradients* as one AOTInductor graph.

A training step with a force loss differentiates twice: the forces are ``-dE/dr`` (a backward with
``create_graph``), and the optimiser needs the loss's gradient with respect to the weights
(a backward through that backward). On small structures that is thousands of small operations
per step through autograd's engine. The compiled step (``compile: auto`` or ``true``) traces it
all, the way ``mlff deploy --compile`` traces energy and forces (:mod:`mlff.modelfile.compiled_copy`):

1. ``make_fx`` runs ``Potential.forward`` (one model definition), :func:`~mlff.train.loss.weighted_loss`
   and ``autograd.grad(loss, weights)`` on symbolic shapes, which unfolds both backward passes
   into one graph of plain operations: weights and a batch in, the loss and one gradient per
   trainable weight out;
2. ``torch.export`` with the numbers of atoms, edges, centre rows, neighbours per centre and
   structures as dynamic dimensions (each >= 2: a compiled graph specialises sizes 0 and 1);
3. AOTInductor compiles it to a C++ library, once per run (minutes; figures in docs/training.md), cached in
   ``<output_dir>/compiled/`` under a key of everything it depends on (model, loss terms, code,
   torch version, CPU instruction set, thread count), so a resumed run on the same kind of node
   with the same threads reuses it.

Loss weights and normalisers are inputs (the final stage changes the weights without a new
compilation), and every configured term is always evaluated: a batch without stress labels adds
exactly zero, as the eager step's skipped term does. The edges' dense per-centre layout is
computed outside the graph (its shapes depend on values). A batch outside the compiled domain (a
single structure, or fewer than 2 centres) runs the eager step, which computes the same loss.

The compiled graph is checked against the eager step on the example batch before it is used
(loss and gradients, 1e-8 relative in float64, 1e-3 in float32).
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from .. import aoti
from ..aoti import CompileError
from ..data import keys
from ..model.potential import with_edge_layout
from . import loss as loss_module
from .loss import TERMS, loss_fn, normalisers, weighted_loss

# the batch tensors the compiled step reads, in its argument order, with their dynamic dimension
STEP_INPUTS = (
    (keys.POSITIONS_KEY, 0, "atoms"), (keys.SPECIES_KEY, 0, "atoms"), (keys.EDGE_INDEX_KEY, 1, "edges"),
    (keys.EDGE_SHIFT_KEY, 0, "edges"), (keys.BATCH_KEY, 0, "atoms"), (keys.PTR_KEY, 0, "graphs+1"),
    (keys.DENSE_ROWS_KEY, 0, "rows"), (keys.DENSE_SLOT_KEY, 0, "edges"), (keys.DENSE_WIDTH_KEY, 0, "width"),
    (keys.REF_ENERGY_KEY, 0, "graphs"), (keys.REF_FORCES_KEY, 0, "atoms"), (keys.CELL_KEY, 0, "graphs"),
    (keys.REF_STRESS_KEY, 0, "graphs"), (keys.HAS_STRESS_KEY, 0, "graphs"), (keys.LOSS_WEIGHT_KEY, 0, "graphs"),
)


def _sizes(batch: Dict[str, torch.Tensor]) -> Dict[str, int]:
    """The batch's dynamic dimensions: atoms, edges, rows, width (neighbours per centre), graphs."""
    return {name: int(batch[key].shape[axis]) for key, axis, name in STEP_INPUTS if name != "graphs+1"}


def _normalisers(counts: Dict[str, float]) -> Dict[str, float]:
    """The eager loss's normalisers, each >= 1: a term without labels then adds exactly zero."""
    return {term: max(value, 1.0) for term, value in normalisers(counts).items()}


class CompiledStep:
    """``step(batch, counts, weights)``: the loss of :func:`~mlff.train.loss.loss_fn` on ``batch``
    (eager semantics), with the gradients of the trainable weights written to their ``.grad``;
    ``None`` for a batch outside the compiled domain (then run the eager step)."""

    def __init__(self, runner: Callable, model: nn.Module, names: List[str], terms: List[str]):
        self.runner = runner
        self.model = model
        self.params = [dict(model.named_parameters())[name] for name in names]
        self.terms = terms

    @staticmethod
    def supports(batch: Dict[str, torch.Tensor]) -> bool:
        return min(_sizes(batch).values()) >= 2

    def _inputs(self, batch, counts, weights) -> List[torch.Tensor]:
        norms = _normalisers(counts)
        return ([p.detach() for p in self.params] + [batch[key] for key, _, _ in STEP_INPUTS]
                + [torch.tensor([norms[t] for t in self.terms], dtype=torch.float64),
                   torch.tensor([float(weights[t]) for t in self.terms], dtype=torch.float64)])

    def step(self, batch: Dict[str, torch.Tensor], counts: Dict[str, float],
             weights: Dict[str, float]) -> Optional[torch.Tensor]:
        if not self.supports(batch):
            return None
        outputs = self.runner(*self._inputs(batch, counts, weights))
        for param, grad in zip(self.params, outputs[1:]):
            param.grad = grad if param.grad is None else param.grad + grad
        return outputs[0].detach()

    # ---- building ---------------------------------------------------------------------------------
    @classmethod
    def build(cls, model: nn.Module, example: Dict[str, torch.Tensor], counts: Dict[str, float],
              weights: Sequence[Dict[str, float]], kind: str, delta: float, cache_dir: str,
              log: Callable[[str], None] = print) -> "CompiledStep":
        """Trace, export and compile the step of ``model`` (in training mode, on the CPU) on the
        ``example`` batch (collated; >= 2 structures), for the loss terms that have a positive
        weight in any of ``weights`` (the stages' weight sets); reuses a package in ``cache_dir``."""
        if getattr(model, "graph_outputs", []):
            raise CompileError(f"the compiled step does not support models with extra outputs ({model.graph_outputs}); "
                               "set compile: false")
        if any(not layer.fused for layer in model.layers):
            raise CompileError("the compiled step needs the fused convolution (model.tp_backend: fused)")
        if next(model.parameters()).device.type != "cpu":
            raise CompileError("the compiled step runs on the CPU only; set compile: false for device: cuda")
        terms = [t for t in TERMS if any(w.get(t, 0.0) > 0 for w in weights)]
        if "dipole" in terms:
            raise CompileError("the compiled step does not support the dipole loss; set compile: false")
        example = with_edge_layout(example)
        if not cls.supports(example):
            raise CompileError(f"the compiled step needs batches of >= 2 structures and centres (the example batch "
                               f"has {_sizes(example)}); raise batch_size or set compile: false")
        names = [name for name, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        buffers = dict(model.named_buffers())
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        key = aoti.key_of({
            "config": model.config.to_dict(), "species": list(model.species), "names": names, "terms": terms,
            "kind": kind, "delta": delta, "dtype": dtype,
            "code": aoti.source_digest([loss_module.__file__, __file__]), "machine": aoti.machine(),
        })
        path = os.path.join(cache_dir, f"step-{key}.pt2")

        def traced(*args):
            weights_in = dict(zip(names, args[:len(names)]))
            tensors = args[len(names):len(names) + len(STEP_INPUTS)]
            norms, loss_weights = args[-2], args[-1]
            data = {key_: value for (key_, _, _), value in zip(STEP_INPUTS, tensors)}
            out = torch.func.functional_call(model, ({**params, **buffers, **weights_in},), (data,))
            loss = weighted_loss(out, data, {t: norms[i] for i, t in enumerate(terms)},
                                 {t: loss_weights[i] for i, t in enumerate(terms)}, terms, kind, delta)
            grads = torch.autograd.grad(loss, [weights_in[n] for n in names], materialize_grads=True)
            return (loss,) + tuple(grads)

        step = cls(None, model, names, terms)
        inputs = step._inputs(example, counts, weights[0])
        if os.path.exists(path):
            log(f"compiled training step: reusing {path}")
        else:
            start = time.perf_counter()
            log("compiling the training step (once per run and machine, a few minutes)")
            os.makedirs(cache_dir, exist_ok=True)
            trace_inputs = [p.detach().requires_grad_(True) for p in step.params] + inputs[len(names):]
            dims = aoti.dynamic_dims("atoms", "edges", "rows", "width", "graphs")
            dims["graphs+1"] = dims["graphs"] + 1
            dynamic = [None] * len(names) + [{axis: dims[name]} for _, axis, name in STEP_INPUTS] + [None, None]
            aoti.compile_package(traced, trace_inputs, inputs, tuple(dynamic), path, "set compile: false", log)
            log(f"compiled training step in {time.perf_counter() - start:.0f} s: {path}")
        step.runner = aoti.load_package(path, "the compiled training step", "delete it to compile again, or set compile: false")
        step._check(example, counts, weights[0], kind, delta)
        return step

    def _check(self, batch, counts, weights, kind, delta) -> None:
        """The compiled loss and gradients must reproduce the eager step's on ``batch``."""
        want = loss_fn(self.model(batch), batch, counts, weights, kind, delta)
        want_grads = torch.autograd.grad(want, self.params, allow_unused=True, materialize_grads=True)
        outputs = self.runner(*self._inputs(batch, counts, weights))
        pairs = [("its loss", outputs[0], want)] + [("a gradient", got, ref) for got, ref in zip(outputs[1:], want_grads)]
        aoti.check_outputs(pairs, outputs[1].dtype, "the compiled training step", "set compile: false")
