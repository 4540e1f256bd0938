"""One tokeniser for column names (:func:`proteus.design.column_words`), used by the design roles and
by the profile's typing (identifier, survival time and event words), on the bundled datasets' own
sample tables and on a GEO breast cohort with a numeric patient id added."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from proteus import profile
from proteus.datasets import fetch, shared_dataset_dir
from proteus.design import column_words
from proteus.io import load_study


def _plain_words(name: str) -> set[str]:
    """The profile's former tokeniser (split on non-alphanumerics only): the reference for 'before'."""
    return {t for t in re.split(r"[^a-z0-9]+", name.lower()) if t}


@pytest.mark.parametrize(("name", "words"), [
    ("BioReplicate", {"bio", "replicate"}),
    ("PatientID", {"patient", "id"}),
    ("subjectId", {"subject", "id"}),
    ("Proteomics_Parent_Sample_IDs", {"proteomics", "parent", "sample", "ids"}),
    ("TMTPlex", {"tmt", "plex"}),
    ("OS.time", {"os", "time"}),
    # an acronym run into a lower-case word stays one word: no stray 'e' (an event word) from ERstatus
    ("ERstatus", {"erstatus"}),
    ("OSmonths", {"osmonths"}),
    ("EPIC_NKcells", {"epic", "nkcells"}),
])
def test_column_words(name, words):
    assert column_words(name) == words


def _bundled_names(ucec_study) -> dict[str, list[str]]:
    names = {"cptac-ucec": list(map(str, ucec_study.clinical.columns))}
    for ds, sheet in (("bodenmiller-bcrxl", "metadata.tsv"), ("ramus2016-ups1-maxquant", "samples.tsv")):
        folder = shared_dataset_dir(ds)
        if folder is not None:
            names[ds] = list(pd.read_csv(folder / sheet, sep="\t").columns)
    return names


def _same_word_sets(ds: str, names: list[str]) -> None:
    for n in names:
        for words in (profile._ID_TOKENS, profile._TIME_TOKENS, profile._EVENT_TOKENS):
            assert bool(column_words(n) & words) == bool(_plain_words(n) & words), (ds, n, sorted(column_words(n)))


def test_profile_word_sets_unchanged_on_bundled_sample_tables(ucec_study):
    """Every bundled sample-table column counts as an identifier, survival-time or event name under
    column_words exactly when it did under the profile's former tokeniser (no silent role change)."""
    names = _bundled_names(ucec_study)
    for ds, cols in names.items():
        _same_word_sets(ds, cols)
    assert sum(map(len, names.values())) > 150
    ids = [n for n in names["cptac-ucec"] if column_words(n) & profile._ID_TOKENS]
    assert ids and all(re.search(r"(?i)(id|uuid)s?$", n) for n in ids)


def test_profile_word_sets_unchanged_on_nafld_sample_table(nafld_dir):
    cols = list(map(str, load_study(nafld_dir).clinical.columns))
    assert len(cols) > 10
    _same_word_sets("nafld-plasma", cols)


def test_numeric_patient_id_is_an_identifier_not_a_measurement(tmp_path):
    """GSE7390 breast cohort with three columns added: a numeric ``PatientID`` (unique per sample) was
    typed a continuous variable by the old tokeniser (``patientid`` is no id word) and is an identifier
    now; ``ERstatus`` (0/1) stays a binary factor, not a survival event; the cohort's own columns keep
    their kinds and roles."""
    pytest.importorskip("sksurv", reason="pip install scikit-survival")
    base = fetch("gse7390-breast", tmp_path / "base")
    before = {v.name: (v.kind, v.role) for v in profile.profile_study(load_study(base)).variables}
    data = tmp_path / "with_ids"
    shutil.copytree(base, data)
    clin = pd.read_csv(data / "clinical.tsv", sep="\t")
    rng = np.random.default_rng(0)
    clin["PatientID"] = rng.permutation(len(clin)) + 1001
    clin["ERstatus"] = rng.integers(0, 2, len(clin))
    clin.to_csv(data / "clinical.tsv", sep="\t", index=False)
    p = profile.profile_study(load_study(data))
    kinds = {v.name: (v.kind, v.role) for v in p.variables}
    assert kinds["PatientID"] == ("id", "identifier")
    assert kinds["ERstatus"][0] == "binary"
    assert "PatientID" not in p.continuous
    assert {k: kinds[k] for k in before} == before
