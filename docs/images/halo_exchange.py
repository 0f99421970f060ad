"""Draws halo_exchange.png (docs/lammps.md): the ghost atoms one MPI rank keeps in the two halo
modes of pair_style mlff. Run: python docs/images/halo_exchange.py"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

R_CUT, LAYERS, SIDE = 1.0, 3, 3.0  # one rank's domain SIDE x SIDE, in units of r_cut


def panel(ax, shell, title, exchange):
    rng = np.random.default_rng(3)
    lo, hi = -shell, SIDE + shell
    # the same atoms (same density) in both panels
    points = rng.uniform(-LAYERS * R_CUT - 0.3, SIDE + LAYERS * R_CUT + 0.3, size=(1400, 2))
    inside = np.all((points >= 0) & (points <= SIDE), axis=1)
    ghost = np.all((points >= lo) & (points <= hi), axis=1) & ~inside
    ax.add_patch(Rectangle((lo, lo), hi - lo, hi - lo, facecolor="#fde2c4", edgecolor="#d08a3c", lw=1.2))
    ax.add_patch(Rectangle((0, 0), SIDE, SIDE, facecolor="#cfe3f7", edgecolor="#2b6cb0", lw=1.5))
    ax.scatter(*points[inside].T, s=9, color="#2b6cb0", label="local atoms (own energy)")
    ax.scatter(*points[ghost].T, s=9, color="#d08a3c", label="ghost atoms")
    ax.scatter(*points[~inside & ~ghost].T, s=5, color="#dddddd")
    if exchange:
        for start, end, colour in [((SIDE + 0.55, 2.2), (SIDE + 1.35, 2.2), "#2f855a"),
                                   ((SIDE + 1.35, 0.8), (SIDE + 0.55, 0.8), "#9b2c2c")]:
            ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=colour, lw=2))
        ax.text(SIDE + 1.5, 2.2, "after each layer but the last:\nthe owners' new features\n-> their ghosts (forward comm)",
                va="center", fontsize=8, color="#2f855a")
        ax.text(SIDE + 1.5, 0.8, "backward, layer by layer:\ngradients on ghost features\n-> their owners (reverse comm)",
                va="center", fontsize=8, color="#9b2c2c")
        ax.plot([SIDE, SIDE + R_CUT], [SIDE + 0.35, SIDE + 0.35], color="k", lw=1)
        ax.text(SIDE + 0.5, SIDE + 0.45, "r_cut", ha="center", fontsize=8)
    else:
        ax.plot([SIDE, SIDE + shell], [SIDE + 0.35, SIDE + 0.35], color="k", lw=1)
        ax.text(SIDE + shell / 2, SIDE + 0.45, f"{LAYERS} x r_cut", ha="center", fontsize=8)
        ax.text(hi + 0.15, SIDE / 2, "ghosts recompute\nlayers 0..L-2\nthemselves:\nno communication\nbetween layers",
                va="center", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(-LAYERS * R_CUT - 0.5, SIDE + LAYERS * R_CUT + 3.6)
    ax.set_ylim(-LAYERS * R_CUT - 0.5, SIDE + LAYERS * R_CUT + 0.5)
    ax.set_aspect("equal")
    ax.axis("off")


def main():
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    panel(axes[0], LAYERS * R_CUT, f"halo shell: ghosts within L x r_cut (L = {LAYERS})", exchange=False)
    panel(axes[1], R_CUT, "halo exchange (default): ghosts within r_cut", exchange=True)
    axes[0].legend(loc="lower left", fontsize=8, frameon=False, bbox_to_anchor=(0.0, -0.06))
    fig.suptitle("What one MPI rank computes per MD step (2-D sketch of a 3-D domain)", fontsize=11)
    fig.tight_layout()
    fig.savefig(os.path.join(os.path.dirname(os.path.abspath(__file__)), "halo_exchange.png"), dpi=110)


if __name__ == "__main__":
    main()
