"""Down-shift imputation inside differential_abundance, on real label-free MaxQuant plasma data."""

from __future__ import annotations

import numpy as np

from proteus.io import load_study
from proteus.tools import ToolContext, get_tool


def test_downshift_tests_proteins_detected_in_one_group(nafld_dir, tmp_path):
    study = load_study(nafld_dir)
    tool = get_tool("differential_abundance")
    base = {"modality": "proteomics", "group": "disease", "case": "liver cirrhosis", "control": "healthy", "min_valid": 3}
    plain = tool(study, base | {"method": "limma"}, ToolContext(out_dir=tmp_path, seed=1)).tables["results"]
    imp1 = tool(study, base | {"impute": "downshift"}, ToolContext(out_dir=tmp_path, seed=1))
    fresh = load_study(nafld_dir)  # a study of its own: the contrast-table cache of `study` would answer
    imp2 = tool(fresh, base | {"impute": "downshift"}, ToolContext(out_dir=tmp_path, seed=1))
    imp3 = tool(fresh, base | {"impute": "downshift"}, ToolContext(out_dir=tmp_path, seed=2))
    t = imp1.tables["results"]
    # more features become testable: those with >= 3 values in one group only
    assert len(t) > len(plain)
    one_sided = t[(t["n_case"] < 3) | (t["n_control"] < 3)]
    assert len(one_sided) > 0 and (one_sided[["n_imputed_case", "n_imputed_control"]].sum(axis=1) > 0).all()
    # imputed counts plus observed counts add up to the group sizes
    assert ((t["n_case"] + t["n_imputed_case"]) == imp1.metrics["n_case"]).all()
    assert imp1.metrics["n_imputed"] > 0 and imp1.metrics["impute"] == "downshift"
    # seeded: the same numbers twice, other numbers with another seed
    np.testing.assert_array_equal(t["t"].to_numpy(), imp2.tables["results"]["t"].to_numpy())
    assert not np.array_equal(t["t"].to_numpy(), imp3.tables["results"]["t"].to_numpy())
