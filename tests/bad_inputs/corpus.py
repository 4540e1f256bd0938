"""Generator of the bad-input corpus: each case writes one awkward file (or folder) into a directory.

``CASES`` maps a case name to ``Case(path, write, expect, pattern)``: ``path`` is the bad entry
relative to the folder, ``write(folder)`` creates it, ``expect`` is ``"problem"`` (the file's
report must carry a problem matching ``pattern`` and naming the file), ``"note"`` (read, with a
matching note) or ``"ok"`` (read without a problem). Files are tiny so the corpus runs in seconds;
the "2 GB" case is a sparse file made with ``truncate``.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SAMPLES = [f"P{j:02d}" for j in range(6)]


def good_matrix(seed: int = 0, n: int = 12) -> pd.DataFrame:
    """A small valid features x samples intensity matrix (genes G0.., samples P00..P05)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        rng.lognormal(20, 1, (n, len(SAMPLES))), index=pd.Index([f"G{i}" for i in range(n)], name="gene"), columns=SAMPLES
    )


def _tsv(folder: Path, name: str, df: pd.DataFrame, **kw) -> None:
    df.to_csv(folder / name, sep="\t", **kw)


@dataclass
class Case:
    path: str
    write: Callable[[Path], None]
    expect: str
    pattern: str | None = None


