"""Converted datasets: labelled frames in one ASE database file (SQLite, ``.db``).

``mlff data convert`` reads extxyz / OUTCAR / vasprun.xml / anything ASE reads once, one input file
per worker process, validates every frame (:func:`~mlff.data.validate.validate_frames`: labels,
NaN, shapes, overlapping atoms) and writes them to one database that other tools open too
(``ase db train.db``, ``ase.db.connect``): each row is a structure with its labels as the standard
calculator results (``energy``, ``forces``, ``stress`` in Voigt order, ``dipole``) and key-value
pairs ``source`` (the input record, ``file:index``), ``config_type``, ``charge`` and ``weight`` (the
frame's loss weight) where given.
The database's metadata says it was written by mlff (``mlff_store``: the format's version), with
the label keys it was read with, the inputs and the dataset summary. A table of its own
(``mlff_frame_table``, which ase.db ignores) holds the frame table of :mod:`mlff.data.frame_table`:
each frame's elements, label summaries, neighbour counts and fingerprint, so that training takes
its splits, checks and statistics from it instead of reading every frame before the first step.

Reading (:func:`read_store`, and so ``read_frames`` / ``train_file`` / ``mlff evaluate`` with a
``.db`` path) gives :class:`~mlff.data.readers.Frame` objects named ``train.db:12 (OUTCAR:3)``; a
database of another tool is read with the caller's label keys (key-value pairs and data included);
a store of a newer format than this mlff reads is refused with a message that says so.

The file is written as ``OUTPUT.partial`` and renamed at the end: an interrupted conversion leaves
no half-written dataset under the final name.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Optional

import numpy as np

from .frame_table import FrameTable, describe
from .readers import Frame, LabelKeys, frame_from_atoms, read_frames

STORE_VERSION = 1
SUFFIX = ".db"
TABLE = "mlff_frame_table"  # the frame table's SQLite table


def is_store(path) -> bool:
    return isinstance(path, (str, os.PathLike)) and os.fspath(path).endswith(SUFFIX)


def _read_and_check(path: str, keys: LabelKeys, reader: str, need_energy: bool, need_forces: bool,
                    min_distance: float) -> tuple[list[Frame], FrameTable]:
    """One input file, read and validated, and its frames' table (in a worker process)."""
    from .validate import validate_frames

    frames = read_frames(path, keys, reader)
    if not frames:
        raise ValueError(f"{path}: no frames")
    validate_frames(frames, need_energy=need_energy, need_forces=need_forces, min_distance=min_distance)
    return frames, FrameTable.from_frames(frames)


