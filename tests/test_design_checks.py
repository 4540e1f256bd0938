"""Confounder checks that say something (proteus.confounding), on the CPTAC UCEC study and the
alphastats NAFLD plasma study: a continuous column that measures the grouping is said as a
definition; a mutation's hit is refitted with the columns its mutated samples differ in; clusters
carry their stability. Every expected answer is derived here from the data, none is in the code."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from proteus.confounding import SEPARATION_AUC, UNSTABLE_PAC, contrast_checks, explained_by, hypothesis_checks
from proteus.profile import profile_study
from proteus.records import Entity, Provenance, Relation, Stats, contrast_entity
from proteus.tools.mutation import VARIANT_CLASSES
from proteus.tools.registry import ToolContext, get_tool


@pytest.fixture(scope="module")
def ucec(ucec_study):
    return ucec_study, profile_study(ucec_study).confounder_columns()


def _auc(x: pd.Series, y: pd.Series) -> float:
    u = stats.mannwhitneyu(x, y).statistic / (len(x) * len(y))
    return max(u, 1 - u)


def test_a_continuous_column_a_threshold_of_which_is_the_grouping_measures_it_and_is_no_confounder(ucec):
    study, columns = ucec
    clin = study.clinical
    continuous = [c for c, _, cont in columns if cont]
    factors = [c for c, role, cont in columns if role == "biological" and not cont and 2 <= clin[c].nunique() <= 6]
    best, overlapping = None, None
    for f in factors:
        for a, b in itertools.combinations(sorted(clin[f].dropna().astype(str).unique()), 2):
            ga, gb = clin[f].astype(str) == a, clin[f].astype(str) == b
            if min(ga.sum(), gb.sum()) < 10:
                continue
            for col in continuous:
                x = pd.to_numeric(clin[col], errors="coerce")
                xa, xb = x[ga].dropna(), x[gb].dropna()
                if min(len(xa), len(xb)) < 10:
                    continue
                auc = _auc(xa, xb)
                if best is None or auc > best[0]:
                    best = (auc, f, a, b, col)
                if 0.75 < auc < 0.85 and stats.mannwhitneyu(xa, xb).pvalue < 1e-4:
                    overlapping = (auc, f, a, b, col)
    auc, f, a, b, col = best
    assert auc >= SEPARATION_AUC  # the derived fixture: a threshold of the column separates two levels
    checks = {c.column: c for c in contrast_checks(clin, f, [a], [b], columns)}
    assert checks[col].decision == "measures the grouping" and checks[col].auc == pytest.approx(auc, abs=1e-3)
    rel = Relation(subject=Entity(type="protein", label="X"), predicate="higher_in", object=contrast_entity(f, a, b),
                   stats=Stats(effect=1.0, p=1e-4, q=1e-3, direction="up"),
                   provenance=Provenance(tool="differential_abundance", params={"group": f, "case": a, "control": b}))
    _, clause, why = hypothesis_checks([rel], clin, columns)
    assert col not in clause and "cannot be separated" not in clause.split(col)[0]
    assert f"{col} measures the grouping" in why and "it does not confound them" in why
    # a column the groups differ in but overlap on stays a confounder to name, never a definition
    auc, f, a, b, col = overlapping
    c = {c.column: c for c in contrast_checks(clin, f, [a], [b], columns)}[col]
    assert c.decision in ("associated", "cannot be separated") and c.auc == pytest.approx(auc, abs=1e-3)


def _ols(y, X):
    fit = sm.OLS(y, X).fit()
    return float(fit.params.iloc[1]), float(fit.pvalues.iloc[1])


def test_a_mutation_hit_is_refitted_with_the_subtype_its_mutated_samples_differ_in(ucec, tmp_path):
    study, columns = ucec
    res = get_tool("mutation_association")(study, {"modality": "proteomics", "top_n": 3},
                                           ToolContext(out_dir=tmp_path, seed=0, figures=False,
                                                       provenance=Provenance(tool="mutation_association")))
    rels = [r for r in res.relations if r.provenance.tool == "mutation_association"]
    assert rels
    cache, said = {}, {"gone": [], "holds": []}
    continuous = {c: cont for c, _, cont in columns}
    X = study.modalities["proteomics"].to_df()
    m = study.mutations
    samples = [s for s in X.index if s in set(m["sample"].astype(str))]
    nonsilent = m["variant_class"].astype(str).str.strip().str.lower().str.replace(" ", "_").isin(VARIANT_CLASSES["nonsilent"])
    by_gene = {}
    for r in rels:  # the strongest hits of each gene tested
        by_gene.setdefault(r.stats.extra["mutation"], []).append(r)
    for r in [r for hits in by_gene.values() for r in sorted(hits, key=lambda r: r.stats.p)[:6]]:
        records, clause, why = hypothesis_checks([r], study.clinical, columns, cache, study=study)
        gene = r.stats.extra["mutation"].split(":", 1)[1]
        (rec,) = records  # the old code checked no mutation contrast at all
        assert rec["contrast"] == f"{gene} mutation: mutated vs wild-type" and rec["n_columns"] > 0
        mutated = set(m.loc[(m["gene"].astype(str) == gene) & nonsilent, "sample"].astype(str))
        for c in rec.get("refitted", [])[:4]:
            col = c["column"]
            # the refit, redone with statsmodels on the samples with the column recorded
            d = pd.DataFrame({"y": X.loc[samples, r.stats.extra["feature_id"]], "m": [float(s in mutated) for s in samples],
                              "c": study.clinical.reindex(samples)[col]}, index=samples).dropna()
            base = _ols(d["y"], sm.add_constant(d[["m"]]))
            z = d[["c"]].astype(float) if continuous[col] else pd.get_dummies(d["c"].astype(str), drop_first=True, dtype=float)
            adj = _ols(d["y"], sm.add_constant(pd.concat([d[["m"]], z], axis=1)))
            assert f"{base[0]:+.2f} (p={base[1]:.1g}) -> {adj[0]:+.2f} (p={adj[1]:.1g}) adjusted for {col}" in c["adjusted"]
            assert c["reason"].endswith("gone adjusted for it") == (base[1] < 0.05 <= adj[1])
        if "the difference is gone" in clause:
            said["gone"].append(clause)
            assert explained_by(records) and f"so it may follow {explained_by(records)}" in clause  # the run drops it
        elif "it holds adjusted for" in clause:
            said["holds"].append(clause)
            assert explained_by(records) is None
    # on this cohort some mutation hits follow a subtype the mutation tracks, others survive it
    assert said["gone"] and said["holds"], said


def test_cluster_hypotheses_carry_the_clustering_stability(nafld_dir, tmp_path):
    from proteus.io import load_study

    study = load_study(nafld_dir)
    columns = profile_study(study).confounder_columns()
    variables = [c for c, role, cont in columns if role == "biological" and not cont]
    res = get_tool("consensus_clustering")(study, {"modality": "proteomics", "n_resamples": 20, "variables": variables},
                                           ToolContext(out_dir=tmp_path, seed=0, figures=False,
                                                       provenance=Provenance(tool="consensus_clustering")))
    pac, k = res.metrics["pac"], res.metrics["k"]
    assert res.relations and all(r.stats.extra["pac"] == pytest.approx(pac, abs=1e-4) and r.stats.extra["k"] == k for r in res.relations)
    _, clause, why = hypothesis_checks(res.relations, study.clinical, columns)
    assert f"PAC {pac:.2f} at k={k}" in why
    assert ("clusters are unstable" in clause and "not distinct subtypes" in clause) == (pac > UNSTABLE_PAC)


def test_clusters_are_checked_against_the_technical_columns_and_one_they_follow_is_named(nafld_dir, tmp_path):
    """A plate column planted on the clusters' own samples (the largest cluster on one plate) is named as
    a possible batch effect; a plate column shuffled over the same samples is not."""
    from proteus.io import load_study

    study = load_study(nafld_dir)
    columns = profile_study(study).confounder_columns()
    params = {"modality": "proteomics", "n_resamples": 20, "variables": [c for c, role, cont in columns if role == "biological" and not cont]}
    run = get_tool("consensus_clustering")
    ctx = ToolContext(out_dir=tmp_path, seed=0, figures=False, provenance=Provenance(tool="consensus_clustering"))
    labels = run(study, params, ctx).tables["labels"].set_index("sample")["cluster"]
    plate = pd.Series(np.where(labels == labels.value_counts().index[0], "plate 1", "plate 2"), index=labels.index)
    study.clinical["plate"] = plate.reindex(study.clinical.index)
    study.clinical["shuffled plate"] = pd.Series(plate.sample(frac=1.0, random_state=0).to_numpy(), index=plate.index).reindex(study.clinical.index)
    res = run(study, {**params, "technical": ["plate", "shuffled plate"]}, ctx)
    tech = res.relations[0].stats.extra["technical"]
    shuffled = pd.crosstab(labels, study.clinical["shuffled plate"].reindex(labels.index)).to_numpy()
    assert tech["plate"]["p"] < 1e-6 and tech["shuffled plate"]["p"] == pytest.approx(stats.chi2_contingency(shuffled, correction=False)[1])
    _, clause, why = hypothesis_checks(res.relations, study.clinical, columns)
    assert "technical column plate (" in clause and "technical effect of how the samples were prepared or measured" in clause
    assert ("shuffled plate" in clause) == (tech["shuffled plate"]["p"] < 0.05) and "shuffled plate p=" in why
