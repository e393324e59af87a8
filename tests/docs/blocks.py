"""The code blocks of README.md and docs/, as the tests check them.

A fenced block's language says what it is. Python blocks are type-checked (``mypy --strict``)
and, unless an HTML comment on the line before the fence says otherwise, run:

- ``<!-- check: run -->`` (the default): run as a script, on asyncio and on trio; a module
  that defines ``app`` and runs nothing itself has that app's ASGI lifespan started and
  stopped.
- ``<!-- check: typecheck: why -->``: type-checked only, for a block that needs what a test
  cannot give it (a browser, a server on a fixed port); the comment says why.
- ``<!-- check: pytest -->``: a test module, type-checked and run with pytest.
- ``<!-- check: continues -->``: the previous Python block of the page, continued: checked
  as the two together, the way that block is.
- ``as NAME.py`` after a mode (``<!-- check: run as app.py -->``): the page tells its reader
  to save the block as that file, and the page's later blocks may import it: they are
  checked beside it.

JavaScript blocks are checked for syntax by Node. Other languages (shell, nginx, YAML) are
shown, not checked.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODES = ("run", "typecheck", "pytest")

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[^\s`]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_CHECK = re.compile(
    r"<!--\s*check:\s*(?P<mode>[\w-]+)(?:\s+as\s+(?P<file>\w+\.py))?(?P<why>[^>]*)-->"
)


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, how it is checked, and its code (for a
    continued block, the blocks it continues first)."""

    path: Path
    line: int
    lang: str
    mode: str
    code: str
    saved_as: str | None = None
    siblings: tuple[tuple[str, str], ...] = ()
    """(file name, code) of the page's earlier blocks saved as files, which this one may
    import."""

    @property
    def name(self) -> str:
        """``docs/guides/acks.md:40``: what a failure names."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def module(self) -> str:
        """A module name of its own, for type-checking all blocks in one run."""
        stem = re.sub(r"\W", "_", str(self.path.relative_to(ROOT).with_suffix("")))
        return f"block_{stem}_{self.line}".lower()


def documents() -> list[Path]:
    """README.md and every Markdown page of the docs site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one Markdown file, in order."""
    text = path.read_text()
    found: list[Block] = []
    previous: Block | None = None  # the last Python block of the page
    saved: list[tuple[str, str]] = []
    for match in _FENCE.finditer(text):
        lang = match["lang"].lower()
        line = text.count("\n", 0, match.start()) + 1
        code = textwrap.dedent(match["body"])
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        check = _CHECK.search(before)
        mode, why = (check["mode"], check["why"].strip(" :")) if check else ("run", "")
        if lang in ("python", "py"):
            if mode == "continues":
                if previous is None:
                    raise ValueError(f"{path}:{line}: expected a Python block to continue")
                mode, code = previous.mode, previous.code + "\n" + code
            elif mode not in MODES:
                raise ValueError(f"{path}:{line}: expected a check mode {MODES}, got {mode!r}")
            if mode == "typecheck" and not why:
                raise ValueError(f"{path}:{line}: expected `typecheck: why`, got no reason")
            saved_as = check["file"] if check else None
            previous = Block(path, line, "python", mode, code, saved_as, tuple(saved))
            found.append(previous)
            if saved_as is not None:
                saved.append((saved_as, code))
        else:
            if check is not None:
                raise ValueError(f"{path}:{line}: expected a check comment on Python only")
            found.append(Block(path, line, lang, "show", code))
    return found


def all_blocks() -> list[Block]:
    return [block for path in documents() for block in blocks(path)]
