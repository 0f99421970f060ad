"""``load``: read an mlff model file back, refusing unknown formats with a clear message."""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Dict, Optional, Union

import torch

from ..runtime import tune_allocator
from .compiled_copy import INFO_ENTRY, PACKAGE_ENTRY, CompiledPotential, CompileError, build_local_package
from .format import FORMAT_VERSION, torchscript_quiet
from .memory import (AUTO, AllocationFailures, ChunkPolicy, allocator_message, check_chunk_atoms, is_out_of_memory,
                     release_cached)

_REQUIRED = ("format_version", "species", "r_cut", "num_layers", "dtype")
_STANDARD_OUTPUTS = ("energy", "atomic_energy", "forces", "virial", "atomic_virial")


class ModelFileError(ValueError):
    """The file is not a readable mlff model of a supported format version."""


@dataclass(frozen=True)
class ModelMetadata:
    """What an mlff model file says about itself."""

    format_version: int
    species: list
    r_cut: float
    num_layers: int
    dtype: str
    energy_unit: str = "eV"
    length_unit: str = "Angstrom"
    mlff_version: str = ""
    torch_version: str = ""
    e3nn_version: str = ""
    outputs: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    compiled: dict = field(default_factory=dict)  # compiled.json: the compiled copy, if the file has one
    # what the file declares it can run (export.CAPABILITIES); empty for files written before the
    # declaration existed (engines probe those for the halo methods)
    capabilities: list = field(default_factory=list)

    @property
    def interaction_range(self) -> float:
        """``num_layers * r_cut``: the ghost-shell thickness engines need for exact message passing."""
        return self.num_layers * self.r_cut


def _read_extra_files(path: str) -> Dict[str, str]:
    if not os.path.isfile(path):
        raise ModelFileError(f"model file {path!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path!r} is not an mlff model: expected a TorchScript zip archive written by "
            "mlff.deploy / `mlff deploy`; the file is corrupt or of another kind"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            extra = {}
            for name in archive.namelist():
                parts = name.split("/")
                if len(parts) == 3 and parts[1] == "extra" and parts[2] != PACKAGE_ENTRY:
                    extra[parts[2]] = archive.read(name).decode()
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path!r} is corrupt ({error}); re-export it with `mlff deploy`") from error
    return extra


def read_metadata(path: str | os.PathLike) -> ModelMetadata:
    """Read and check the metadata of a model file without loading the model."""
    path = os.fspath(path)
    extra = _read_extra_files(path)
    missing = [key for key in _REQUIRED if key not in extra]
    if missing:
        raise ModelFileError(
            f"{path!r} is a TorchScript file but not an mlff model (metadata {missing} missing); "
            "export models with mlff.deploy or `mlff deploy`"
        )
    try:
        version = int(extra["format_version"])
    except ValueError:
        raise ModelFileError(f"{path!r}: unreadable format_version {extra['format_version']!r}") from None
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path!r} has model-file format version {version}, but this mlff "
            f"({_mlff_version()}) reads version {FORMAT_VERSION}; it was written by mlff "
            f"{extra.get('mlff_version', '?')}: use that mlff version or re-export the model"
        )
    return ModelMetadata(
        format_version=version,
        species=extra["species"].split(),
        r_cut=float(extra["r_cut"]),
        num_layers=int(extra["num_layers"]),
        dtype=extra["dtype"],
        energy_unit=extra.get("energy_unit", "eV"),
        length_unit=extra.get("length_unit", "Angstrom"),
        mlff_version=extra.get("mlff_version", ""),
        torch_version=extra.get("torch_version", ""),
        e3nn_version=extra.get("e3nn_version", ""),
        outputs=extra.get("outputs", "").split(),
        config=json.loads(extra.get("config.json", "{}")),
        compiled=json.loads(extra.get(INFO_ENTRY, "{}")),
        capabilities=extra.get("capabilities", "").split(),
    )


def _mlff_version() -> str:
    from .. import __version__

    return __version__


