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
