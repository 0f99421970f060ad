"""Training memory and throughput against the number of frames: in memory (``preload: true``) and
from a converted dataset read when drawn (``preload: false``).

Synthetic frames: 32-atom fcc Cu cells, rattled and strained, labelled with ASE's EMT (plumbing
data: the figures are about memory and speed, not accuracy). For each size the frames are
converted once (``mlff data convert``), then one epoch of the ``small`` preset (or ``--time-limit``
of it) runs in a fresh process per mode: in memory, from the .db with a background thread, from
the .db with one DataLoader worker process (``data_workers: 1``). The table gives the training
process's peak resident memory (ru_maxrss), the worker's (pages it shares with the training
process included), the seconds before the first step (reading, checks, statistics) and the
training steps' frames/s (waits for data included). ``--repeat K`` trains on the converted rows
copied K times by SQL (a dataset of K x size frames without the time to convert it).

    python benchmarks/bench_data.py [--sizes 1000 8000] [--threads 1] [--modes memory db db-worker]
                                    [--time-limit 5m] [--repeat 10]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

RUN = """
import resource, sys, time, yaml
start = time.perf_counter()
from mlff.train import TrainConfig, train
from mlff.train.trainer import Trainer
steps = {"first": None, "last": None, "frames": 0}
step = Trainer._train_step
def timed(self, batch, *args, **kwargs):  # the training steps' wall time, waits for data included
    steps["first"] = steps["first"] or time.perf_counter()
    loss = step(self, batch, *args, **kwargs)
    steps["last"], steps["frames"] = time.perf_counter(), steps["frames"] + len(batch)
    return loss
Trainer._train_step = timed
train(TrainConfig.from_dict(yaml.safe_load(open(sys.argv[1]))))
print("RESULT", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, steps["first"] - start,
      steps["frames"] / (steps["last"] - steps["first"]))
"""

MODES = {"memory": ("in memory", {"preload": True}),
         "db": ("from .db, thread", {"preload": False, "data_workers": 0}),
         "db-worker": ("from .db, 1 worker", {"preload": False, "data_workers": 1})}


def frames(n: int, seed: int = 0):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    base = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    for k in range(n):
        atoms = base.copy()
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.normal(0, 0.02, (3, 3))), scale_atoms=True)
        atoms.rattle(0.1, seed=k)
        atoms.calc = EMT()
        energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
        yield atoms


def repeat_rows(db: str, times: int) -> None:
    """The database's rows (and frame table) repeated ``times`` times, by SQL: a large dataset for
    the training figures without converting it (the copies are the same structures, renamed)."""
    import sqlite3

    from mlff.data.frame_table import FrameTable
    from mlff.data.store import read_table, write_table

    table = read_table(db)
    connection = sqlite3.connect(db)
    columns = [row[1] for row in connection.execute("PRAGMA table_info(systems)") if row[1] != "id"]
    (rows,) = connection.execute("SELECT MAX(id) FROM systems").fetchone()
    with connection:
        for k in range(1, times):
            values = ", ".join(f"unique_id || '-{k}'" if c == "unique_id" else c for c in columns)
            connection.execute(f"INSERT INTO systems ({', '.join(columns)}) SELECT {values} FROM systems "
                               "WHERE id <= ? ORDER BY id", (rows,))
            for name, kept in (("species", "Z, n"), ("keys", "key"), ("text_key_values", "key, value"),
                               ("number_key_values", "key, value")):
                connection.execute(f"INSERT INTO {name} ({kept}, id) SELECT {kept}, id + ? FROM {name} WHERE id <= ?",
                                   (k * rows, rows))
    connection.close()
    write_table(db, FrameTable.concatenate([table] * times))
    assert read_table(db) is not None and len(read_table(db)) == rows * times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 8000])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frames-per-file", type=int, default=10000)
    parser.add_argument("--convert-workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1,
                        help="train on the converted rows repeated this many times (SQL copies: sizes x repeat "
                             "frames without converting them)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--time-limit", default=None,
                        help="stop each run after this long (e.g. 5m; frames/s over the steps it took) "
                             "instead of after one epoch")
    args = parser.parse_args()
    import yaml
    from ase.io import write

    from mlff.data.store import convert

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print(f"{'frames':>8} {'mode':<20}{'peak RSS MB':>12}{'MB/1k frames':>14}{'worker MB':>11}{'s to 1st step':>15}"
          f"{'train frames/s':>16}")
    with tempfile.TemporaryDirectory(prefix="mlff-bench-data-") as tmp:
        for size in args.sizes:
            db, files, made = os.path.join(tmp, f"cu{size}.db"), [], frames(size)
            for first in range(0, size, args.frames_per_file):  # files as an AIMD run writes them
                files.append(os.path.join(tmp, f"cu{size}_{len(files)}.extxyz"))
                write(files[-1], [next(made) for _ in range(min(args.frames_per_file, size - first))])
            start = time.perf_counter()
            convert(files, db, workers=args.convert_workers)
            converted = time.perf_counter() - start
            for path in files:
                os.remove(path)
            print(f"{size:>8} {'(convert)':<20}{'':>12}{'':>14}{'':>11}{converted:>15.1f}", flush=True)
            if args.repeat > 1:
                repeat_rows(db, args.repeat)
                size *= args.repeat
                print(f"{size:>8} {'(rows repeated)':<20}", flush=True)
            for mode in args.modes:
                label, options = MODES[mode]
                out = os.path.join(tmp, f"run{size}{mode}")
                # validation: 5 %, at most 2000 frames (a time-limited run keeps time to validate)
                config = {"train_file": db, "valid_fraction": min(0.05, 2000 / size), "test_fraction": 0.0,
                          "model": {"preset": "small", "r_cut": 4.5, "dtype": "float32"}, "max_epochs": 1,
                          "batch_size": 4, "output_dir": out, "progress": False, "tensorboard": "off", "seed": 0,
                          **options}
                if args.time_limit:
                    config["time_limit"] = args.time_limit
                path = os.path.join(tmp, f"config{size}{mode}.yaml")
                with open(path, "w") as handle:
                    yaml.safe_dump(config, handle)
                res = subprocess.run([sys.executable, "-c", RUN, path], capture_output=True, text=True, env=env)
                line = [row for row in res.stdout.splitlines() if row.startswith("RESULT")]
                if res.returncode != 0 or not line:
                    print(f"{size:>8} {label:<20} failed: {res.stderr[-500:]}")
                    continue
                rss_kb, child_kb, to_first, rate = (float(v) for v in line[0].split()[1:])
                worker = f"{child_kb / 1024:.0f}" if options.get("data_workers") else "-"
                print(f"{size:>8} {label:<20}{rss_kb / 1024:>12.0f}{rss_kb / 1024 / size * 1000:>14.1f}{worker:>11}"
                      f"{to_first:>15.1f}{rate:>16.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