def _text(name: str, text: str | bytes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        data = text.encode() if isinstance(text, str) else text
        (folder / name).write_bytes(data)

    return write


def _dup_samples(folder: Path) -> None:
    m = good_matrix()
    m.columns = ["P00", "P01", "P01", "P03", "P04", "P05"]
    _tsv(folder, "dup_samples.tsv", m)


def _dup_features(folder: Path) -> None:
    m = good_matrix()
    m.index = ["G0", "G0", "G1"] + [f"G{i}" for i in range(3, 12)]
    m.index.name = "gene"
    _tsv(folder, "dup_features.tsv", m)


def _nonnumeric(folder: Path) -> None:
    m = good_matrix().astype(object)
    m.iloc[0, 0] = "error"
    m.iloc[3, 2] = "n.d."
    _tsv(folder, "nonnumeric.tsv", m)


def _all_missing_col(folder: Path) -> None:
    m = good_matrix()
    m["P05"] = np.nan
    _tsv(folder, "all_missing_col.tsv", m)


def _one_sample(folder: Path) -> None:
    _tsv(folder, "one_sample.tsv", good_matrix()[["P00"]].rename(columns={"P00": "X9"}))


def _clinical(name: str, ids: list[str], group: list[str], encoding: str = "utf-8", extra: str = "") -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        df = pd.DataFrame({"sample_id": ids, "group": group, "site": [f"Zürich{extra}"] * len(ids)})
        df.to_csv(folder / name, sep="\t", index=False, encoding=encoding)

    return write


def _excel_sheets(folder: Path) -> None:
    with pd.ExcelWriter(folder / "several.xlsx") as w:
        good_matrix(3).to_excel(w, sheet_name="proteins")
        pd.DataFrame({"x": ["a", "b"]}).to_excel(w, sheet_name="notes", index=False)
        pd.DataFrame().to_excel(w, sheet_name="blank")


def _corrupt_gzip(folder: Path) -> None:
    full = gzip.compress(good_matrix().to_csv(sep="\t").encode())
    (folder / "corrupt.tsv.gz").write_bytes(full[: len(full) // 2])


def _unicode(folder: Path) -> None:
    _tsv(folder, "prötéomics_数据 ü.tsv", good_matrix(4))


LONG = "proteomics_" + "x" * 200 + ".tsv"


def _long(folder: Path) -> None:
    _tsv(folder, LONG, good_matrix(5))


def _symlink_out(folder: Path) -> None:
    outside = folder.parent / f"{folder.name}_outside.tsv"
    _tsv(outside.parent, outside.name, good_matrix())
    os.symlink(outside, folder / "link_out.tsv")


def _broken_link(folder: Path) -> None:
    os.symlink(folder / "does_not_exist.tsv", folder / "broken.tsv")


def _sparse_2gb(folder: Path) -> None:
    with open(folder / "huge.tsv", "wb") as fh:
        fh.truncate(2_000_000_000)


def _bom(folder: Path) -> None:
    (folder / "bom.tsv").write_bytes(b"\xef\xbb\xbf" + good_matrix(6).to_csv(sep="\t").encode())


def _crlf(folder: Path) -> None:
    (folder / "crlf.csv").write_bytes(good_matrix(7).to_csv().replace("\n", "\r\n").encode())


def _inf(folder: Path) -> None:
    m = good_matrix(8)
    m.iloc[1, 1] = np.inf
    m.iloc[2, 2] = -np.inf
    _tsv(folder, "inf.tsv", m)


def _negative(folder: Path) -> None:
    m = good_matrix(9, n=200)
    m.iloc[0, 0] = -5.0
    _tsv(folder, "negative.tsv", m)


def _all_nan(folder: Path) -> None:
    m = good_matrix() * np.nan
    _tsv(folder, "all_nan.tsv", m)


def _folder_like_file(folder: Path) -> None:
    d = folder / "data.tsv"
    d.mkdir()
    _tsv(d, "inner_proteins.tsv", good_matrix(10))


def _nested(folder: Path) -> None:
    d = folder / "a" / "b" / "c"
    d.mkdir(parents=True)
    _tsv(d, "deep_proteins.tsv", good_matrix(11))


def _decimal_comma(folder: Path) -> None:
    m = good_matrix(12).round(1)
    (folder / "euro.csv").write_text(m.to_csv(sep=";", decimal=","))


def _missing_ids(folder: Path) -> None:
    text = good_matrix(13).to_csv(sep="\t").splitlines()
    text[2] = "\t" + text[2].split("\t", 1)[1]
    (folder / "missing_ids.tsv").write_text("\n".join(text) + "\n")


def _ragged(folder: Path) -> None:
    lines = good_matrix(14).to_csv(sep="\t").splitlines()
    lines[3] += "\t1\t2\t3"
    (folder / "ragged.tsv").write_text("\n".join(lines) + "\n")


def _fake_xlsx(folder: Path) -> None:
    (folder / "fake.xlsx").write_text(good_matrix(15).to_csv(sep="\t"))


CASES: dict[str, Case] = {
    "empty_file": Case("empty.tsv", _text("empty.tsv", ""), "problem", "empty file"),
    "binary_junk": Case("junk.tsv", _text("junk.tsv", bytes(range(256)) * 40), "problem", "binary"),
    "wrong_delimiter": Case("wrong.csv", lambda f: _tsv(f, "wrong.csv", good_matrix(1)), "note", "named .csv but tab"),
    "ragged_rows": Case("ragged.tsv", _ragged, "note", "ragged"),
    "duplicated_feature_ids": Case("dup_features.tsv", _dup_features, "note", "duplicated feature id"),
    "duplicated_sample_ids": Case("dup_samples.tsv", _dup_samples, "note", "duplicated column name.*P01"),
    "non_numeric_cells": Case("nonnumeric.tsv", _nonnumeric, "note", "2 non-numeric cell"),
    "all_missing_column": Case("all_missing_col.tsv", _all_missing_col, "note", "all-missing column.*P05"),
    "one_sample": Case("one_sample.tsv", _one_sample, "note", "only 1 sample"),
    "one_group_only": Case("groups.tsv", _clinical("groups.tsv", SAMPLES, ["a"] * 6), "ok"),
    "ids_match_no_clinical_row": Case(
        "clinical.tsv", _clinical("clinical.tsv", ["Z1", "Z2", "Z3"], ["a", "b", "a"]), "ok"
    ),
    "excel_several_sheets": Case("several.xlsx", _excel_sheets, "note", "'blank' is empty"),
    "corrupt_gzip": Case("corrupt.tsv.gz", _corrupt_gzip, "problem", "corrupt gzip"),
    "unicode_name": Case("prötéomics_数据 ü.tsv", _unicode, "ok"),
    "very_long_name": Case(LONG, _long, "ok"),
    "symlink_outside": Case("link_out.tsv", _symlink_out, "problem", "outside the data folder"),
    "broken_symlink": Case("broken.tsv", _broken_link, "problem", "broken symbolic link"),
    "sparse_2gb": Case("huge.tsv", _sparse_2gb, "problem", "exceeds the size limit"),
    "header_only": Case("header.tsv", _text("header.tsv", "gene\tP00\tP01\n"), "problem", "header only"),
    "bom": Case("bom.tsv", _bom, "note", "byte-order mark"),
    "crlf": Case("crlf.csv", _crlf, "ok"),
    "latin1_clinical": Case(
        "clinical_latin1.tsv", _clinical("clinical_latin1.tsv", SAMPLES, list("aabbcc"), "latin-1"), "note", "decoded as cp1252"
    ),
    "inf_values": Case("inf.tsv", _inf, "note", "2 infinite value"),
    "negative_intensities": Case("negative.tsv", _negative, "note", "1 negative intensities set to NaN"),
    "all_nan_matrix": Case("all_nan.tsv", _all_nan, "problem", "no values"),
    "xlsx_really_text": Case("fake.xlsx", _fake_xlsx, "note", "not an Excel workbook"),
    "folder_named_like_file": Case("data.tsv", _folder_like_file, "note", "folder named like a data file"),
    "nested_folders": Case("a/b/c/deep_proteins.tsv", _nested, "ok"),
    "hidden_file": Case(".hidden.tsv", lambda f: _tsv(f, ".hidden.tsv", good_matrix()), "note", "hidden file"),
    "readme": Case("README.md", _text("README.md", "# notes\n"), "note", "not a data file"),
    "json": Case("meta.json", _text("meta.json", "{}"), "note", "not a data file"),
    "archive": Case("raw.zip", _text("raw.zip", b"PK\x03\x04junk"), "note", "archive"),
    "legacy_xls": Case("old.xls", _text("old.xls", b"\xd0\xcf\x11\xe0junk"), "problem", "legacy Excel"),
    "single_column": Case("single.txt", _text("single.txt", "gene\nA\nB\nC\n"), "problem", "only one column"),
    "corrupt_xlsx": Case("broken.xlsx", _text("broken.xlsx", b"PK\x03\x04" + bytes(200)), "problem", "unreadable Excel"),
    "corrupt_h5ad": Case("broken.h5ad", _text("broken.h5ad", b"not hdf5 at all"), "problem", "unreadable h5ad"),
    "decimal_comma": Case("euro.csv", _decimal_comma, "note", "decimal commas"),
    "missing_ids": Case("missing_ids.tsv", _missing_ids, "note", "without an id dropped"),
}
