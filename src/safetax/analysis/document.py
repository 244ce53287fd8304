"""A report as a list of blocks (headings, text, bullets, tables, images), rendered to Markdown or HTML.

The report and the HTML page come from the same blocks, so they never disagree. Images are embedded
as ``data:`` URIs in both renderings: a report opened on its own (the KFP UI, a mail attachment) shows
every plot. :func:`from_markdown` reads the small Markdown subset other modules write their sections in.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    """A paragraph; inline Markdown: backticks for code, ``**bold**``."""

    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """Cells as shown; ``right``: which columns are right-aligned (numbers); ``name``: the HTML table's id."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    right: tuple[bool, ...] = ()
    name: str = ""


@dataclass(frozen=True)
class Image:
    """A PNG file shown inline; ``alt`` is its caption."""

    path: Path
    alt: str
    data: bytes = field(default=b"", repr=False, compare=False)

    def data_uri(self) -> str:
        raw = self.data or Path(self.path).read_bytes()
        return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


Block = Heading | Text | Bullets | Table | Image

_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)$")
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.+)$")


def _split_row(line: str) -> tuple[str, ...]:
    """The cells of a pipe-table row; ``\\|`` is a literal bar inside a cell.

    >>> _split_row("| a\\\\|b | 1.2 |")
    ('a|b', '1.2')
    """
    inner = line.strip().removeprefix("|")
    if inner.endswith("|") and not inner.endswith("\\|"):
        inner = inner[:-1]
    return tuple(c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner))


def _table(lines: list[str]) -> Table:
    header, sep, *body = lines
    right = tuple(s.strip().endswith(":") for s in _split_row(sep))
    return Table(_split_row(header), tuple(_split_row(r) for r in body), right)


def from_markdown(text: str, base_dir: Path | None = None) -> list[Block]:
    """Blocks of a Markdown subset: ``#`` headings, pipe tables, ``- `` bullets, ``![alt](file.png)`` lines
    (relative to ``base_dir``) and paragraphs separated by blank lines.

    >>> [type(b).__name__ for b in from_markdown("## A\\n\\nsome text\\n\\n| x |\\n|---:|\\n| 1 |\\n\\n- one\\n- two")]
    ['Heading', 'Text', 'Table', 'Bullets']
    """
    blocks: list[Block] = []
    for chunk in re.split(r"\n\s*\n", text.strip()):
        lines = [ln for ln in chunk.splitlines() if ln.strip()]
        if not lines:
            continue
        if (m := _HEADING.match(lines[0])) and len(lines) == 1:
            blocks.append(Heading(m["text"].strip(), len(m["hashes"])))
        elif all(ln.lstrip().startswith("|") for ln in lines) and len(lines) >= 2:
            blocks.append(_table(lines))
        elif all(ln.startswith("- ") for ln in lines):
            blocks.append(Bullets(tuple(ln[2:] for ln in lines)))
        elif len(lines) == 1 and (m := _IMAGE.match(lines[0].strip())):
            blocks.append(Image((base_dir or Path(".")) / m["src"], m["alt"]))
        else:
            blocks.append(Text(" ".join(ln.strip() for ln in lines)))
    return blocks


def _md_cell(cell: str) -> str:
    return cell.replace("|", "\\|")


def _md_table(t: Table) -> str:
    right = t.right or (False,) * len(t.header)
    lines = ["| " + " | ".join(_md_cell(c) for c in t.header) + " |",
             "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def to_markdown(blocks: Sequence[Block], inline_images: bool = True) -> str:
    """The blocks as GitHub Markdown; images as ``data:`` URIs (or, with ``inline_images=False``, the file's
    name, for a report read beside its PNG files)."""
    parts: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append("#" * b.level + " " + b.text)
        elif isinstance(b, Text):
            parts.append(b.text)
        elif isinstance(b, Bullets):
            parts.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            parts.append(_md_table(b))
        else:
            parts.append(f"![{b.alt}]({b.data_uri() if inline_images else Path(b.path).name})")
    return "\n\n".join(parts) + "\n"
