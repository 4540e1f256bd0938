"""Fast checks of the offline analyst's planning and hypothesis patterns (the fixes behind
``tests/test_datasets_e2e.py``): profile typing, playbook steps, pattern hypotheses."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from proteus.kg import KnowledgeGraph
from proteus.policy.patterns import compose_hypotheses
from proteus.policy.playbooks import bulk_plays
from proteus.profile import profile_study
from proteus.records import Entity, Provenance, Relation, Stats, contrast_entity
from proteus.study import Study


def _study(var_names, clinical: pd.DataFrame, missing: float = 0.0, scale: str = "") -> Study:
    rng = np.random.default_rng(0)
    x = rng.normal(20, 1, (len(clinical), len(var_names)))
    if missing:
        x[rng.random(x.shape) < missing] = np.nan
    a = ad.AnnData(x, obs=pd.DataFrame(index=clinical.index.astype(str)), var=pd.DataFrame(index=list(var_names)))
    a.uns.update({"modality": "transcriptomics" if not scale else "proteomics", "level": "sample", "scale": scale})
    return Study(".", {"transcriptomics" if not scale else "proteomics": a}, clinical)


def _clinical(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({
        "subject external_id": np.arange(1000, 1000 + n),
        "er": rng.choice(["positive", "negative"], n),
        "grade": ["well"] * 10 + ["intermediate"] * 14 + ["poor"] * 14 + ["unkown"] * 2,
        "time": rng.uniform(10, 3000, n).round(),
        "event": rng.integers(0, 2, n),
        "CIBERSORT_T _cells _CD8": rng.uniform(0, 0.3, n),
    }, index=[f"S{i}" for i in range(n)])


def test_profile_types_probe_ids_numeric_ids_and_misspelt_unknown():
    prof = profile_study(_study([f"{200000 + i}_s_at" for i in range(30)], _clinical()))
    assert prof.modalities[0].id_type == "probe"
    kinds = {v.name: v.kind for v in prof.variables}
    assert kinds["subject external_id"] == "id"  # numeric identifiers are not continuous measurements
    assert kinds["CIBERSORT_T _cells _CD8"] == "continuous"  # a 'T' token is not a follow-up time
    assert prof.survival == [("time", "event")]
    assert not any("unkown" in (c.case, c.control) for c in prof.contrasts)


def test_playbook_survival_kaplan_meier_anova_levels_and_no_pathways_on_probes():
    prof = profile_study(_study([f"{200000 + i}_s_at" for i in range(30)], _clinical()))
    plays = bulk_plays(prof)
    titles = [p.objective.title for p in plays]
    assert titles.index("Features associated with outcome") == 1  # right after the first contrast
    surv = next(p for p in plays if p.objective.family == "survival")
    tools = [s.tool for s in surv.steps]
    assert tools[0] == "cox_per_feature" and "kaplan_meier" in tools
    km_groups = {s.params["group"] for s in surv.steps if s.tool == "kaplan_meier"}
    assert km_groups <= {"er", "grade"} and km_groups
    anova = next(s for p in plays for s in p.steps if s.tool == "differential_anova")
    assert anova.params["levels"] == ["well", "intermediate", "poor"] and anova.params["ordered"]  # ordinal words, 'unkown' left out
    assert not any(s.tool in ("enrichment_ora", "enrichment_gsea", "ppi_network") for p in plays for s in p.steps)


def test_playbook_label_free_filter_and_every_level_against_reference():
    n = 50
    clin = pd.DataFrame({"disease": ["healthy"] * 10 + ["A"] * 10 + ["B"] * 10 + ["C"] * 10 + ["D"] * 10},
                        index=[f"S{i}" for i in range(n)])
    prof = profile_study(_study([f"G{i}" for i in range(50)], clin, missing=0.5, scale="log2"))
    plays = bulk_plays(prof)
    da = [s for p in plays for s in p.steps if s.tool == "differential_abundance"]
    assert {s.params["case"] for s in da} == {"A", "B", "C", "D", "all non-healthy"}
    assert {s.params["control"] for s in da} == {"healthy"}
    pooled = next(s for s in da if s.params.get("case_levels"))  # and the levels pooled against it, tested first
    assert sorted(pooled.params["case_levels"]) == ["A", "B", "C", "D"] and da[0] is pooled
    # missing values modelled by the tool's default (no imputation asked for), and the rationale says why
    assert all("impute" not in s.params and "method" not in s.params for s in da)
    frac = f"{prof.modalities[0].missing_fraction:.0%} of values missing"
    assert all(frac in s.rationale and "dropouts" in s.rationale for s in da)


def _rel(subj: Entity, pred: str, obj: Entity, q: float, tool: str, effect: float = 1.0, **stats) -> Relation:
    return Relation(subject=subj, predicate=pred, object=obj, stats=Stats(effect=effect, q=q, p=q / 10, n=20, **stats),
                    modality="x", provenance=Provenance(tool=tool))


def test_patterns_skip_circular_cluster_markers_and_cell_level_singles():
    kg = KnowledgeGraph()
    kg.add_relation(_rel(Entity(type="gene", label="G1"), "higher_in", contrast_entity("transcriptomics subtype", "C1"), 1e-9, "consensus_clustering"))
    kg.add_relation(_rel(Entity(type="cell_population", label="unassigned 3"), "lower_in", contrast_entity("condition", "B", "A"), 1e-9, "cytometry_differential_abundance"))
    assert compose_hypotheses(kg) == []
    kg.add_relation(_rel(Entity(type="gene", label="G2"), "higher_in", contrast_entity("er", "positive", "negative"), 1e-4, "differential_abundance"))
    assert [d.statement.split()[0] for d in compose_hypotheses(kg)] == ["G2"]


def test_patterns_survival_by_clinical_group_and_population_markers():
    kg = KnowledgeGraph()
    r = _rel(Entity(type="clinical_variable", label="er"), "associated_with_survival", Entity(type="clinical_variable", label="time"),
             0.01, "kaplan_meier", effect=0.49, effect_type="hazard_ratio_positive_vs_negative", extra={"test": "log-rank"})
    kg.add_relation(r)
    pop = Entity(type="cell_population", label="NK cells")
    for g, q in (("NKG7", 1e-30), ("GZMA", 1e-20), ("CTSW", 1e-10)):
        kg.add_relation(_rel(Entity(type="gene", label=g), "marker_of", pop, q, "singlecell_clustering", effect=3.0))
    drafts = compose_hypotheses(kg)
    surv = [d for d in drafts if r.id in d.evidence]
    assert surv and "er = positive (vs negative)" in surv[0].statement and "better" in surv[0].statement
    pops = [d for d in drafts if "NK cells" in d.statement]
    assert pops and "NKG7" in pops[0].statement and set(pops[0].evidence) <= set(kg.relations)
