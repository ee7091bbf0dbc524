"""Rendering a report: a list of blocks (heading, paragraph, table, figure, settings) to
Markdown and to self-contained HTML, through jinja2 templates (``templates/``). Figure paths
are relative to the report; the HTML embeds the images, so it can be mailed as one file."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from srcrn.atomic import atomic_path


@dataclass
class Block:
    """One element of a report: a heading, paragraph, preformatted text, table or figure."""

    kind: str  # h1 | h2 | p | pre | table | img
    text: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    path: str = ""  # img: relative to the report
    caption: str = ""
    data: str = ""  # img: base64 PNG, filled for HTML


class Report:
    """Blocks in order, then ``write(folder)``: ``report.md`` and ``report.html``."""

    def __init__(self, title: str):
        """A report titled ``title``."""
        self.title, self.blocks = title, [Block("h1", title)]

    def heading(self, text: str) -> None:
        """Add a section heading."""
        self.blocks.append(Block("h2", text))

    def paragraph(self, text: str) -> None:
        """Add a paragraph (Markdown)."""
        self.blocks.append(Block("p", text))

    def settings(self, text: str) -> None:
        """Add preformatted text (the run's settings)."""
        self.blocks.append(Block("pre", text))

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        """Add a table of ``rows`` under ``header``."""
        self.blocks.append(Block("table", header=list(header), rows=[list(r) for r in rows]))

    def figure(self, path: Path, folder: Path, caption: str) -> None:
        """Add the figure at ``path`` (inside ``folder``, where the report is written) with a caption."""
        self.blocks.append(Block("img", path=path.relative_to(folder).as_posix(), caption=caption))

    def write(self, folder: Path, name: str = "report") -> Path:
        """Write ``name.md`` (figures linked) and ``name.html`` (figures embedded) into ``folder``; returns the .md path."""
        environment = Environment(
            loader=PackageLoader("srcrn.reporting", "templates"),
            autoescape=select_autoescape(["html.j2"]),
            keep_trailing_newline=True,
        )
        for block in self.blocks:
            if block.kind == "img":
                block.data = base64.b64encode((folder / block.path).read_bytes()).decode()
        for suffix, template in ((".md", "report.md.j2"), (".html", "report.html.j2")):
            text = environment.get_template(template).render(title=self.title, blocks=self.blocks)
            with atomic_path(folder / f"{name}{suffix}") as temporary:
                temporary.write_text(text)
        return folder / f"{name}.md"
