"""The fenced code blocks of the user guides, as a reader copies them.

A guide's blocks are run by ``test_doc_commands.py``. A block that must not run in the tests
(it needs a GPU, the network, or runs the test suite itself) says so in an HTML comment on the
line before its fence, which the rendered page does not show:

    <!-- doc-test: not run: REASON -->             the whole block
    <!-- doc-test: not run "PREFIX": REASON -->    the block's lines that start with PREFIX

A REASON names the test that covers the command instead (a ``tests/...py`` path), or why no
test can run it. A ``yaml`` block whose first line is ``# NAME.yaml`` is the file NAME.yaml the
page asks the reader to write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                    re.S | re.M)
_DIRECTIVE = re.compile(r'^\s*<!--\s*doc-test:\s*not run(?:\s+"(?P<prefix>[^"]+)")?\s*:\s*(?P<reason>.+?)\s*-->\s*$')


@dataclass
class Block:
    page: str                 # path relative to the repository
    line: int                 # line of the opening fence (1-based)
    lang: str
    text: str                 # dedented body
    not_run: str = ""         # reason the whole block is not run
    skipped_lines: dict[str, str] = field(default_factory=dict)   # prefix -> reason

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def runnable_text(self) -> str:
        """The block without its lines that are not run (continuation lines go with their line)."""
        out, dropping = [], False
        for raw in self.text.splitlines():
            stripped = raw.strip()
            if not dropping:
                dropping = any(stripped.startswith(p) for p in self.skipped_lines)
                if not dropping:
                    out.append(raw)
            if dropping and not stripped.endswith("\\"):
                dropping = False
        return "\n".join(out) + "\n"


def guides() -> list[Path]:
    """The user guides: the README, docs/ (not the dated reports) and the examples' READMEs."""
    pages = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
    pages += sorted((REPO / "docs" / "tutorials").glob("*.md")) + sorted((REPO / "examples").glob("*/README.md"))
    return pages


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    lines = text.splitlines()
    found = []
    for m in _FENCE.finditer(text):
        first = text.count("\n", 0, m.start()) + 1
        indent = len(m.group("indent"))
        body = "\n".join(l[indent:] for l in m.group("body").splitlines())
        block = Block(str(page.relative_to(REPO)), first, m.group("lang"), body)
        k = first - 2
        while k >= 0 and _DIRECTIVE.match(lines[k]):
            d = _DIRECTIVE.match(lines[k])
            if d.group("prefix"):
                block.skipped_lines[d.group("prefix")] = d.group("reason")
            else:
                block.not_run = d.group("reason")
            k -= 1
        found.append(block)
    return found


def cited_tests(reason: str) -> list[str]:
    return re.findall(r"tests/[\w/]+\.py", reason)
