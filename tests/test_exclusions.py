"""A sample table's own exclusion flag is honoured (proteus.io.exclusions), on a lab's column names."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from proteus.io.exclusions import drop_excluded, exclusion_flags
from proteus.study import Study


def _study(clinical: pd.DataFrame) -> Study:
    a = ad.AnnData(np.arange(len(clinical) * 3, dtype=float).reshape(len(clinical), 3),
                   obs=pd.DataFrame(index=clinical.index), var=pd.DataFrame(index=["P1", "P2", "P3"]))
    a.uns.update({"modality": "proteomics", "level": "sample"})
    muts = pd.DataFrame({"sample": list(clinical.index), "gene": "G", "variant_class": "Missense_Mutation"})
    return Study(".", {"proteomics": a}, clinical, muts)


def test_flagged_samples_leave_every_table_and_the_run_says_so():
    idx = [f"s{i}" for i in range(8)]
    clin = pd.DataFrame({"QC failed": ["FALSE"] * 6 + ["TRUE"] * 2, "group": ["a", "b"] * 4,
                         "excluded_from_study": ["no"] * 8,   # flags nobody
                         "outlier": ["yes"] * 5 + ["no"] * 3,  # flags most samples: not an exclusion flag
                         "exclusion_reason": ["none"] * 7 + ["hemolysed"]},  # free text: not a flag
                        index=idx)
    assert exclusion_flags(clin) == {"QC failed": ["s6", "s7"]}
    s = drop_excluded(_study(clin))
    assert list(s.clinical.index) == idx[:6] and list(s.modalities["proteomics"].obs_names) == idx[:6]
    assert set(s.mutations["sample"]) == set(idx[:6])
    assert s.sample_notes == ["2 sample(s) flagged in 'QC failed' left out of every analysis"]
    same = _study(clin.drop(columns="QC failed"))
    assert drop_excluded(same) is same