class DeployedModel:
    """A loaded model file: the scripted module plus its metadata.

    Call it with the engine contract (see :mod:`mlff.modelfile.export`); tensors are moved to the
    model's device, outputs are float64.
    """

    def __init__(self, module: torch.jit.ScriptModule, metadata: ModelMetadata, device: str,
                 compiled: Optional[CompiledPotential] = None):
        self.module = module
        self.metadata = metadata
        self.device = torch.device(device)
        # the file's AOTInductor copy (mlff.modelfile.compiled_copy), run for calls without ghost atoms
        self.compiled = compiled
        self._chunks = ChunkPolicy()  # where chunk_atoms="auto" has settled
        self._failures = AllocationFailures(self.device)

    @property
    def species(self) -> list:
        return self.metadata.species

    @property
    def r_cut(self) -> float:
        return self.metadata.r_cut

    def __call__(
        self,
        positions: torch.Tensor,
        edge_index: torch.Tensor,
        edge_shift: torch.Tensor,
        species: torch.Tensor,
        n_local: Optional[int] = None,
        total_charge: float = 0.0,
        chunk_atoms: Union[int, str] = 0,
    ) -> Dict[str, torch.Tensor]:
        """``chunk_atoms``: 0 runs whole layers (the file's ``forward``, or its compiled copy); N > 0
        the file's ``forward_chunked`` (peak memory bounded by N atoms, about one more forward pass
        of the layers in time); ``"auto"`` whole layers, then chunks where they do not fit in memory
        (:mod:`mlff.modelfile.memory`). Running out of memory otherwise is a MemoryError that says
        what to change."""
        n_local = positions.shape[0] if n_local is None else int(n_local)
        chunk_atoms = check_chunk_atoms(chunk_atoms)
        graph = (positions, edge_index, edge_shift, species, n_local, total_charge)
        if chunk_atoms != AUTO:
            try:
                return self._evaluate(*graph, chunk_atoms)
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                fix = ("pass a smaller chunk_atoms, or use fewer atoms or a device with more memory" if chunk_atoms
                       else "pass chunk_atoms='auto' or a number of atoms to evaluate the layers in chunks")
                raise MemoryError(f"{self._no_room(n_local, chunk_atoms, error)}: {fix}") from error
        first = chunk = self._chunks.start(n_local)
        while True:
            self._failures.ready()
            try:
                out = self._evaluate(*graph, chunk)
            except Exception as error:
                if not is_out_of_memory(error, self._failures):
                    raise
                failure = error
            else:
                if chunk != first:
                    self._chunks.settle(chunk)
                    how = f"in chunks of {first} atoms" if first else "in one pass"
                    warnings.warn(f"mlff: {n_local} atoms did not fit in {self.device} memory {how}; evaluated them "
                                  f"in chunks of {chunk} atoms (the same results, about 1.5x the time), as later "
                                  f"calls will (chunk_atoms={chunk} starts there)", RuntimeWarning, stacklevel=2)
                return out
            following = self._chunks.next_after(chunk, n_local)
            if following is None:
                raise MemoryError(f"{self._no_room(n_local, chunk, failure)}, the smallest chunk tried: use fewer "
                                  "atoms or a device with more memory") from failure
            if not self.can_chunk:
                raise MemoryError(f"{self._no_room(n_local, chunk, failure)}, and this model file (mlff "
                                  f"{self.metadata.mlff_version or 'unknown'}) cannot evaluate in chunks of atoms: "
                                  "re-export it with this mlff (mlff deploy OLD.pt -o NEW.pt)") from failure
            release_cached(self.device)
            chunk = following

    def _no_room(self, n_local: int, chunk: int, error: BaseException) -> str:
        how = f"in chunks of {chunk} atoms" if chunk else "in one pass"
        return f"out of {self.device} memory evaluating {n_local} atoms {how} ({allocator_message(error)})"

    @property
    def can_chunk(self) -> bool:
        return "chunked" in self.metadata.capabilities and hasattr(self.module, "forward_chunked")

    def _evaluate(self, positions: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor,
                  species: torch.Tensor, n_local: int, total_charge: float,
                  chunk_atoms: int) -> Dict[str, torch.Tensor]:
        if chunk_atoms:
            self.check_chunked()
        elif self.compiled is not None and n_local == positions.shape[0]:
            try:
                return self.compiled(positions, edge_index, edge_shift, species)
            except RuntimeError as error:  # (bad inputs are ValueErrors, raised as they are)
                # native code that failed at run time (out of memory: AOTInductor says only that
                # its run failed): the portable model from now on, which can also go in chunks
                warnings.warn(f"mlff: the compiled copy of this model failed ({allocator_message(error)}); running "
                              "its TorchScript model from now on (the same results, slower)", RuntimeWarning,
                              stacklevel=3)
                self.compiled = None
        d = self.device
        args = [positions.to(d, torch.float64), edge_index.to(d, torch.int64), edge_shift.to(d, torch.float64),
                species.to(d, torch.int64), n_local]
        if chunk_atoms:
            args.append(int(chunk_atoms))
        if "dipole" in self.metadata.outputs:  # only a dipole head uses the total charge
            args.append(float(total_charge))
        # the scripted graph as written: the JIT's optimising executor (autodiff subgraphs) keeps
        # more intermediates alive (peak memory +60 %) and is no faster (docs/benchmarks/2026-11_performance.md)
        with torch.jit.optimized_execution(False):
            return self.module.forward_chunked(*args) if chunk_atoms else self.module(*args)

    def check_chunked(self) -> None:
        """A ModelFileError unless the file can evaluate in chunks (``forward_chunked``)."""
        if not self.can_chunk:
            raise ModelFileError(f"this model file (mlff {self.metadata.mlff_version or 'unknown'}) cannot evaluate "
                                 "in chunks of atoms (chunk_atoms): it was exported by an earlier mlff; re-export "
                                 "it with this one: mlff deploy OLD.pt -o NEW.pt")


