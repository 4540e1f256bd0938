"""Raw table reading: bytes (plain or gzip) -> decoded text -> delimiter -> DataFrame; Excel sheets.

Every function raises :class:`ReadProblem` with a short, human message when a file cannot be read;
the loader turns it into a one-line ``FileReport.problem``.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["ReadProblem", "RawTable", "read_bytes", "head_bytes", "decode", "read_text_table", "read_text_head", "read_text_column", "read_excel_tables", "read_parquet_table"]

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
DELIMITERS = ("\t", ",", ";", "|")
_DELIM_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}
_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")


class ReadProblem(Exception):
    """A file that cannot be read; the message is one line for the user."""


@dataclass
class RawTable:
    """A table as read from disk, before interpretation.

    ``df`` has string column labels and a default RangeIndex; ``header`` is the header row as
    written (duplicates kept, unlike pandas' mangled ``df.columns``); ``source`` names the file
    (and sheet) relative to the data root.
    """

    source: str
    df: pd.DataFrame
    header: list[str]
    notes: list[str] = field(default_factory=list)
    partial: bool = False
    """Only part of the file was parsed (its first rows, :func:`read_text_head`, or one column,
    :func:`read_text_column`)."""
    min_rows: int | None = None
    """Of a partial table: how many rows the whole table has at least."""


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """Whole file content, gunzipped when it starts with the gzip magic number.

    Raises
    ------
    ReadProblem
        Corrupt gzip, or decompressed content larger than ``max_bytes``.
    """
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head != GZIP_MAGIC:
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as e:
        msg = f"corrupt gzip file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'truncated'})"
        raise ReadProblem(msg) from None
    if len(data) > max_bytes:
        msg = f"decompresses to more than {max_bytes / 1e9:.2f} GB (size limit); not read"
        raise ReadProblem(msg)
    return data


def decode(data: bytes, notes: list[str]) -> str:
    """Decode text: UTF-8 (with or without BOM), else cp1252, else latin-1 (noted)."""
    if b"\x00" in data[:8192]:
        raise ReadProblem("binary content (NUL bytes), not a text table")
    try:
        text = data.decode("utf-8-sig")
        if data.startswith(b"\xef\xbb\xbf"):
            notes.append("UTF-8 byte-order mark removed")
        return text
    except UnicodeDecodeError:
        pass
    for enc in ("cp1252", "latin-1"):
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        notes.append(f"not UTF-8; decoded as {enc}")
        return text
    raise ReadProblem("undecodable text")  # pragma: no cover  (latin-1 decodes any byte)


def _sniff(lines: list[str]) -> str | None:
    """The delimiter whose count in the header is > 0 and most consistent over the first lines."""
    best, best_score = None, 0.0
    for d in DELIMITERS:
        n_head = lines[0].count(d)
        if n_head == 0:
            continue
        same = sum(line.count(d) == n_head for line in lines[1:]) if len(lines) > 1 else 1
        score = same + 0.001 * n_head
        if score > best_score:
            best, best_score = d, score
    return best


def read_text_table(
    path: Path, source: str, max_bytes: int, *, comment: str | None = None
) -> RawTable:
    """Read a delimited text table (TSV/CSV/TXT, gzip or not) with the delimiter sniffed from content.

    Parameters
    ----------
    path
        File to read.
    source
        Name used in messages (path relative to the data root).
    max_bytes
        Largest decompressed content accepted.
    comment
        Lines starting with this prefix before the header are skipped (MAF ``#version``).

    Returns
    -------
    RawTable
        Every cell parsed by pandas' default inference except the first column (kept as strings).
    """
    return _parse_text(read_bytes(path, max_bytes), path, source, comment)


def head_bytes(path: Path, n_lines: int) -> tuple[bytes, bool]:
    """The first ``n_lines`` lines of a file (gunzipped when it starts with the gzip magic number)
    and whether more content follows. Reads no further than that (in 64 KiB chunks).

    Raises
    ------
    ReadProblem
        Corrupt gzip within those lines.
    """
    with open(path, "rb") as fh:
        gz = fh.read(2) == GZIP_MAGIC
    buf = bytearray()
    seen = 0
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            while chunk := fh.read(1 << 16):
                start = len(buf)
                buf += chunk
                if seen + chunk.count(b"\n") < n_lines:
                    seen += chunk.count(b"\n")
                    continue
                end = start
                for _ in range(n_lines - seen):
                    end = buf.index(b"\n", end) + 1
                return bytes(buf[:end]), end < len(buf) or bool(fh.read(1))
    except (OSError, EOFError, zlib.error) as e:
        raise ReadProblem(f"corrupt gzip file ({type(e).__name__})") from None
    return bytes(buf), False


def read_text_head(path: Path, source: str, n_lines: int, rows: int) -> RawTable | None:
    """:func:`read_text_table` of a file's first ``n_lines`` lines: the whole table where the file
    ends there, else its first ``rows`` rows (``partial``). ``min_rows``: how many rows the whole
    table has at least: the head's lines where each is plain (not blank, no quote, no more fields
    than the header: the whole table keeps each as a row), else the rows parsed. None where the
    head alone could read differently from the whole file: bytes outside ASCII (the whole file's
    encoding decides how they decode). The head ends at a newline, so its text is the start of the
    whole file's text (line endings included)."""
    data, more = head_bytes(path, n_lines)
    if not data.isascii():
        return None
    text, lines, skip, header, kw, notes = _layout(data, path, None)
    table = _frame(text, lines, skip, header, {**kw, "nrows": rows} if more else kw, notes, source)
    body = lines[skip + 1 :]
    if body and body[-1] == "":
        body.pop()  # the head ends with a newline
    n_fields = lines[skip].count(kw["sep"])
    plain = '"' not in text and all(ln.strip() and ln.count(kw["sep"]) <= n_fields for ln in body)
    table.partial = more
    table.min_rows = len(body) if plain else len(table.df)
    return table


def read_text_column(path: Path, source: str, max_bytes: int, column: str, *, comment: str | None = None) -> tuple[RawTable, list[str]]:
    """:func:`read_text_table` parsing one column only (``partial``: each line cut after that column,
    so the parser tokenizes no field past it), where that reads it as the whole table would: the
    column is in the header, no row has more fields than the header (the whole table would skip
    such ragged rows), there is no quote (quoted fields may hold delimiters or newlines) and no
    line is blank up to the column but not after it (the parser would skip the cut line as blank).
    Else the whole table. Returns the table and every column name (as ``read_text_table``'s
    ``df.columns``)."""
    text, lines, skip, header, kw, notes = _layout(read_bytes(path, max_bytes), path, comment)
    sep = kw["sep"]
    n_fields = lines[skip].count(sep)
    if column in header and '"' not in text and not any(ln.count(sep) > n_fields for ln in lines[skip + 1 :]):
        at = header.index(column)
        cut = [sep.join(ln.split(sep, at + 1)[: at + 1]) for ln in lines]
        if not any(c != ln and not c.strip() for c, ln in zip(cut, lines)):
            columns = [str(c).strip() for c in pd.read_csv(io.StringIO(text), nrows=0, **kw).columns]
            df = pd.read_csv(io.StringIO("\n".join(cut)), **{**kw, "usecols": [at], "dtype": {at: str} if at == 0 else None})
            if df.shape[0] == 0:
                raise ReadProblem("header only, no data rows")
            df.columns = [columns[at]]
            return RawTable(source, df, header, notes, partial=True), columns
    table = _frame(text, lines, skip, header, kw, notes, source)
    return table, list(table.df.columns)


def _parse_text(data: bytes, path: Path, source: str, comment: str | None) -> RawTable:
    return _frame(*_layout(data, path, comment), source)


def _layout(data: bytes, path: Path, comment: str | None) -> tuple[str, list[str], int, list[str], dict, list[str]]:
    """Decoded text, its lines, the lines before the header, the header, ``read_csv`` options
    (delimiter sniffed, decimal comma detected) and notes."""
    notes: list[str] = []
    if not data.strip():
        raise ReadProblem("empty file")
    text = decode(data, notes)
    if "\r" in text:  # a scan is cheap, a replacement copies the text
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            text = text.replace("\r", "\n")
    lines = text.split("\n")
    skip = 0
    while skip < len(lines) and (not lines[skip].strip() or (comment and lines[skip].startswith(comment))):
        skip += 1
    body = [ln for ln in lines[skip : skip + 50] if ln.strip()]
    if not body:
        raise ReadProblem("no table content (only comments or blank lines)")
    delim = _sniff(body)
    if delim is None:
        msg = "only one column: no tab, comma, semicolon or pipe delimiter found in the header"
        raise ReadProblem(msg)
    ext = "".join(path.suffixes).lower()
    if (delim == "\t" and ".csv" in ext) or (delim != "\t" and ".tsv" in ext):
        notes.append(f"named {ext} but {_DELIM_NAMES[delim]}-delimited; read as {_DELIM_NAMES[delim]}-delimited")
    header = next(csv.reader([body[0]], delimiter=delim))
    header = [h.strip() for h in header]
    if len(body) < 2:
        raise ReadProblem("header only, no data rows")
    decimal = "."
    if delim == ";":
        cells = [c for ln in body[1:20] for c in ln.split(";")]
        if sum(bool(_DECIMAL_COMMA.match(c.strip())) for c in cells) > len(cells) / 4:
            decimal = ","
            notes.append("decimal commas")
    return text, lines, skip, header, dict(sep=delim, skiprows=skip, decimal=decimal, dtype={0: str}, low_memory=False), notes


def _frame(text: str, lines: list[str], skip: int, header: list[str], kw: dict, notes: list[str], source: str) -> RawTable:
    """The whole table parsed (ragged rows with too many fields skipped, noted)."""
    try:
        df = pd.read_csv(io.StringIO(text), **kw)
    except pd.errors.ParserError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = pd.read_csv(io.StringIO(text), on_bad_lines="skip", **kw)
        n_rows = sum(1 for ln in lines[skip + 1 :] if ln.strip())
        notes.append(f"{n_rows - len(df)} ragged row(s) with too many fields skipped")
    except (ValueError, UnicodeError) as e:
        raise ReadProblem(f"not a readable table ({str(e).splitlines()[0][:120]})") from None
    if df.shape[0] == 0:
        raise ReadProblem("header only, no data rows")
    df.columns = [str(c).strip() for c in df.columns]
    return RawTable(source, df, header, notes)


def read_excel_tables(path: Path, source: str) -> tuple[list[RawTable], list[str]]:
    """Every non-empty sheet of an ``.xlsx`` workbook as a :class:`RawTable` named ``file:sheet``.

    Returns the tables and notes about sheets that were skipped (empty or header-only).
    """
    with open(path, "rb") as fh:
        if fh.read(4) != ZIP_MAGIC:
            raise ReadProblem("not an Excel workbook (no zip signature)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sheets = pd.read_excel(path, sheet_name=None, engine="openpyxl", dtype={0: str})
    except Exception as e:  # openpyxl raises many types for a damaged workbook
        msg = f"unreadable Excel workbook ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
        raise ReadProblem(msg) from None
    tables, skipped = [], []
    for name, df in sheets.items():
        df = df.dropna(how="all").dropna(axis=1, how="all")
        if df.shape[0] == 0 or df.shape[1] == 0:
            skipped.append(f"sheet {name!r} is empty or header-only; skipped")
            continue
        df.columns = [str(c).strip() for c in df.columns]
        tables.append(RawTable(f"{source}:{name}", df.reset_index(drop=True), list(df.columns), []))
    return tables, skipped


def read_parquet_table(path: Path, source: str) -> RawTable:
    """A Parquet table (e.g. DIA-NN 1.9+ ``report.parquet``); needs the optional ``pyarrow``."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        msg = "a Parquet file needs pyarrow to be read (pip install pyarrow), or export the table as TSV"
        raise ReadProblem(msg) from None
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises many types for a damaged file
        raise ReadProblem(f"unreadable Parquet file ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from None
    if df.shape[0] == 0:
        raise ReadProblem("header only, no data rows")
    df = df.reset_index(drop=True)
    df.columns = [str(c).strip() for c in df.columns]
    return RawTable(source, df, list(df.columns), [])
