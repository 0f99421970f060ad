"""Every command of the user guides runs verbatim, from the place the page says.

Each page's shell blocks run in order, from the root of a copy of the repository (as after
`make setup` with `.venv` activated), then its Python blocks as one script, as a reader runs
them. The commands are the page's own text; only the inputs are shortened (fewer epochs and MD
steps in the copy's configs, decks and demo script, each substitution checked to apply, and every
fifth frame of the training sets), and the files a page assumes the reader has (their VASP runs,
their deck, a POSCAR) are provided. Blocks that cannot run here say why on the page (see
doc_blocks.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from doc_blocks import REPO, blocks, cited_tests, guides

SHELLS = {"bash", "sh", "shell", "console"}

# shorter inputs, same commands: file -> [(text in the shipped file, text in the test's copy)]
SHORTER = {
    "examples/demo.py": [('"--md-steps", type=int, default=200', '"--md-steps", type=int, default=40'),
                         ('"--lammps-reps", type=int, default=8', '"--lammps-reps", type=int, default=4'),
                         ('"--lammps-steps", type=int, default=100', '"--lammps-steps", type=int, default=20')],
    "examples/train/cu.yaml": [("max_epochs: 60", "max_epochs: 1")],
    "examples/md/in.npt": [("variable reps index 10", "variable reps index 3"),
                           ("variable steps index 200", "variable steps index 20")],
    "examples/md/in.melt_quench": [("variable reps index 5", "variable reps index 3"),
                                   ("variable steps index 2000", "variable steps index 100")],
    "my_potential.yaml": [("max_epochs: 200", "max_epochs: 1")],
    "examples/md/in.active_learning": [("variable reps index 3", "variable reps index 2"),
                                       ("variable steps index 2000", "variable steps index 40")],
    "runs/al/finetune1.yaml": [("max_epochs: 30", "max_epochs: 1")],
}

# fewer frames, same file: dataset -> keep every k-th frame (each kind of structure stays in)
FEWER_FRAMES = {"datasets/cu_emt.extxyz": 5, "datasets/al_gpaw.extxyz": 5}


def _fewer_frames(root: Path, name: str, every: int) -> None:
    lines = (root / name).read_text().splitlines(keepends=True)
    kept, start, index = [], 0, 0
    while start < len(lines):
        end = start + int(lines[start]) + 2          # count, comment, one line per atom
        if index % every == 0:
            kept += lines[start:end]
        start, index = end, index + 1
    assert index >= 10 * every, f"{name} has {index} frames: update FEWER_FRAMES in {__file__}"
    (root / name).write_text("".join(kept))


def _vasprun_with_steps(source: Path, steps: int) -> str:
    """ASE's one-step vasprun.xml test file as a run of `steps` ionic steps (same frame)."""
    text = source.read_text()
    start, end = text.index("<calculation>"), text.rindex("</calculation>") + len("</calculation>")
    return text[:start] + "\n".join([text[start:end]] * steps) + text[end:]


def _fixture_files(page: str, root: Path) -> None:
    """What the page assumes the reader already has."""
    shipped = REPO / "examples" / "potentials" / "cu" / "model.pt"
    if page == "docs/tutorials/vasp.md":
        import ase
        data = Path(ase.__file__).parent / "test" / "testdata" / "vasp"
        for folder in ("runs/md_600K", "runs/test"):
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / "vasprun.xml").write_text(_vasprun_with_steps(data / "vasprun_pstress.xml", 12))
        (root / "runs/strain").mkdir(parents=True, exist_ok=True)
        shutil.copy(data / "OUTCAR_example_1", root / "runs/strain/OUTCAR")
    if page == "docs/tutorials/lammps.md":      # the reader's deck, with the pair style the page gives
        deck = (REPO / "examples/md/in.npt").read_text()
        (root / "in.mydeck").write_text(deck.replace("variable reps index 10", "variable reps index 3")
                                        .replace("variable steps index 200", "variable steps index 20"))
    if page in ("docs/tutorials/ase_relax.md", "docs/ase.md"):
        shutil.copy(shipped, root / "model.pt")
        from ase.build import bulk
        bulk("Cu", "fcc", a=3.6, cubic=True).write(root / "POSCAR", format="vasp")
    if page == "docs/ase.md":
        for k in (1, 2, 3):
            shutil.copy(shipped, root / f"seed{k}.pt")


def _copy_repo(root: Path) -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split("\0")
    for name in filter(None, tracked):
        source, target = REPO / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)          # mtimes kept: make sees .venv as up to date
    (root / ".venv").symlink_to(Path(sys.prefix))


