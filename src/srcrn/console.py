"""One place for terminal output: a rich console on stderr, the logging handler the CLI
installs on it, and a progress helper. Library modules log through ``logging`` and never
print; what reaches the terminal is the CLI's choice."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

T = TypeVar("T")
console = Console(stderr=True)
STYLES = {logging.WARNING: "yellow", logging.ERROR: "bold red", logging.CRITICAL: "bold red"}


class ConsoleHandler(logging.Handler):
    """Log records as single, unwrapped lines on the rich console (rich's own RichHandler wraps
    long lines, which splits the file paths a user copies out of a message)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Print one record as one unwrapped line (logging errors are reported, never raised)."""
        try:
            text = self.format(record)
            console.print(Text(text, style=STYLES.get(record.levelno, "")), soft_wrap=True)
        except Exception:  # logging must never take the program down
            self.handleError(record)


def configure_logging(level: int = logging.INFO) -> None:
    """Send the ``srcrn`` loggers to the console (idempotent): called by the CLI."""
    logger = logging.getLogger("srcrn")
    logger.setLevel(level)
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        handler = ConsoleHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


def progress(items: Iterable[T], total: int | None, description: str, enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while drawing a progress bar (nothing is drawn when disabled)."""
    if not enabled:
        yield from items
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
