"""The inductive-bias experiment of the seed article: learn an isotropic material's stress-strain law
from uniaxial stretches along x only, then test on stretches along y and z and on random rotations.

Material (isotropic, mildly nonlinear): sigma = lam tr(eps) I + 2 mu eps + gamma eps.eps.
Two models, same training data (64 stretches along x), same optimiser and budget:

* naive: an MLP on the 6 raw strain components -> 6 stress components;
* equivariant: strain as irreps 0e + 2e (e3nn CartesianTensor "ij=ji"), its Clebsch-Gordan square,
  an equivariant linear layer (optionally plus a gated nonlinear branch) -> stress as 0e + 2e.
  Its weights multiply only invariant-preserving channels, so whatever it learns from x stretches
  holds in every direction.

Run: python examples/symmetry/strain_stress.py [--steps 3000] [--plot docs/images/strain_stress.png]
"""

import argparse

import torch
from e3nn import o3
from e3nn.io import CartesianTensor
from e3nn.nn import Gate

LAM, MU, GAMMA = 1.0, 0.5, 4.0
VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


def stress_law(eps: torch.Tensor) -> torch.Tensor:  # [B, 3, 3] -> [B, 3, 3]
    trace = eps.diagonal(dim1=-2, dim2=-1).sum(-1)
    eye = torch.eye(3, dtype=eps.dtype)
    return LAM * trace[:, None, None] * eye + 2 * MU * eps + GAMMA * eps @ eps


def uniaxial(s: torch.Tensor, axis: int) -> torch.Tensor:
    eps = torch.zeros(len(s), 3, 3, dtype=s.dtype)
    eps[:, axis, axis] = s
    return eps


def to_voigt(t):
    return torch.stack([t[:, i, j] for i, j in VOIGT], dim=-1)


def from_voigt(v):
    t = torch.zeros(v.shape[0], 3, 3, dtype=v.dtype)
    for k, (i, j) in enumerate(VOIGT):
        t[:, i, j] = v[:, k]
        t[:, j, i] = v[:, k]
    return t


class NaiveMLP(torch.nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(6, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, hidden),
                                       torch.nn.Tanh(), torch.nn.Linear(hidden, 6))

    def forward(self, eps):
        return from_voigt(self.net(to_voigt(eps) * 20.0) / 10.0)


class EquivariantNet(torch.nn.Module):
    """eps (0e+2e) -> features [eps, its Clebsch-Gordan square] -> sigma (0e+2e) by an equivariant
    Linear layer; with ``gated=True`` a gated nonlinear branch Linear(Gate(Linear(features))) is
    added (initialised to zero)."""

    def __init__(self, gated=False, hidden=16):
        super().__init__()
        self.cartesian = CartesianTensor("ij=ji")  # 3x3 symmetric <-> 1x0e + 1x2e
        # change of basis (6, 3, 3) between the symmetric 3x3 matrix and its 0e + 2e components
        self.register_buffer("basis", self.cartesian.reduced_tensor_products().change_of_basis.to(torch.float64))
        # all Clebsch-Gordan products of eps with itself that give 0e or 2e (fixed, no weights)
        self.square = o3.TensorSquare(self.cartesian, filter_ir_out=["0e", "2e"])
        features = self.cartesian + self.square.irreps_out  # concatenation order, as torch.cat below
        self.polynomial = o3.Linear(features, self.cartesian)
        self.gated = gated
        if gated:
            self.gate = Gate(f"{hidden}x0e", [torch.tanh], f"{hidden}x0e", [torch.sigmoid], f"{hidden}x2e")
            self.linear_in = o3.Linear(features, self.gate.irreps_in)
            self.correction = o3.Linear(self.gate.irreps_out, self.cartesian)
            with torch.no_grad():
                self.correction.weight.zero_()

    def forward(self, eps):
        x = torch.einsum("kij,bij->bk", self.basis.to(eps.dtype), eps) * 20.0  # strain as 0e + 2e
        features = torch.cat([x, self.square(x)], dim=-1)
        out = self.polynomial(features)
        if self.gated:
            out = out + self.correction(self.gate(self.linear_in(features)))
        return torch.einsum("kij,bk->bij", self.basis.to(eps.dtype), out / 10.0)  # stress, 3x3


def train(model, eps, sigma, steps, lr=1e-2):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = ((model(eps) - sigma) ** 2).mean()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def relative_error(model, eps):
    with torch.no_grad():
        truth = stress_law(eps)
        return float(torch.linalg.norm(model(eps) - truth) / torch.linalg.norm(truth))


def run_experiment(steps=3000, seed=0):
    torch.manual_seed(seed)
    dtype = torch.float64
    s_train = torch.linspace(-0.05, 0.05, 64, dtype=dtype)
    s_test = torch.linspace(-0.05, 0.05, 41, dtype=dtype)
    eps_train = uniaxial(s_train, 0)
    rotations = o3.rand_matrix(len(s_test), dtype=dtype)
    tests = {
        "x stretch (seen)": uniaxial(s_test, 0),
        "y stretch": uniaxial(s_test, 1),
        "z stretch": uniaxial(s_test, 2),
        "rotated x stretch": rotations @ uniaxial(s_test, 0) @ rotations.transpose(1, 2),
    }
    models = {"naive MLP": NaiveMLP().to(dtype), "equivariant": EquivariantNet().to(dtype),
              "equivariant + gate": EquivariantNet(gated=True).to(dtype)}
    table = {}
    for name, model in models.items():
        train(model, eps_train, stress_law(eps_train), steps)
        table[name] = {test: relative_error(model, eps) for test, eps in tests.items()}
    return table, models, s_test


def plot(models, s_test, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, axis, label in ((axes[0], 0, "x (training direction)"), (axes[1], 1, "y (never seen)")):
        eps = uniaxial(s_test, axis)
        ax.plot(s_test, stress_law(eps)[:, axis, axis], "k-", lw=3, alpha=0.4, label="true law")
        with torch.no_grad():
            for (name, model), style in zip(models.items(), ("r--", "b:", "g-.")):
                ax.plot(s_test, model(eps)[:, axis, axis], style, lw=2, label=name)
        ax.set(title=f"uniaxial stretch along {label}", xlabel="strain", ylabel="stress along the stretch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--plot", default="strain_stress.png")
    args = parser.parse_args()
    table, models, s_test = run_experiment(args.steps)
    tests = list(next(iter(table.values())))
    print("relative stress error (|pred - true| / |true|), trained on x stretches only")
    print(f"{'model':<22}" + "".join(f"{t:>20}" for t in tests))
    for name, row in table.items():
        print(f"{name:<22}" + "".join(f"{row[t]:>20.2e}" for t in tests))
    plot(models, s_test, args.plot)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