def _shorten(root: Path, name: str) -> None:
    path = root / name
    if name not in SHORTER or not path.exists():
        return
    text = path.read_text()
    for old, new in SHORTER[name]:
        assert old in text, f"{name} no longer contains {old!r}: update SHORTER in {__file__}"
        text = text.replace(old, new)
    path.write_text(text)


def _stamp(root: Path) -> Path:
    """The file that tells `make` in the copy at ``root`` that mlff is installed in the venv."""
    return root.parent / "mlff-installed"


def _env(root: Path) -> dict:
    # one thread, as every test process (THREADS: the Makefile's for `make demo`; two threads beside
    # another test worker on two cores wait on each other). `make` in the copy finds mlff installed
    # (its STAMP: :func:`_stamp`, newer than the copy's pyproject.toml): the copy shares this venv,
    # and an editable install from the copy would point the venv at this temporary folder
    env = dict(os.environ, OMP_NUM_THREADS="1", THREADS="1", MPLBACKEND="Agg", VIRTUAL_ENV=sys.prefix,
               PATH=f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
               MAKEFLAGS=f"STAMP={_stamp(root)}")
    env.pop("PYTHONPATH", None)
    return env


def _mlff_is_this_repository(root: Path) -> None:
    """The venv still imports mlff from this repository (not from the copy at ``root``)."""
    done = subprocess.run([sys.executable, "-c", "import mlff; print(mlff.__file__)"], cwd=root.parent,
                          capture_output=True, text=True, env=_env(root))
    assert done.stdout.strip().startswith(str(REPO / "mlff")), done.stdout + done.stderr


def _run(cmd: list[str], root: Path, where: str, text: str) -> None:
    done = subprocess.run(cmd, cwd=root, env=_env(root), capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"{where}: the block failed (exit {done.returncode}):\n{text}\n"
                    f"--- stdout (end)\n{done.stdout[-3000:]}\n--- stderr (end)\n{done.stderr[-3000:]}")


def _pages_with_commands() -> list[str]:
    pages = []
    for page in guides():
        if any(b.lang in SHELLS | {"python"} and not b.not_run for b in blocks(page)):
            pages.append(str(page.relative_to(REPO)))
    return pages


@pytest.mark.parametrize("page", _pages_with_commands())
def test_page_runs_verbatim(page, tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    _copy_repo(root)
    for name in SHORTER:
        _shorten(root, name)
    for name, every in FEWER_FRAMES.items():
        _fewer_frames(root, name, every)
    _fixture_files(page, root)
    _stamp(root).touch()
    page_blocks = blocks(REPO / page)
    for b in page_blocks:                                   # files the page asks the reader to write
        first = b.text.splitlines()[0].strip() if b.text.strip() else ""
        if b.lang == "yaml" and first.startswith("# ") and first.endswith(".yaml"):
            (root / first[2:]).parent.mkdir(parents=True, exist_ok=True)
            (root / first[2:]).write_text(b.text)
            _shorten(root, first[2:])
    for b in page_blocks:
        if b.lang in SHELLS and not b.not_run:
            script = "set -euo pipefail\n" + b.runnable_text()
            _run(["bash", "-c", script], root, b.where, b.runnable_text())
    python = [b for b in page_blocks if b.lang == "python" and not b.not_run]
    if python:
        script = "\n".join(b.runnable_text() for b in python)
        _run([sys.executable, "-c", script], root, ", ".join(b.where for b in python), script)
    _mlff_is_this_repository(root)


def test_every_block_not_run_says_why():
    """A block (or line) left out names an existing test that covers it, or why none can."""
    seen = 0
    for page in guides():
        for line_no, line in enumerate(page.read_text().splitlines(), 1):
            if "doc-test" in line:
                assert "<!-- doc-test: not run" in line and line.rstrip().endswith("-->"), \
                    f"{page}:{line_no}: malformed directive {line!r}"
        for b in blocks(page):
            for reason in [b.not_run, *b.skipped_lines.values()]:
                if not reason:
                    continue
                seen += 1
                for cited in cited_tests(reason):
                    assert (REPO / cited).is_file(), f"{b.where}: cites {cited}, which does not exist"
            for prefix in b.skipped_lines:
                assert any(l.strip().startswith(prefix) for l in b.text.splitlines()), \
                    f"{b.where}: no line starts with {prefix!r}"
    assert seen > 0


def test_shell_blocks_use_known_commands():
    """Commands in shell blocks are ones a fresh clone has after `make setup` (no stray `...`)."""
    for page in guides():
        for b in blocks(page):
            if b.lang in SHELLS:
                for line in b.runnable_text().splitlines():
                    code = line.split("#", 1)[0]
                    assert "..." not in code, f"{b.where}: {line!r} is not a command one can run"
