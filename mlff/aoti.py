"""AOTInductor on this machine: the one pipeline that turns a model function into native code, and
where the results are kept.

Used by the compiled copy of a model file (:mod:`mlff.modelfile.compiled_copy`), the compiled
layers the LAMMPS plugin runs (:mod:`mlff.modelfile.compiled_layers`) and the compiled training
step (:mod:`mlff.train.compiled_step`); each supplies a function of flat tensors and an example,
this module does the rest:

1. :func:`compile_package`: ``make_fx`` traces the function on symbolic shapes (it unfolds
   ``autograd.grad``, so forces and the gradients of a loss become plain operations),
   ``torch.export`` marks the given dimensions dynamic (each >= 2: a compiled graph specialises
   sizes 0 and 1), and Inductor compiles the graph to a C++ package (``.pt2``), written under its
   final name only when complete (a killed compilation leaves nothing behind);
2. :func:`load_package` loads one, and :func:`check_outputs` compares its outputs with the eager
   function's on the example before the package is used.

A compiled package is native code (a C++ shared library): loading one runs it. mlff therefore only
loads packages that this machine built itself, from the portable TorchScript model or the
training model, and keeps them in a per-user cache (:func:`cache_dir`) keyed by everything the code
depends on (:func:`key_of`): the model's content, the mlff code it was traced from
(:func:`source_digest`), the torch version and the CPU's instruction set (:func:`machine`;
Inductor compiles for the CPU it runs on). A model file never supplies the native code that runs
(docs/trust.md).

The cache folder is ``$MLFF_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlff``, else ``~/.cache/mlff``;
it is created readable by its owner only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import warnings
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import torch


class CompileError(RuntimeError):
    """The model cannot be compiled here (no C++ compiler, unsupported model or torch)."""


# ---- where packages live and what their keys hold ---------------------------------------------------
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
    ``mlff/nn``), this module and ``files``."""
    from . import model as model_pkg, nn as nn_pkg

    digest = hashlib.sha256()
    paths = []
    for folder in (os.path.dirname(model_pkg.__file__), os.path.dirname(nn_pkg.__file__)):
        paths += [os.path.join(folder, name) for name in sorted(os.listdir(folder)) if name.endswith(".py")]
    for path in paths + [__file__] + list(files):
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def key_of(parts: dict) -> str:
    """A short hex key of ``parts`` (JSON-able values) and this torch version."""
    text = json.dumps({"torch": torch.__version__, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# ---- trace, export, compile, load, check --------------------------------------------------------------
@contextlib.contextmanager
def tracing_settings():
    """``use_duck_shape = False``: dimensions of equal size in the example stay independent
    symbols. Deterministic algorithms while compiling: Inductor then leaves scatter-adds (the
    force backward of the neighbour gather) to ATen instead of generating atomic adds, which are
    slower here and which torch 2.13 mis-compiles for transposed tiles. No Python stack trace
    is recorded for each graph node (``torch.fx.config.do_not_emit_stack_traces``): they only
    annotate Inductor's debug output, and capturing them took 14 % of a training step's compile."""
    import torch.fx.config as fx_base_config
    import torch.fx.experimental._config as fx_config

    duck, deterministic = fx_config.use_duck_shape, torch.are_deterministic_algorithms_enabled()
    no_traces = fx_base_config.do_not_emit_stack_traces
    fx_config.use_duck_shape = False
    fx_base_config.do_not_emit_stack_traces = True
    torch.use_deterministic_algorithms(True)
    try:
        with warnings.catch_warnings():  # torch's own deprecations inside tracing: not the user's to fix
            warnings.simplefilter("ignore")
            yield
    finally:
        fx_config.use_duck_shape = duck
        fx_base_config.do_not_emit_stack_traces = no_traces
        torch.use_deterministic_algorithms(deterministic)


def dynamic_dims(*names: str) -> Dict[str, "torch.export.Dim"]:
    """One dynamic dimension (>= 2) per name."""
    return {name: torch.export.Dim(name, min=2) for name in names}


def symbolic_inputs(inputs: Sequence[torch.Tensor], dynamic_shapes: Tuple) -> list:
    """``inputs`` as fake tensors for symbolic tracing whose sizes are symbols only along the axes
    ``dynamic_shapes`` names (one entry per input: None or {axis: Dim}); every other size is a
    constant. Tracing makes every size of a plain tensor a symbol: the weights' sizes then too,
    and each reshape of them (e3nn's layers reshape their weights) a division that every later
    shape carried and sympy re-simplified (most of a training step's 2-minute trace)."""
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

    mode = FakeTensorMode(allow_non_fake_inputs=True, shape_env=ShapeEnv())
    fakes = []
    for k, (tensor, spec) in enumerate(zip(inputs, dynamic_shapes)):
        axes = set(spec or {})
        sizes = [DimDynamic.DYNAMIC if axis in axes else DimDynamic.STATIC for axis in range(tensor.dim())]
        fakes.append(mode.from_tensor(tensor, source=ConstantSource(f"input{k}"),
                                      symbolic_context=StatelessSymbolicContext(dynamic_sizes=sizes)))
    return fakes


def compile_package(fn: Callable, trace_inputs: Sequence[torch.Tensor], example: Sequence[torch.Tensor],
                    dynamic_shapes: Tuple, path: str, fix: str, log: Optional[Callable[[str], None]] = None) -> None:
    """Trace ``fn`` on ``trace_inputs`` (the ``example`` with ``requires_grad`` where gradients are
    taken), export it with ``dynamic_shapes`` (one entry per input: None or {axis: Dim}) on the
    ``example``, and AOT-compile it into the package ``path`` (a ``.pt2``, written atomically).
    Failures are a :class:`CompileError` that says why and ``fix``. ``log`` hears each stage as it
    begins, with the seconds spent so far (compiling takes minutes)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    start = time.perf_counter()

    def stage(text: str) -> None:
        if log is not None:
            log(f"  {text} ({time.perf_counter() - start:.0f} s)")

    def as_tuple(*args):
        # a graph whose output is a bare tensor came back wrong from the package here (torch 2.13:
        # only its first row right); a tuple of outputs does not
        out = fn(*args)
        return out if isinstance(out, tuple) else (out,)

    with tracing_settings():
        try:
            stage("tracing the graph")
            graph = make_fx(as_tuple, tracing_mode="symbolic", _allow_non_fake_inputs=True,
                            _error_on_data_dependent_ops=True)(*symbolic_inputs(trace_inputs, dynamic_shapes))
            stage("exporting it with dynamic sizes")
            with torch.no_grad():
                exported = torch.export.export(graph, tuple(example), dynamic_shapes=dynamic_shapes)
        except Exception as error:  # noqa: BLE001 - tracing and export raise many kinds
            raise CompileError(f"tracing failed ({type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else ''}); {fix}") from error
        partial = path[:-len(".pt2")] + f".partial{os.getpid()}.pt2"  # processes may compile side by side
        try:
            stage("generating and compiling C++ (the longest part)")
            with torch.no_grad():
                torch._inductor.aoti_compile_and_package(exported, package_path=partial)
            os.replace(partial, path)
        except Exception as error:  # noqa: BLE001 - Inductor raises many kinds
            hint = "" if shutil.which("g++") or shutil.which("c++") else "no C++ compiler (g++) is on PATH; "
            raise CompileError(f"AOTInductor compilation failed ({type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else ''}); {hint}{fix}") from error
        finally:
            if os.path.exists(partial):
                os.remove(partial)


def load_package(path: str, what: str, fix: str, device_index: int = -1):
    """The runner of a package this machine built (see the module's notes on trust); ``what`` the
    package is, for the error; ``device_index``: the GPU a GPU package runs on (-1: the current one)."""
    try:
        return torch._inductor.aoti_load_package(path, device_index=device_index)
    except Exception as error:  # noqa: BLE001
        raise CompileError(f"cannot load {what} {path} ({type(error).__name__}); {fix}") from error


def check_outputs(pairs: Iterable[Tuple[str, torch.Tensor, torch.Tensor]], dtype: torch.dtype, what: str,
                  fix: str) -> None:
    """Each ``(name, compiled, eager)`` must agree to 1e-8 (float64) or 1e-3 (float32) relative to
    the eager value's largest magnitude (at least 1)."""
    tol = 1e-8 if dtype == torch.float64 else 1e-3
    for name, got, want in pairs:
        want = want.detach()
        err = float((got - want).abs().max()) if want.numel() else 0.0
        if not err <= tol * max(1.0, float(want.abs().max()) if want.numel() else 1.0):
            raise CompileError(f"{what} differs from the eager one in {name} by {err:.3g}; {fix}")
