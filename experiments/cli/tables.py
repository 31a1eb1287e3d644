"""Result tables that fit the terminal and leave it in the formats people paste elsewhere.

A `TextTable` holds cells already formatted as text. On a terminal it is printed by rich; when
every column does not fit the width, the columns are split into several tables, each repeating
the leading key columns (e.g. the policy), so no cell is ever cut to an ellipsis. The same cells
render as Markdown (for a README or an issue) and CSV (for a spreadsheet).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "markdown", "csv", "json")
PIPED_WIDTH = 140  # a pipe has no width; wide enough for the run table on one screen, in one piece


@dataclass
class TextTable:
    """`headers[k]` may hold a newline (a two-line header is narrower); `keys` leading columns
    name the row and are repeated in every part of a split table; `notes` are printed below."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    keys: int = 1
    notes: list[str] = field(default_factory=list)

    def _rich(self, columns: list[int], title: str) -> Table:
        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left",
                      padding=(0, 1, 0, 0), show_edge=False)
        for k in columns:
            table.add_column(self.headers[k], justify="left" if k < self.keys else "right", no_wrap=True)
        for row in self.rows:
            table.add_row(*(row[k] for k in columns))
        return table

    def parts(self, console: Console, width: int | None = None) -> list[Table]:
        """The table as one rich Table, or as several with the key columns repeated, each fitting
        `width` (default: the console's). A single column wider than that still gets its own part, uncut."""
        width = width or console.width
        keys = list(range(self.keys))
        groups: list[list[int]] = []
        for k in range(self.keys, len(self.headers)):
            if groups and _fits(self._rich(keys + groups[-1] + [k], self.title), console, width):
                groups[-1].append(k)
            else:
                groups.append([k])
        total = len(groups)
        return [self._rich(keys + g, self.title if i == 0 else f"(part {i + 1}/{total})")
                for i, g in enumerate(groups or [[]])]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """`console.print(table)` prints the parts that fit the space given, then the notes."""
        yield from self.parts(console, options.max_width)
        for note in self.notes:
            yield Text(note)

    def print(self, console: Console) -> None:
        console.print(self, overflow="fold", crop=False)

    def markdown(self) -> str:
        def line(cells: list[str]) -> str:
            return "| " + " | ".join(_one_line(c).replace("|", "\\|") for c in cells) + " |"

        align = [":--" if k < self.keys else "--:" for k in range(len(self.headers))]
        body = [line(self.headers), "|" + "|".join(align) + "|", *(line(r) for r in self.rows)]
        return "\n".join([f"**{self.title}**", "", *body, *(["", *self.notes] if self.notes else [])]) + "\n"


def _one_line(cell: str) -> str:
    """A two-line cell on one line: a hyphenated header joins ("pre-\nempt"), a value and its range
    are separated by a space."""
    return cell.replace("-\n", "-").replace("\n", " ")


def _fits(table: Table, console: Console, width: int) -> bool:
    unbounded = console.options.update(max_width=10**6)  # the table's own width, not capped by the console's
    return console.measure(table, options=unbounded).maximum <= width


def output_console() -> Console:
    """stdout's console: the terminal's width, or PIPED_WIDTH when piped unless COLUMNS says otherwise."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=PIPED_WIDTH)
    return console


def to_csv(headers: list[str], rows: list[list[object]]) -> str:
    """RFC 4180 CSV (numbers as Python writes them, None as an empty field)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return buffer.getvalue()
