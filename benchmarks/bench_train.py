"""Training throughput: one optimiser step (energy + force + stress loss, so a double backward
through the convolution) on batches of reference structures, as ``mlff train`` runs it.

Prints frames/s and atoms/s for each model dtype. Runs with any mlff version (the model options
that a version does not know are left out), so the same script times the code before and after a
change side by side:

    python benchmarks/bench_train.py [--data datasets/cu_emt.extxyz] [--batch-size 4] \\
        [--model num_layers=2 num_features=64 l_max=2 parity=false] [--steps 10]
"""

import argparse
import dataclasses
import os
import time

import numpy as np


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(here, "..", "datasets", "cu_emt.extxyz"))
    parser.add_argument("--preset", default="small")
    parser.add_argument("--model", nargs="+", default=[], metavar="KEY=VALUE")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    import yaml
    from ase.io import read

    import mlff
    from mlff.data import SpeciesMap, from_ase, keys
    from mlff.data.atomic_data import collate
    from mlff.train.loss import batch_counts, loss_fn

    torch.set_num_threads(args.threads)
    try:  # keep freed per-edge buffers for reuse, as the trainer does (newer mlff only)
        from mlff.runtime import tune_allocator
        tune_allocator()
    except ImportError:
        pass
    frames = read(args.data, ":")
    species = sorted({s for a in frames for s in a.get_chemical_symbols()})
    overrides = {}
    for item in args.model:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    known = {f.name for f in dataclasses.fields(mlff.ModelConfig)}
    dropped = sorted(set(overrides) - known)
    overrides = {k: v for k, v in overrides.items() if k in known}
    print(f"training step benchmark: mlff {mlff.__version__}, preset {args.preset}, overrides {overrides}"
          + (f" (not in this version: {dropped})" if dropped else "")
          + f", batch {args.batch_size}, {args.threads} threads, {len(frames)} frames of {args.data}")
    print(f"{'dtype':<9}{'ms/step':>9}{'frames/s':>10}{'atoms/s':>9}")
    for dtype in args.dtypes:
        config = mlff.ModelConfig.preset(args.preset, **overrides, dtype=dtype)
        model = mlff.build_model(config, species, seed=0).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        smap = SpeciesMap(species)
        items = []
        for atoms in frames:
            data = from_ase(atoms, smap, config.r_cut)
            data[keys.REF_ENERGY_KEY] = torch.tensor([atoms.get_potential_energy()], dtype=torch.float64)
            data[keys.REF_FORCES_KEY] = torch.from_numpy(atoms.get_forces().astype(np.float64))
            has_stress = "stress" in atoms.calc.results
            stress = atoms.get_stress(voigt=False) if has_stress else np.zeros((3, 3))
            data[keys.REF_STRESS_KEY] = torch.from_numpy(np.asarray(stress, dtype=np.float64)).unsqueeze(0)
            data[keys.HAS_STRESS_KEY] = torch.full((1,), float(has_stress), dtype=torch.float64)
            data[keys.HAS_DIPOLE_KEY] = torch.zeros(1, dtype=torch.float64)
            items.append(data)
        weights = {"energy": 1.0, "forces": 10.0, "stress": 100.0, "dipole": 0.0}
        rng = np.random.default_rng(0)

        def step():
            chosen = [items[i] for i in rng.choice(len(items), args.batch_size, replace=False)]
            batch = collate(chosen)
            loss = loss_fn(model(batch), batch, batch_counts(chosen), weights)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return sum(len(d[keys.POSITIONS_KEY]) for d in chosen)

        for _ in range(2):
            step()
        times, atoms_done = [], 0
        for _ in range(args.steps):
            tick = time.perf_counter()
            atoms_done += step()
            times.append(time.perf_counter() - tick)
        median = sorted(times)[len(times) // 2]
        per_step_atoms = atoms_done / args.steps
        print(f"{dtype:<9}{1e3 * median:>9.1f}{args.batch_size / median:>10.1f}{per_step_atoms / median:>9.0f}",
              flush=True)


if __name__ == "__main__":
    main()
