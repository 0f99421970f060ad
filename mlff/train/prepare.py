"""Before the first step: the training and validation frames read, checked and converted, the
model's species, its configuration (with the data's average number of neighbours) and the
energy shifts and force scale, from the data or from a model being fine-tuned; and the model
training starts from."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..data.dataset import LazyAtomicData, element_presence, split_indices, to_atomic_data
from ..data.fingerprint import fingerprint
from ..data.frame_table import table_of
from ..data.readers import Frame, LabelKeys, describe, read_frames, summary_line
from ..data.store import StoreFrames, is_store
from ..data.stats import average_num_neighbors, energy_shifts, force_rms, repulsion_radii
from ..data.validate import DataValidationError, validate_frames
from ..model import ModelConfig, Potential, build_model
from ..model.config import RADII_FROM_DATA
from ..data.pairs import covalent_sum
from .config import TrainConfig
from .finetune import freeze, new_species_shifts, with_species


@dataclass
class PreparedData:
    train: Sequence[dict]  # AtomicData dicts (mlff.data.keys); a LazyAtomicData with preload: false
    valid: Sequence[dict]
    test: Sequence[dict]  # held out: scored once, at the end
    test_frames: Sequence[Frame]
    split_fingerprints: Dict[str, Sequence]  # "train"/"valid"/"test" -> structure fingerprints (fingerprints())
    train_sizes: Sequence[int]  # atoms per training frame (for batches by atom count)
    species: List[str]
    model_config: ModelConfig
    shifts: np.ndarray  # energy shift per species (eV)
    scale: float  # energy/force scale (eV/Å)
    summary: Dict[str, object]  # what dataset_summary.json holds


def load_datasets(config: TrainConfig) -> tuple[List[Frame], List[Frame], List[Frame]]:
    """Training, validation and test frames. Validation: ``valid_file``, else a seeded
    ``valid_fraction`` of the training file. Test: ``test_file``, else a seeded ``test_fraction``
    of what remains of the training file (the validation split is the same with or without it).
    Every element keeps a training frame."""
    label_keys = LabelKeys(config.energy_key, config.forces_key, config.stress_key, config.dipole_key,
                           weight_key=config.weight_key)

    def read(source):
        if not config.preload and is_store(source):  # read from disk when drawn
            return StoreFrames(source, label_keys)
        return read_frames(source, label_keys, config.reader)

    train = read(config.train_file)
    _, elements = element_matrix(train)
    if config.valid_file:
        valid = read(config.valid_file)
    else:
        train_idx, valid_idx = split_indices(len(train), config.valid_fraction, config.seed, elements)
        train, valid = _take(train, train_idx), _take(train, valid_idx)
        elements = elements[train_idx]
    if config.test_file:
        return train, valid, read(config.test_file)
    if config.test_fraction <= 0.0 or len(train) < 2:
        return train, valid, []
    train_idx, test_idx = split_indices(len(train), config.test_fraction, config.seed + 1, elements)
    return _take(train, train_idx), valid, _take(train, test_idx)


def _take(frames, indices):
    """``frames[indices]``: a view of a StoreFrames, else a list."""
    return frames.subset(indices) if isinstance(frames, StoreFrames) else [frames[i] for i in indices]


def element_matrix(frames: Sequence[Frame]) -> tuple[List[str], np.ndarray]:
    """The elements (sorted) and which of them each frame holds, ``(frames, elements)`` booleans
    (a converted dataset's from its frame table)."""
    table = table_of(frames)
    if table is not None:
        return list(table.symbols), table.counts > 0
    return element_presence([set(f.atoms.get_chemical_symbols()) for f in frames])


def fingerprints(frames: Sequence[Frame]):
    """Each frame's structure fingerprint (split_fingerprints.json): uint64 values from a frame
    table, else 16-digit hex strings."""
    table = table_of(frames)
    return table.fingerprints if table is not None else [fingerprint(f.atoms) for f in frames]


def atom_counts(frames: Sequence[Frame]):
    table = table_of(frames)
    return table.atoms if table is not None else [len(f.atoms) for f in frames]


def training_species(train: Sequence[Frame], held_out: Sequence[Sequence[Frame]], listed: Optional[List[str]],
                     pretrained: List[str]) -> List[str]:
    """The model's species: ``listed`` (the `species` option) or the training frames' elements,
    sorted. Every species must occur in a training frame (or be known to the ``pretrained`` model):
    an element seen only in validation data would get untrained weights and a zero energy shift,
    and the deployed model would accept it. Errors name the frame and the element. ``held_out``:
    the validation and test frames."""
    symbols, present = element_matrix(train)
    seen = {s for s, anywhere in zip(symbols, present.any(axis=0)) if anywhere}
    species = list(listed) if listed else sorted(seen)
    untrained = [s for s in species if s not in seen and s not in pretrained]
    if untrained:
        raise DataValidationError(f"species {untrained} occur in no training frame, so their weights would stay "
                                  "untrained: add training frames with them or remove them from `species`")
    for frames in held_out:
        symbols, present = element_matrix(frames)
        outside = [k for k, s in enumerate(symbols) if s not in seen and s not in pretrained]
        bad = np.flatnonzero(present[:, outside].any(axis=1))
        if len(bad):
            only = sorted(symbols[k] for k in outside if present[bad[0], k])
            raise DataValidationError(f"{frames[int(bad[0])].source}: element(s) {only} occur only in the validation "
                                      "or test data; a model cannot learn an element there: add training frames with "
                                      "them or drop the frame")
    return species


def weight_labels(frames: Sequence[Frame]) -> List[tuple]:
    """Each frame's ``(config_type or None, its own loss weight)`` (a converted dataset's from its
    key-value pairs, without reading the structures)."""
    if isinstance(frames, StoreFrames):
        return frames.weight_labels()
    return [(f.atoms.info.get("config_type"), f.weight) for f in frames]


def describe_loss_weights(train: Sequence[Frame], type_weights: Dict[str, float]) -> Optional[str]:
    """One log line on the training frames' loss weights (None when every weight is 1). Errors: a
    ``config_type_weights`` name that no training frame has (a typo would otherwise weigh nothing),
    and training frames whose weights are all 0."""
    labels = weight_labels(train)
    families = Counter(family for family, _ in labels if family is not None)
    unknown = sorted(set(type_weights) - set(families))
    if unknown:
        raise DataValidationError(
            f"config_type_weights names {unknown}, but no training frame has that config_type (the extxyz info "
            f"key); the training frames' config_types: {sorted(families) or 'none'}")
    weights = np.array([own * type_weights.get(family, 1.0) for family, own in labels])
    if len(weights) and not (weights > 0).any():
        raise DataValidationError("every training frame has loss weight 0 (config_weight x config_type_weights): "
                                  "nothing would be fitted; give some frames a positive weight")
    own = np.array([w for _, w in labels])
    if np.all(weights == 1.0):
        return None
    parts = [f"config_type {name} x{w:g} ({families[name]} frames)" for name, w in sorted(type_weights.items())]
    if (own != 1.0).any():
        parts.append(f"{int((own != 1.0).sum())} frames with their own weight ({own.min():g}-{own.max():g})")
    zero = int((weights == 0).sum())
    return f"loss weights: {'; '.join(parts)}" + (f"; {zero} training frames weigh 0" if zero else "")


def describe_repulsion(radii: dict) -> str:
    """One log line: where the pair repulsion switches off."""
    if not radii:
        return "pair repulsion: switched off at the covalent-radius sum of every pair"
    shown = ", ".join(f"{k} {r:.3f} Å (covalent {covalent_sum(*k.split('-')):.2f})" for k, r in radii.items())
    return f"pair repulsion: switched off at {shown}; the other pairs at the covalent-radius sum"


def prepare_data(c: TrainConfig, pretrained: Optional[Potential], saved_model_config: Optional[dict],
                 log: Callable[[str], None]) -> PreparedData:
    """Read, check and convert the data and derive the model's configuration and statistics.
    ``saved_model_config``: the configuration of the run being resumed (it wins over a default that
    changed since, and the difference is logged)."""
    train, valid, test = load_datasets(c)
    species = training_species(train, (valid, test), c.species, pretrained.species if pretrained else [])
    if pretrained is not None:  # its species keep their order; new ones come after
        old = list(pretrained.species)
        species = old + [s for s in species if s not in old]
    need_forces = c.forces_weight > 0
    validate_frames(train, species, need_forces=need_forces, min_distance=c.min_distance)
    validate_frames(valid, species, need_forces=need_forces, min_distance=c.min_distance)
    if test:
        validate_frames(test, species, need_forces=False, min_distance=c.min_distance)
    if c.dipole_weight > 0 and not any(f.dipole is not None for f in train):
        raise ValueError(f"dipole_weight > 0 but no training frame has a dipole label "
                         f"(looked for {c.dipole_key!r}); set dipole_key or dipole_weight: 0")
    summary = {"train": describe(train), "valid": describe(valid), "species": species}
    if test:
        summary["test"] = describe(test)
    held_out = f" / {len(test)} test" if test else " (no test set: test_fraction 0 and no test_file)"
    log(f"data: {summary['train']['frames']} training / {summary['valid']['frames']} validation{held_out} frames, "
        + summary_line(summary["train"]))
    weights_line = describe_loss_weights(train, c.config_type_weights)
    if weights_line:
        log(weights_line)

    def convert(frames, r_cut):
        if c.preload:
            return to_atomic_data(frames, species, r_cut, c.config_type_weights)
        return LazyAtomicData(frames, species, r_cut, c.config_type_weights)

    train_graphs = None  # (r_cut, the training frames' graphs), where built early
    if pretrained is not None:
        model_config = ModelConfig.from_dict({**pretrained.config.to_dict(), **c.finetune_overrides()})
        known = dict(zip(pretrained.species, pretrained.scale_shift.shift.tolist()))
        shifts = np.array(new_species_shifts(train, species, known if c.init_shifts == "keep" else {}, c.E0))
        scale = float(pretrained.scale_shift.scale)
        new = [s for s in species if s not in pretrained.species]
        log(f"fine-tuning {c.init_from} (species {pretrained.species}"
            f"{f', adding {new}' if new else ''}; energy shifts {c.init_shifts})")
    else:
        model_config = c.model_config()
        if "avg_num_neighbors" not in (c.model or {}):
            if c.preload and table_of(train) is None:  # the graphs training needs, counted as they are built
                train_graphs = (model_config.r_cut, convert(train, model_config.r_cut))
            model_config = c.model_config(avg_num_neighbors=average_num_neighbors(
                train, model_config.r_cut, train_graphs[1] if train_graphs else None))
        shifts = energy_shifts(train, species, c.E0)
        scale = force_rms(train)
    if model_config.pair_repulsion_radii == RADII_FROM_DATA:
        radii = repulsion_radii(train, species) if model_config.pair_repulsion == "zbl" else {}
        model_config = dataclasses.replace(model_config, pair_repulsion_radii=radii)
    if saved_model_config is not None:  # resuming: the run's architecture, even if a default changed since
        saved = ModelConfig.from_saved(saved_model_config)
        changed = sorted(k for k, v in saved.to_dict().items() if getattr(model_config, k) != v)
        if changed:
            run = ", ".join(f"{k}={getattr(saved, k)!r}" for k in changed)
            default = ", ".join(f"{k}={getattr(model_config, k)!r}" for k in changed)
            log(f"resuming with the model the run started with: {run} (this mlff's default: {default})")
            model_config = saved
    summary["statistics"] = {"energy_shifts_eV": dict(zip(species, shifts.tolist())),
                             "force_rms_eV_per_A": scale, "avg_num_neighbors": model_config.avg_num_neighbors}
    if model_config.pair_repulsion == "zbl":
        summary["statistics"]["pair_repulsion_radii"] = model_config.pair_repulsion_radii
        log(describe_repulsion(model_config.pair_repulsion_radii))
    r_cut = model_config.r_cut
    if train_graphs is None or train_graphs[0] != r_cut:  # (a resumed run keeps the cutoff it started with)
        train_graphs = (r_cut, convert(train, r_cut))
    return PreparedData(train=train_graphs[1], valid=convert(valid, r_cut), test=convert(test, r_cut), test_frames=test,
                        split_fingerprints={"train": fingerprints(train), "valid": fingerprints(valid),
                                            "test": fingerprints(test)},
                        train_sizes=atom_counts(train), species=species, model_config=model_config,
                        shifts=shifts, scale=scale, summary=summary)


def starting_model(c: TrainConfig, data: PreparedData, pretrained: Optional[Potential],
                   log: Callable[[str], None]) -> Potential:
    """A new model of ``c.seed`` or the ``pretrained`` one grown to the data's species, with the
    data's energy shifts and scale, and the ``freeze`` option applied."""
    if pretrained is not None:
        model = with_species(pretrained, data.species, data.model_config, seed=c.seed)
    else:
        model = build_model(data.model_config, data.species, seed=c.seed)
    model.scale_shift.set(data.scale, data.shifts)
    if c.freeze:
        frozen = freeze(model, c.freeze)
        log(f"frozen: {len(frozen)} parameter tensors under {c.freeze}")
    return model