def check_device(device: str) -> torch.device:
    """``device`` as a torch.device, or a ValueError that says what this machine has."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {device!r} is not a device name: use 'cpu', 'cuda' or 'cuda:N'") from error
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r} is not available: torch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use device='cpu'")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} is not available: torch sees {count} CUDA GPU(s) "
                             f"(cuda:0 to cuda:{count - 1})")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r} is not supported: use 'cpu' or 'cuda[:N]'")
    return dev


def _compiled_copy(path: str, module: torch.jit.ScriptModule, metadata: ModelMetadata, device: str, compiled,
                   trust_native_code: bool) -> Optional[CompiledPotential]:
    """The compiled copy where it applies: built on this machine for ``device``
    (:mod:`mlff.modelfile.compiled_copy`), or the file's own (CPU) package only with
    ``trust_native_code``. None (``compiled="auto"``, with a warning where the file asks for a copy
    that cannot run here; on a GPU ``auto`` runs TorchScript) or a ModelFileError
    (``compiled=True``) where it does not apply."""
    if compiled not in (True, False, "auto"):
        raise ValueError(f"compiled must be True, False or 'auto', got {compiled!r}")
    info = metadata.compiled
    on_cpu = torch.device(device).type == "cpu"
    # on a GPU the TorchScript model is the default path (a copy for the GPU only when asked for)
    if compiled is False or (compiled == "auto" and (not info or not on_cpu)):
        return None
    why = None
    if metadata.outputs:
        why = "it has extra outputs, which the compiled copy does not compute"
    elif not on_cpu and not torch.cuda.is_available():
        why = f"this torch sees no GPU for {device!r}"
    if why is None:
        try:
            embedded = _embedded_package(path) if trust_native_code and on_cpu else None
            if embedded is not None:
                return _trusted_package(embedded, metadata)
            package = build_local_package(path, module, metadata, device=device)
            return CompiledPotential.from_file(package, metadata.r_cut, len(metadata.species), device)
        except (CompileError, RuntimeError, OSError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            why = f"its compiled copy could not be built or loaded ({reason})"
    if compiled is True:
        raise ModelFileError(f"{path!r} cannot run compiled: {why}; or load it with compiled=False")
    warnings.warn(f"{path!r}: running the TorchScript model: {why}", stacklevel=3)
    return None


def _embedded_package(path: str) -> Optional[bytes]:
    """The compiled package an older ``--compile`` export carries, or None."""
    with zipfile.ZipFile(path) as archive:
        name = next((n for n in archive.namelist() if n.split("/")[1:] == ["extra", PACKAGE_ENTRY]), None)
        return None if name is None else archive.read(name)


def _trusted_package(package: bytes, metadata: ModelMetadata) -> CompiledPotential:
    """The package inside a file from an earlier mlff: native code from the file, run only because
    the caller trusts it (``trust_native_code=True``)."""
    built_with = metadata.compiled.get("torch_version")
    if built_with != torch.__version__:
        raise CompileError(f"its package was built with torch {built_with}, this is torch {torch.__version__}")
    return CompiledPotential.from_bytes(package, metadata.r_cut, len(metadata.species))


def load(path: str | os.PathLike, device: str = "cpu", compiled: bool | str = "auto",
         trust_native_code: bool = False) -> DeployedModel:
    """Load an mlff model file (checked metadata first, then the TorchScript module).

    Loading runs no native code from the file: TorchScript is interpreted by torch, and a compiled
    copy is built on this machine (docs/trust.md).

    ``compiled``: the AOTInductor copy of the model, with half the memory, faster than TorchScript
    up to ~1000 atoms and level beyond (docs/benchmarks/2026-11_performance.md), run for calls without ghost atoms.
    It is compiled here from the file's weights the first time (a few minutes, needs g++) and
    cached per user (:mod:`mlff.aoti`).
    ``"auto"`` (default) uses it for files exported with ``mlff deploy --compile`` when it can run
    here (on the CPU; a warning says why not), else the TorchScript model; ``True`` uses it for any
    file, on the CPU or a GPU (compiled for that GPU; an error says why it cannot run); ``False``
    always runs TorchScript.

    ``trust_native_code``: older files exported with ``--compile`` carry a compiled package,
    a shared library that runs code when loaded. It is used only with ``trust_native_code=True``
    (for files whose origin you trust); otherwise the copy is built here.
    """
    path = os.fspath(path)
    metadata = read_metadata(path)
    check_device(device)
    tune_allocator()  # reuse freed per-edge buffers between calls (mlff.runtime)
    try:
        with torchscript_quiet():
            module = torch.jit.load(path, map_location=device)
    except RuntimeError as error:
        raise ModelFileError(
            f"{path!r} has valid mlff metadata but its TorchScript code could not be loaded "
            f"({str(error).splitlines()[0]}); it was written with torch {metadata.torch_version}, "
            f"this is torch {torch.__version__}: re-export the model or install a matching torch"
        ) from error
    module.eval()
    return DeployedModel(module, metadata, device,
                         _compiled_copy(path, module, metadata, device, compiled, trust_native_code))


def model_from_file(path: str | os.PathLike, **config_overrides):
    """Rebuild the eager :class:`~mlff.model.Potential` of a model file (its config, species and
    weights), e.g. to re-export it with this mlff version: ``deploy(model_from_file(p), p2)``.

    ``config_overrides`` may change implementation options that keep the parameters, such as
    ``tp_backend``; options that change the architecture are refused by the weight loading.
    """
    from ..model import ModelConfig, Potential

    path = os.fspath(path)
    metadata = read_metadata(path)
    if not metadata.config:
        raise ModelFileError(f"{path!r} carries no config.json; it cannot be rebuilt")
    config = ModelConfig.from_saved({**metadata.config, **config_overrides})
    with torchscript_quiet():
        module = torch.jit.load(path, map_location="cpu")
    prefix = "potential."
    # derived constants (Clebsch-Gordan tables, non-persistent buffers, which TorchScript saves all
    # the same) are rebuilt, not copied: older files may hold them in lower precision or lack them
    state = {k[len(prefix):]: v for k, v in module.state_dict().items() if k.startswith(prefix)}
    try:
        model = Potential.from_state(config, metadata.species, state)
    except ValueError as error:
        raise ModelFileError(f"{path!r}: {error}") from None
    return model.eval()