def _row(frame: Frame):
    """``frame`` as the Atoms that ase.db stores, and its key-value pairs."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.stress import full_3x3_to_voigt_6_stress

    atoms = frame.atoms.copy()
    atoms.info.clear()
    results = {}
    if frame.energy is not None:
        results["energy"] = frame.energy
    if frame.forces is not None:
        results["forces"] = frame.forces
    if frame.stress is not None:
        stress = np.asarray(frame.stress, dtype=np.float64)
        if np.abs(stress - stress.T).max() > 1e-10 * max(np.abs(stress).max(), 1e-300):
            raise ValueError(f"{frame.source}: the stress is not symmetric ({stress.tolist()}); fix the label")
        results["stress"] = full_3x3_to_voigt_6_stress(stress)
    if frame.dipole is not None:
        results["dipole"] = frame.dipole
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    pairs = {"source": frame.source}
    if "config_type" in frame.atoms.info:
        pairs["config_type"] = str(frame.atoms.info["config_type"])
    if frame.charge:
        pairs["charge"] = float(frame.charge)
    if frame.weight != 1.0:
        pairs["weight"] = float(frame.weight)
    return atoms, pairs


def convert(inputs: Sequence[str], output: str, keys: LabelKeys = LabelKeys(), reader: str = "ase",
            workers: int = 1, need_energy: bool = True, need_forces: bool = True, min_distance: float = 0.5,
            overwrite: bool = False, progress: Optional[Callable[[int, int, int], None]] = None) -> dict:
    """Read, check and write ``inputs`` (paths) into the database ``output`` with its frame table
    (:mod:`mlff.data.frame_table`); returns its summary (:func:`~mlff.data.readers.describe`).
    ``workers`` processes read the input files side by side (one file each at a time); rows keep
    the inputs' order. ``progress(files_done, files, frames_written)``
    is called after each file."""
    from ase.db import connect

    from .. import __version__
    from .validate import check_min_distance

    inputs = [os.fspath(p) for p in inputs]
    output = os.fspath(output)
    if not inputs:
        raise ValueError("no input files to convert")
    check_min_distance(min_distance)
    if not output.endswith(SUFFIX):
        raise ValueError(f"the output {output!r} must end in {SUFFIX} (an ASE database)")
    for path in inputs:
        if not os.path.exists(path):
            raise FileNotFoundError(f"data file {path!r} does not exist")
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output} exists: pass --overwrite to replace it, or choose another name")
    partial = output + ".partial"
    if os.path.exists(partial):
        os.remove(partial)
    parts, written = [], 0
    args = (keys, reader, need_energy, need_forces, min_distance)
    try:
        processes = max(1, min(workers, len(inputs)))
        with ProcessPoolExecutor(max_workers=processes) as pool:
            # a window of files read ahead (not all of them: their frames would pile up in memory
            # while the database is written)
            ahead = deque(pool.submit(_read_and_check, path, *args) for path in inputs[:2 * processes])
            db = connect(partial, type="db", append=False)
            for done in range(1, len(inputs) + 1):
                frames, table = ahead.popleft().result()  # in order: rows follow the inputs
                if done - 1 + 2 * processes < len(inputs):
                    ahead.append(pool.submit(_read_and_check, inputs[done - 1 + 2 * processes], *args))
                with db:  # one transaction per file
                    for frame in frames:
                        atoms, pairs = _row(frame)
                        db.write(atoms, key_value_pairs=pairs)
                written += len(frames)
                parts.append(table)
                del frames
                if progress is not None:
                    progress(done, len(inputs), written)
        table = FrameTable.concatenate(parts)
        summary = describe(table)
        db.metadata = {"mlff_store": STORE_VERSION, "written_by": f"mlff {__version__}", "inputs": inputs,
                       "label_keys": vars(keys), "reader": reader, "summary": summary}
        write_table(partial, table)
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return summary


def write_table(path: str, table: FrameTable) -> None:
    """The frame table, in a table of its own in the database file (ase.db ignores it)."""
    import sqlite3

    with sqlite3.connect(path) as connection:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (data BLOB)")
        connection.execute(f"DELETE FROM {TABLE}")
        connection.execute(f"INSERT INTO {TABLE} VALUES (?)", (sqlite3.Binary(table.to_bytes()),))
    connection.close()


def read_table(path) -> Optional[FrameTable]:
    """The frame table of a dataset mlff converted, or None (another tool's database, one converted
    before tables were stored, or one whose rows were added or removed since)."""
    import sqlite3

    connection = sqlite3.connect(os.fspath(path))
    try:
        if not connection.execute("SELECT name FROM sqlite_master WHERE type='table' AND name=?", (TABLE,)).fetchone():
            return None
        (data,), = connection.execute(f"SELECT data FROM {TABLE}").fetchall()
        rows, last = connection.execute("SELECT COUNT(*), MAX(id) FROM systems").fetchone()
    finally:
        connection.close()
    table = FrameTable.from_bytes(bytes(data))
    return table if table is not None and len(table) == rows == (last or 0) else None


def store_metadata(path) -> dict:
    """The database's metadata; ``{}`` for a database another tool wrote. Raises ``ValueError``
    for a store of a newer format than this mlff reads."""
    from ase.db import connect

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    try:
        metadata = connect(path, type="db").metadata
    except Exception as error:
        raise ValueError(f"could not open {path!r} as an ASE database ({error}); convert data with "
                         f"`mlff data convert INPUT... -o {os.path.basename(path)}`") from error
    version = metadata.get("mlff_store")
    if version is not None and int(version) > STORE_VERSION:
        from .. import __version__

        raise ValueError(f"{path} was written by {metadata.get('written_by', 'a newer mlff')} in dataset format "
                         f"{version}; mlff {__version__} reads format {STORE_VERSION}: upgrade mlff, or "
                         "convert the original files again with this version")
    return metadata


def _frame(row, k: int, path: str, keys: LabelKeys, mine: bool) -> Frame:
    """Row ``k`` (from 0) of the database as a Frame (see the module docstring)."""
    atoms = row.toatoms()
    pairs = dict(row.key_value_pairs)
    where = f"{path}:{k}" + (f" ({pairs['source']})" if "source" in pairs else "")
    if not mine:  # another tool's labels may be key-value pairs or data
        atoms.info.update(pairs)
        for name, value in dict(row.data).items():
            value = np.asarray(value)
            if value.ndim >= 1 and value.shape[0] == len(atoms):
                atoms.arrays[name] = value
            else:
                atoms.info[name] = value
    frame = frame_from_atoms(atoms, keys if not mine else LabelKeys(), where)
    if "config_type" in pairs:
        frame.atoms.info["config_type"] = str(pairs["config_type"])
    if mine and "charge" in pairs:
        frame.charge = float(pairs["charge"])
    if mine and "weight" in pairs:
        frame.weight = float(pairs["weight"])
    return frame


class StoreFrames(Sequence):
    """The frames of a database, read from disk when indexed (``preload: false`` in training): a
    sequence of row ids and a connection per process (DataLoader workers, threads of one process
    share it under a lock). ``subset(indices)`` is a view of some of the rows."""

    def __init__(self, path, keys: LabelKeys = LabelKeys(), ids=None):
        import sqlite3

        self.path = os.fspath(path)
        self.keys = keys
        self.mine = "mlff_store" in store_metadata(self.path)
        if ids is None:
            with sqlite3.connect(self.path) as connection:  # ase.db's table of structures
                ids = [row[0] for row in connection.execute("SELECT id FROM systems ORDER BY id")]
        self.ids = np.asarray(ids, dtype=np.int64)
        self._db, self._pid = None, None
        self._lock = threading.Lock()
        self._table = False  # the whole file's frame table: not read yet
        self._rows_table = None  # these rows' (cached: the statistics ask several times)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.subset(np.arange(len(self))[index])
        from ase.db import connect

        row_id = int(self.ids[index])
        with self._lock:
            if self._pid != os.getpid():
                self._db, self._pid = connect(self.path, type="db"), os.getpid()
            row = self._db.get(id=row_id)
        return _frame(row, row_id - 1, self.path, self.keys, self.mine)

    def __iter__(self):
        """In order; a view in ascending row order (the whole file, the training splits) streams
        through one query, about twice as fast as reading row by row (the statistics' passes)."""
        if len(self.ids) == 0 or np.any(np.diff(self.ids) <= 0):
            yield from (self[k] for k in range(len(self)))
            return
        from ase.db import connect

        wanted = set(self.ids.tolist()) if len(self.ids) < int(self.ids[-1] - self.ids[0] + 1) else None
        query = f"id>={int(self.ids[0])},id<={int(self.ids[-1])}"
        for row in connect(self.path, type="db").select(query, sort="id"):
            if wanted is None or row.id in wanted:
                yield _frame(row, row.id - 1, self.path, self.keys, self.mine)

    def subset(self, indices) -> "StoreFrames":
        view = StoreFrames.__new__(StoreFrames)
        view.path, view.keys, view.mine = self.path, self.keys, self.mine
        view.ids = self.ids[np.asarray(indices, dtype=np.int64)]
        view._db, view._pid, view._lock = None, None, threading.Lock()
        view._table = self._whole_table()  # one copy for all the views
        view._rows_table = None
        return view

    def _whole_table(self) -> Optional[FrameTable]:
        if self._table is False:
            self._table = read_table(self.path) if self.mine else None
        return self._table

    def frame_table(self) -> Optional[FrameTable]:
        """The stored frame table of these rows (:func:`read_table`), or None. Another tool's
        database has none: its label keys are the caller's. Taken from the whole file's once,
        which the view then lets go of."""
        if self._rows_table is None:
            table = self._whole_table()
            if table is None:
                return None
            whole = len(self.ids) == len(table) and np.array_equal(self.ids, np.arange(1, len(table) + 1))
            self._rows_table = table if whole else table.take(self.ids - 1)
            self._table = table if whole else False  # read again if a subset asks
        return self._rows_table

    def key_values(self, key: str) -> dict:
        """``{position in this view: value}`` of the rows that have the key-value pair ``key``, from
        ase.db's key tables without reading the structures."""
        import sqlite3

        with sqlite3.connect(self.path) as connection:
            rows = [row for table in ("text_key_values", "number_key_values")
                    for row in connection.execute(f"SELECT id, value FROM {table} WHERE key=?", (key,))]
        position = {int(row_id): k for k, row_id in enumerate(self.ids.tolist())}
        return {position[row_id]: value for row_id, value in rows if row_id in position}

    def weight_labels(self) -> list:
        """Each frame's ``(config_type or None, its own loss weight)``, without reading the structures."""
        from .readers import loss_weight

        families = self.key_values("config_type")
        key = "weight" if self.mine else self.keys.weight_key
        own = {k: loss_weight(v, f"{self.path}:{int(self.ids[k]) - 1}: {key}") for k, v in self.key_values(key).items()}
        return [(str(families[k]) if k in families else None, own.get(k, 1.0)) for k in range(len(self))]

    def __getstate__(self):  # to worker processes: without the connection
        state = dict(self.__dict__, _db=None, _pid=None, _table=False, _rows_table=None)
        state.pop("_lock")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


def read_store(path, keys: LabelKeys = LabelKeys()) -> list[Frame]:
    """The frames of a database (see the module docstring), named ``path:k (original source)``."""
    from ase.db import connect

    path = os.fspath(path)
    mine = "mlff_store" in store_metadata(path)
    return [_frame(row, row.id - 1, path, keys, mine) for row in connect(path, type="db").select(sort="id")]
