"""Reading CSV files as people export them: any delimiter, UTF-8 or Latin-1, headers in any case.

A `CsvTable` checks the file and its header when it is opened, so a malformed file is refused
before the caller writes anything; rows are then streamed one physical line at a time, each decoded
on its own (a Latin-1 line inside a UTF-8 export is read correctly rather than aborting the file).
"""

from __future__ import annotations

import codecs
import csv
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SNIFF_BYTES = 64 * 1024


class FileRefused(Exception):
    """The file as a whole cannot be imported; nothing was written."""


@dataclass(frozen=True)
class Column:
    """A column the importer understands, with the header spellings that name it.

    The first alias is the column's name in messages; all are matched as `header_key` folds them.
    """

    key: str
    aliases: tuple[str, ...]
    required: bool = True


@dataclass(frozen=True)
class Row:
    """One data row: its line number, values by column key, the raw fields, or what is wrong."""

    line: int
    values: dict[str, str]
    raw: list[str]
    problem: str | None = None


def header_key(text: str) -> str:
    """Fold a header cell for matching: no accents, lower case, words joined by one space."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    words = "".join(c if c.isalnum() else " " for c in plain).split()
    return " ".join(words)


def _refuse_binary(sample: bytes, name: str) -> None:
    if sample.startswith(b"PK\x03\x04"):
        raise FileRefused(
            f"{name} is a spreadsheet workbook (.xlsx), not a CSV file: "
            "save it as CSV (comma or semicolon separated) and import that."
        )
    if sample.startswith(b"\xd0\xcf\x11\xe0"):
        raise FileRefused(
            f"{name} is an old Excel workbook (.xls), not a CSV file: "
            "save it as CSV and import that."
        )
    if b"\x00" in sample:
        raise FileRefused(f"{name} is a binary file, not a CSV text file.")


class CsvTable:
    """An open CSV file whose header has been matched to the expected columns."""

    def __init__(self, path: Path, columns: Sequence[Column]) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        try:
            self._file: BinaryIO = self.path.open("rb")
        except OSError as exc:
            raise FileRefused(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            self._open()
        except BaseException:
            self._file.close()
            raise

    def _open(self) -> None:
        name = self.path.name
        sample = self._file.read(SNIFF_BYTES)
        self._file.seek(0)
        if not sample.strip():
            raise FileRefused(f"{name} is empty.")
        _refuse_binary(sample, name)
        self._lines = self._decoded_lines()
        header_line = next(self._lines, "")
        self.delimiter = max(";,\t", key=header_line.count)
        if header_line.count(self.delimiter) == 0 and len(self.columns) > 1:
            raise FileRefused(
                f"{name}: the first line has no commas or semicolons; "
                "a CSV file starts with a header row naming its columns."
            )
        header = next(csv.reader([header_line], delimiter=self.delimiter))
        self.header = header
        found = {header_key(cell): i for i, cell in reversed(list(enumerate(header)))}
        self._positions: dict[str, int] = {}
        missing = []
        for column in self.columns:
            keys = (header_key(alias) for alias in column.aliases)
            position = next((found[k] for k in keys if k in found), None)
            if position is not None:
                self._positions[column.key] = position
            elif column.required:
                missing.append(column.aliases[0])
        if missing:
            raise FileRefused(
                f"{name}: the header lacks the column(s) {', '.join(missing)}; "
                f"found: {', '.join(cell.strip() for cell in header if cell.strip()) or 'nothing'}."
            )

    def _decoded_lines(self) -> Iterator[str]:
        # Each line on its own: UTF-8 when it is valid UTF-8, else Latin-1 (which decodes any
        # byte). Deciding once for the whole file would turn every UTF-8 line of a mixed file
        # into mojibake, header included. Latin-1 text is almost never valid UTF-8 by chance.
        first = True
        for raw in self._file:
            if first:
                raw = raw.removeprefix(codecs.BOM_UTF8)
                first = False
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                yield raw.decode("latin-1")

    def rows(self) -> Iterator[Row]:
        """Yield each data row; a malformed one comes with `problem` set and no values."""
        reader = csv.reader(self._lines, delimiter=self.delimiter, strict=True)
        width = len(self.header)
        while True:
            # The line the next row starts on (the header was line 1); a quoted field may carry
            # the row over several lines.
            line = reader.line_num + 2
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Row(line, {}, [], f"unreadable CSV line: {exc}")
                continue
            if not fields or all(not f.strip() for f in fields):
                continue
            if any("\x00" in f for f in fields):
                # Only the first SNIFF_BYTES were checked for binary content when opening.
                shown = [f.replace("\x00", "\ufffd") for f in fields]
                problem = "the line contains a NUL character: this part of the file is not text"
                yield Row(line, {}, shown, problem)
                continue
            if len(fields) < width or any(f.strip() for f in fields[width:]):
                yield Row(line, {}, fields, f"expected {width} fields, found {len(fields)}")
                continue
            values = {key: fields[pos].strip() for key, pos in self._positions.items()}
            yield Row(line, values, fields)

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> CsvTable:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
