"""load_study on a corpus of awkward inputs (tests/bad_inputs/corpus.py): clear reports, no crash, no hang."""

from __future__ import annotations

import re
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from proteus.io import describe, load_study
from proteus.study import NoUsableDataError

sys.path.insert(0, str(Path(__file__).parent))
from bad_inputs.corpus import CASES, SAMPLES, good_matrix  # noqa: E402


@contextmanager
def time_limit(seconds: int):
    """Fail instead of hanging (SIGALRM; POSIX main thread)."""

    def handler(signum, frame):
        raise TimeoutError(f"load_study took longer than {seconds}s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _reports_for(study, path: str):
    return [r for r in study.reports if r.path == path or r.path.startswith(path + ":") or r.path.startswith(path + "/")]


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_next_to_good_data(name, tmp_path):
    case = CASES[name]
    good_matrix().to_csv(tmp_path / "good_proteomics.tsv", sep="\t")
    case.write(tmp_path)
    with time_limit(20):
        study = load_study(tmp_path, on_problem=lambda r: None)
    good = [a for a in study.modalities.values() if a.uns["source"] == "good_proteomics.tsv"]
    assert len(good) == 1 and good[0].shape == (6, 12)  # the good file is always read
    reps = _reports_for(study, case.path)
    assert reps, f"no report for {case.path}: {[r.path for r in study.reports]}"
    if case.expect == "problem":
        bad = [r for r in reps if r.problem]
        assert bad, reps
        assert re.search(case.pattern, bad[0].problem), bad[0].problem
        assert case.path in bad[0].problem  # names the file
        assert "\n" not in bad[0].problem  # one line
        assert bad[0].problem in describe(study)
    elif case.expect == "note":
        assert not any(r.problem for r in reps if r.path == case.path), reps
        text = " | ".join(n for r in reps for n in r.notes)
        assert re.search(case.pattern, text), text
    else:
        assert not any(r.problem for r in reps), reps


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_alone_never_crashes(name, tmp_path):
    CASES[name].write(tmp_path)
    with time_limit(20):
        try:
            study = load_study(tmp_path, on_problem=lambda r: None)
        except NoUsableDataError as e:
            assert "no usable data" in str(e)
            return
    assert study.modalities or study.mutations is not None


def test_sparse_2gb_file_is_refused_without_reading(tmp_path):
    CASES["sparse_2gb"].write(tmp_path)
    t = time.perf_counter()
    with pytest.raises(NoUsableDataError, match="exceeds the size limit"):
        load_study(tmp_path)
    assert time.perf_counter() - t < 2


def test_size_limit_applies_to_decompressed_content(tmp_path):
    import gzip

    text = "gene\tP00\tP01\n" + "G\t1000\t1000\n" * 20_000
    (tmp_path / "bomb.tsv.gz").write_bytes(gzip.compress(text.encode()))
    limit = (tmp_path / "bomb.tsv.gz").stat().st_size + 1
    assert len(text) > limit
    with pytest.raises(NoUsableDataError, match="decompresses to more than"):
        load_study(tmp_path, max_bytes=limit)


def test_values_survive_awkward_encodings(tmp_path):
    for name in ("bom", "crlf", "decimal_comma", "inf_values", "negative_intensities"):
        d = tmp_path / name
        d.mkdir()
        CASES[name].write(d)
        a = load_study(d).modalities["proteomics"]
        assert list(a.obs_names) == SAMPLES, name
        assert a.uns["transform"] == "log2", name
    a = load_study(tmp_path / "inf_values").modalities["proteomics"]
    assert np.isnan(a["P01", "G1"].X[0, 0]) and np.isnan(a["P02", "G2"].X[0, 0])
    m = good_matrix(12).round(1)
    a = load_study(tmp_path / "decimal_comma").modalities["proteomics"]
    assert a["P00", "G0"].X[0, 0] == pytest.approx(np.log2(m.loc["G0", "P00"]))


def test_text_only_sheet_is_reported_per_sheet(tmp_path):
    CASES["excel_several_sheets"].write(tmp_path)
    s = load_study(tmp_path, on_problem=lambda r: None)
    sheet = next(r for r in s.reports if r.path == "several.xlsx:notes")
    assert sheet.problem == "several.xlsx:notes: no numeric columns"
    assert s.modalities["proteomics"].uns["source"] == "several.xlsx:proteins"


def test_unmatched_clinical_ids_are_reported(tmp_path):
    good_matrix().to_csv(tmp_path / "good_proteomics.tsv", sep="\t")
    CASES["ids_match_no_clinical_row"].write(tmp_path)
    s = load_study(tmp_path)
    rep = next(r for r in s.reports if r.path == "good_proteomics.tsv")
    assert "0/6 samples match clinical rows" in rep.notes


def test_nothing_usable_raises_one_line(tmp_path):
    (tmp_path / "README.md").write_text("hi")
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(NoUsableDataError) as e:
        load_study(tmp_path)
    assert "\n" not in str(e.value) and "empty.tsv" in str(e.value)
    (tmp_path / "empty.tsv").unlink()
    with pytest.raises(NoUsableDataError, match="no data files"):
        load_study(tmp_path)


def test_clinical_only_is_not_usable(tmp_path):
    CASES["latin1_clinical"].write(tmp_path)
    with pytest.raises(NoUsableDataError, match="only a clinical"):
        load_study(tmp_path)


def test_single_file_path(tmp_path):
    good_matrix().to_csv(tmp_path / "proteins.tsv", sep="\t")
    (tmp_path / "other.tsv").write_text("")
    s = load_study(tmp_path / "proteins.tsv")
    assert [r.path for r in s.reports] == ["proteins.tsv"]
    assert s.modalities["proteomics"].shape == (6, 12)
