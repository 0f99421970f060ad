"""Training options as a dataclass, loaded from YAML; every default is documented in docs/training.md."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Union

import yaml

from ..data.readers import loss_weight
from ..data.validate import check_min_distance
from ..model import ModelConfig
from ..options import parse_fields, reject_unknown

FINAL_ENERGY_FACTOR = 20.0  # default final-stage energy weight: energy_weight x this
FINAL_LR_DIVISOR = 5.0      # default final-stage learning rate: learning_rate / this
# compile: auto compiles runs with more training time than this left. A compilation takes minutes
# (more on a loaded machine); a step about twice as fast pays it back when it takes less than half
# the time left, so 15 minutes leaves room for a slow compilation (figures in docs/training.md).
AUTO_COMPILE_SECONDS = 900.0
# without a `model` key: the medium preset in float32, more accurate at a fixed wall time than the
# small preset in float64 (docs/benchmarks/2026-11_training_experiments.md)
DEFAULT_MODEL = {"preset": "medium", "dtype": "float32"}


@dataclass
class TrainConfig:
    # data
    train_file: Union[str, List[str]] = ""
    valid_file: Optional[Union[str, List[str]]] = None
    valid_fraction: float = 0.1
    # a test set the model never trains or validates on, scored once at the end (training_summary.json
    # "test_metrics"; the frames are written to <output_dir>/test.extxyz): test_file, else this
    # fraction of the training file's frames (after the validation split); 0 holds none out
    test_file: Optional[Union[str, List[str]]] = None
    test_fraction: float = 0.1
    reader: str = "ase"
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    dipole_key: str = "dipole"
    # loss weights of frames: a frame's terms in the loss are multiplied by its `weight_key` value in
    # the extxyz info (1 where absent) times config_type_weights[its config_type] (1 where absent)
    weight_key: str = "config_weight"
    config_type_weights: Dict[str, float] = field(default_factory=dict)
    species: Optional[List[str]] = None
    E0: Optional[Dict[str, float]] = None
    min_distance: float = 0.5
    # model: a preset name and/or ModelConfig fields. Without the key: DEFAULT_MODEL; a given mapping
    # replaces it (ModelConfig's own defaults, float64, fill what it leaves out)
    model: Dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_MODEL))
    # fine-tuning: start from a model file or checkpoint (its architecture; new species are added)
    init_from: Optional[str] = None
    init_shifts: str = "keep"
    freeze: List[str] = field(default_factory=list)
    # optimisation
    max_epochs: int = 100
    batch_size: int = 4
    batch_atoms: int = 0  # > 0: batches of up to this many atoms (mixed-size data) instead of batch_size
    # False: each frame's neighbour list is built when its batch is drawn (in a background thread), and
    # a .db train/valid/test file (mlff data convert) is read from disk then, not held in memory
    preload: bool = True
    # with preload: false, processes that read frames and build graphs ahead of the training step
    # (DataLoader workers); 0: one background thread of the training process; None: 1 where the
    # machine has more than one core, else 0
    data_workers: Optional[int] = None
    learning_rate: float = 5e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    scheduler: str = "plateau"
    plateau_factor: float = 0.5
    plateau_patience: int = 50  # epochs; 10 cut the rate to its floor early on small sets (docs/benchmarks/2026-11_training_experiments.md)
    min_learning_rate: float = 1e-6
    ema_decay: float = 0.99
    clip_grad_norm: float = 10.0
    early_stopping_patience: int = 0
    # loss
    # huber: quadratic up to huber_delta (eV/atom, eV/Å, eV/Å^3), linear beyond, so that large
    # errors (often label noise) pull no harder than typical ones; lower force MAE than mse at a
    # fixed wall time (docs/benchmarks/2026-11_training_experiments.md, *Species-aware radial functions and the Huber loss*)
    loss: str = "huber"
    huber_delta: float = 0.01
    energy_weight: float = 1.0
    forces_weight: float = 10.0
    stress_weight: float = 100.0
    dipole_weight: float = 0.0
    # a final stage (MACE's "SWA" stage, NequIP's loss schedules): for the last `final_stage`
    # fraction of max_epochs (or of time_limit), other loss weights and a new learning rate.
    # Unset final values: energy weight x FINAL_ENERGY_FACTOR, learning rate / FINAL_LR_DIVISOR,
    # the other weights unchanged (measured in docs/benchmarks/2026-11_training_experiments.md; 0 turns the stage off)
    final_stage: float = 0.3
    final_energy_weight: Optional[float] = None
    final_forces_weight: Optional[float] = None
    final_stress_weight: Optional[float] = None
    final_learning_rate: Optional[float] = None
    # run
    seed: int = 0
    output_dir: str = "runs/mlff"
    device: str = "cpu"
    checkpoint_every: int = 0
    time_limit: Optional[Union[str, float]] = None  # e.g. "20m", "11h30m": stop, checkpoint, deploy
    # CPU: the step (loss and its gradients) as one AOTInductor graph (compiled_step.py); auto: when,
    # after 5 timed steps, the run has more than AUTO_COMPILE_SECONDS left, and if it compiles
    compile: Union[bool, str] = "auto"
    progress: bool = True
    tensorboard: str = "auto"

    _CHOICES = {
        "reader": ("ase", "pymatgen"),
        "optimizer": ("adam", "adamw"),
        "scheduler": ("plateau", "cosine", "none"),
        "loss": ("mse", "huber"),
        "device": ("cpu", "cuda", "auto"),
        "tensorboard": ("auto", "on", "off"),
        "init_shifts": ("keep", "refit"),
        "compile": (True, False, "auto"),
    }

    def final_weights(self) -> Dict[str, float]:
        """Loss weights of the final stage: those given, else the energy weight x
        FINAL_ENERGY_FACTOR and the others unchanged."""
        given = {"energy": self.final_energy_weight, "forces": self.final_forces_weight,
                 "stress": self.final_stress_weight}
        default = {"energy": FINAL_ENERGY_FACTOR * self.energy_weight, "forces": self.forces_weight,
                   "stress": self.stress_weight}
        return {k: float(default[k] if v is None else v) for k, v in given.items()}

    def final_start_learning_rate(self) -> float:
        """Learning rate at the start of the final stage: the one given, else learning_rate / FINAL_LR_DIVISOR."""
        return self.learning_rate / FINAL_LR_DIVISOR if self.final_learning_rate is None else self.final_learning_rate

    def __post_init__(self):
        for name, choices in self._CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {list(choices)}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1) (0: no test set), got {self.test_fraction}")
        if not self.train_file:
            raise ValueError("train_file is required: a data file (extxyz, OUTCAR, vasprun.xml, ...) or a list")
        for name in ("max_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.final_stage < 1.0:
            raise ValueError(f"final_stage is the fraction of training in the final stage, in [0, 1); got {self.final_stage}")
        finals = [self.final_energy_weight, self.final_forces_weight, self.final_stress_weight, self.final_learning_rate]
        if self.final_stage == 0.0 and any(v is not None for v in finals):
            raise ValueError("final_*_weight / final_learning_rate act in the final stage: set final_stage too "
                             "(e.g. 0.2 for the last fifth of training)")
        if any(v is not None and v < 0 for v in finals):
            raise ValueError("final stage weights and learning rate must be >= 0")
        if self.compile is True and self.batch_size < 2 and self.batch_atoms == 0:
            raise ValueError("compile: true compiles batches of >= 2 structures, and batch_size is 1: "
                             "raise batch_size or set compile: false")
        if self.batch_atoms < 0:
            raise ValueError(f"batch_atoms must be >= 0 (0: batches of batch_size structures), got {self.batch_atoms}")
        if self.data_workers is not None and self.data_workers < 0:
            raise ValueError(f"data_workers must be >= 0 (0: a background thread), got {self.data_workers}")
        if self.data_workers and self.preload:
            raise ValueError("data_workers read frames and build their graphs when a batch is drawn, and with "
                             "preload: true they are all in memory already: set preload: false (a .db train_file "
                             "from `mlff data convert` is then read from disk) or remove data_workers")
        check_min_distance(self.min_distance)
        if not self.huber_delta > 0:
            raise ValueError(f"huber_delta must be positive, got {self.huber_delta}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if min(self.energy_weight, self.forces_weight, self.stress_weight, self.dipole_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if not isinstance(self.config_type_weights, dict):
            raise ValueError(f"config_type_weights maps config_type names to loss weights, e.g. "
                             f"{{vacancy: 4.0}}; got {self.config_type_weights!r}")
        self.config_type_weights = {str(k): loss_weight(v, f"config_type_weights[{k!r}]")
                                    for k, v in self.config_type_weights.items()}
        self.time_limit_seconds()
        if self.freeze and not self.init_from:
            raise ValueError("freeze needs init_from: only a pretrained model has weights worth freezing")
        if self.init_from:
            self.finetune_overrides()
        else:
            self.model_config()  # validate the model options now, not after reading the data

    @classmethod
    def from_dict(cls, values: dict, base_dir: str | None = None) -> "TrainConfig":
        reject_unknown(values, [f.name for f in fields(cls)],
                       "unknown training option {key!r}{hint}; see docs/training.md for the options")
        config = cls(**parse_fields(cls, values))
        if base_dir is not None:
            config.train_file = _resolve(config.train_file, base_dir)
            config.valid_file = _resolve(config.valid_file, base_dir)
            config.test_file = _resolve(config.test_file, base_dir)
            config.output_dir = _resolve(config.output_dir, base_dir)
            config.init_from = _resolve(config.init_from, base_dir)
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def time_limit_seconds(self) -> Optional[float]:
        from .budget import parse_duration

        return parse_duration(self.time_limit)

    def finetune_overrides(self) -> Dict[str, Any]:
        """With ``init_from``: the ``model`` options that may differ from the file's (dtype and
        tp_backend; the architecture is the file's)."""
        options = {} if self.model == DEFAULT_MODEL else dict(self.model or {})  # no `model` key: none
        other = sorted(set(options) - {"dtype", "tp_backend"})
        if other:
            raise ValueError(f"init_from takes the model's architecture from {self.init_from}; `model` may only "
                             f"set dtype or tp_backend, not {other}")
        return options

    def loader_workers(self) -> int:
        """DataLoader worker processes for ``preload: false`` (``data_workers``, or its default)."""
        if self.data_workers is not None:
            return self.data_workers
        return 1 if (os.cpu_count() or 1) > 1 else 0

    def model_config(self, **defaults) -> ModelConfig:
        """The :class:`ModelConfig`: ``model.preset`` (if any) with the other ``model`` keys on top.
        ``defaults`` (data statistics such as ``avg_num_neighbors``) apply unless ``model`` sets them."""
        options = dict(self.model or {})
        preset = options.pop("preset", None)
        if self.dipole_weight > 0:
            if options.get("dipole") is False:
                raise ValueError("dipole_weight > 0 needs a dipole head: remove `dipole: false` from model")
            options["dipole"] = True
        merged = {**defaults, **options}
        return ModelConfig.preset(preset, **merged) if preset else ModelConfig.from_dict(merged)


def _resolve(value, base_dir):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_resolve(v, base_dir) for v in value]
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(base_dir, value))


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a YAML file; relative paths in it are relative to the YAML file's folder."""
    path = os.fspath(path)
    with open(path) as handle:
        try:
            values = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path} is not valid YAML: {str(error).splitlines()[0]} "
                             f"({' '.join(str(error).split())[-80:]})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of options at the top level")
    return TrainConfig.from_dict(values, base_dir=os.path.dirname(os.path.abspath(path)))
