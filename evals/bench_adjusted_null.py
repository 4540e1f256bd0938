"""Cost of refitting the covariates in the in-run validation's permutation null, on CPTAC UCEC.

The tumour-vs-normal contrast of the protein and phosphosite layers, adjusted for the technical columns the
data profile chose (TMT plex and channel): the label-permutation null of the whole family
(:func:`proteus.edge_data.permuted_min_p`, 199 permutations within plex blocks, covariates refitted in every
permutation) timed against the same family's unadjusted null (Student's t, free permutations), the reference
run in the same process. Reported as seconds (best of ``repeats``) and as the ratio adjusted / unadjusted.

Usage: ``python -m proteus.evals.bench_adjusted_null [DATA]`` (DATA: a fetched ``cptac-ucec`` folder; fetched
to a temporary folder when omitted, which needs cptac==0.4.1).
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace

import pandas as pd

from proteus.edge_data import edge_design, permuted_min_p
from proteus.evals.timing import best_seconds
from proteus.io import load_study
from proteus.profile import profile_study
from proteus.records import Provenance, Relation, Stats, contrast_entity, feature_entity


def bench(data: str, repeats: int = 2, n_perm: int = 199) -> pd.DataFrame:
    study = load_study(data)
    prof = profile_study(study)
    c = next(c for c in prof.contrasts if c.group == prof.sample_type_column and c.covariates)
    rows = []
    for kind in ("proteomics", "phosphoproteomics"):
        mod = next(k for k, a in study.bulk().items() if a.uns.get("modality") == kind)
        feat = str(study.modalities[mod].var_names[0])
        params = {"modality": mod, "group": c.group, "case": c.case, "control": c.control, "covariates": list(c.covariates)}
        rel = Relation(subject=feature_entity(kind, feat), predicate="higher_in", object=contrast_entity(c.group, c.case, c.control),
                       modality=mod, provenance=Provenance(tool="differential_abundance", params=params),
                       stats=Stats(effect=1.0, p=0.01, direction="up", extra={"feature_id": feat}))
        d = edge_design(study, rel)
        plain = replace(d, cov=None, blocks=None)
        t_adj = best_seconds(lambda: permuted_min_p(d, n_perm, 0), repeats)
        t_ref = best_seconds(lambda: permuted_min_p(plain, n_perm, 0), repeats)
        rows.append({"layer": kind, "features": d.X.shape[1], "samples": d.X.shape[0], "covariate_columns": d.covariates().shape[1],
                     "unadjusted_s": round(t_ref, 2), "adjusted_s": round(t_adj, 2), "ratio": round(t_adj / t_ref, 1)})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(bench(sys.argv[1]).to_string(index=False))
    else:
        from proteus import datasets

        with tempfile.TemporaryDirectory() as tmp:
            print(bench(str(datasets.fetch("cptac-ucec", tmp))).to_string(index=False))
