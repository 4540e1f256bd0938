"""Prompt budget benchmark: every decision's prompt and answer budget vs the model's context.

Renders all seven decision prompts with :func:`~proteus.policy.llm.render_decision` (the code
path of :class:`~proteus.policy.llm.LLMPolicy`, no model) for big studies and a knowledge graph
with thousands of relations, and prints each prompt's token estimate and answer budget against
the context (default 8192; below 4096 the rendering is compact).

Studies:

- ``ucec``: the CPTAC UCEC cohort's profile (proteomics ~11k proteins, phosphoproteomics ~73k
  sites, acetylome, RNA, CNA, miRNA, mutations, ~150 samples, its clinical table). With
  ``--data DIR`` (``proteus datasets fetch cptac-ucec DIR``) the real files are loaded and
  profiled; without it a profile with the same shape is synthesised (the summary depends on the
  number of layers, variables and levels, not on the number of features).
- the knowledge graph: ``--relations`` relations (default 5000) between phosphosites, proteins,
  pathways and sample groups (group comparisons carry the samples observed per group, as the
  relation lines print them: 8192 context, interpret 4615 -> 5328 prompt tokens when the short
  lines gained them; every prompt still fits).

Usage::

    python evals/bench_prompt_budget.py [--data DIR] [--budget 8192] [--relations 5000]

Exit status 1 if any prompt plus its answer budget exceeds the context.
"""

from __future__ import annotations

import argparse
import sys
import time

from proteus.kg import KnowledgeGraph
from proteus.llm.context import estimate_tokens
from proteus.policy.base import ResearchView
from proteus.policy.decisions import StepSpec
from proteus.policy.llm import render_decision
from proteus.profile import ClinicalVariable, Contrast, DataProfile, ModalityProfile
from proteus.records import Entity, Hypothesis, Objective, Provenance, Relation, Stats, Step
from proteus.tools.registry import list_tools


def ucec_like_profile() -> DataProfile:
    """A profile with the shape of CPTAC UCEC (layers, ~120 clinical variables, many levels)."""
    mods = [
        ModalityProfile(name="proteomics", kind="proteomics", level="sample", n_samples=153, n_features=11141, missing_fraction=0.22, id_type="symbol"),
        ModalityProfile(name="phosphoproteomics_site", kind="phosphoproteomics", level="sample", n_samples=138, n_features=73212, missing_fraction=0.61, id_type="site (GENE-S123)"),
        ModalityProfile(name="acetylproteomics", kind="acetylproteomics", level="sample", n_samples=138, n_features=21945, missing_fraction=0.66, id_type="site (GENE-S123)"),
        ModalityProfile(name="transcriptomics", kind="transcriptomics", level="sample", n_samples=109, n_features=28057, missing_fraction=0.0, id_type="symbol"),
        ModalityProfile(name="cna", kind="cna", level="sample", n_samples=95, n_features=28057, missing_fraction=0.0, id_type="symbol"),
        ModalityProfile(name="mirna", kind="mirna", level="sample", n_samples=104, n_features=2337, missing_fraction=0.0, id_type="mirna"),
    ]
    variables = []
    for i in range(40):
        variables.append(ClinicalVariable(name=f"Clinical_category_{i}_with_a_long_descriptive_name", kind="categorical", n=140, n_missing=13, levels={f"level_{j}": 20 for j in range(6)}))
    for i in range(60):
        variables.append(ClinicalVariable(name=f"Continuous_measure_{i}_ESTIMATE_score", kind="continuous", n=150, n_missing=3, summary={"min": 0.0, "median": 1.0, "max": 9.0}))
    for i in range(20):
        variables.append(ClinicalVariable(name=f"Mutation_status_gene_{i}", kind="binary", n=95, n_missing=58, levels={"Wildtype": 60, "Mutated": 35}))
    contrasts = [Contrast(group=v.name, case="Mutated", control="Wildtype", n_case=35, n_control=60) for v in variables if v.kind == "binary"]
    contrasts.insert(0, Contrast(group="Proteomics_Tumor_Normal", case="Tumor", control="Adjacent_normal", n_case=104, n_control=49))
    return DataProfile(
        modalities=mods,
        variables=variables,
        contrasts=contrasts,
        multi_groups=[v.name for v in variables if v.kind == "categorical"],
        continuous=[v.name for v in variables if v.kind == "continuous"],
        survival=[("Survival_time_days", "Survival_status")],
        batch_columns=["TMT_plex", "Proteomics_TMT_batch", "Proteomics_TMT_channel"],
        sample_type_column="Proteomics_Tumor_Normal",
        tumour_level="Tumor",
        recurrent_mutations={f"GENE{i}": 90 - i for i in range(40)},
        n_samples=153,
    )


def real_profile(data: str) -> DataProfile:
    from proteus.io.load import load_study
    from proteus.profile import profile_study

    return profile_study(load_study(data))


def big_kg(n: int) -> KnowledgeGraph:
    kg = KnowledgeGraph()
    grp = Entity(type="sample_group", label="Proteomics_Tumor_Normal: Tumor vs Adjacent_normal")
    rels = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            subj, pred, obj = Entity(type="phosphosite", label=f"GENE{i}-S{100 + i % 900}"), "higher_in", grp
        elif kind == 1:
            subj, pred, obj = Entity(type="protein", label=f"GENE{i}"), "lower_in", grp
        elif kind == 2:
            subj, pred, obj = Entity(type="pathway", label=f"REACTOME_PATHWAY_WITH_A_RATHER_LONG_NAME_{i}"), "enriched_in", grp
        else:
            subj, pred, obj = Entity(type="protein", label=f"GENE{i}"), "correlates_with", Entity(type="clinical_variable", label="Continuous_measure_3_ESTIMATE_score")
        rels.append(
            Relation(
                subject=subj,
                predicate=pred,
                object=obj,
                stats=Stats(effect=1.5, effect_type="log2FC", p=1e-4, q=(i + 1) / (10 * n), n=150,
                            observed={"Tumor": (95 - i % 9, 100), "Adjacent_normal": (49 - i % 4, 50)} if kind < 2 else {}),
                modality="phosphoproteomics" if kind == 0 else "proteomics",
                provenance=Provenance(tool="differential_abundance", step=f"s_{i % 40}", params={"i": i}),
            )
        )
    kg.add_relations(rels)
    return kg


def render_all(profile: DataProfile, kg: KnowledgeGraph, budget: int) -> list[tuple[str, int, int]]:
    """(decision, prompt tokens, answer budget) of every prompt rendered for this profile and
    graph for a model with ``budget`` tokens of context (:func:`render_decision`)."""
    objectives = [
        Objective(id=f"obj_{i}", title=f"Objective {i}: tumour vs normal phosphosignalling", question="Which sites separate tumour from normal?" * 3, family="differential", findings="Found 812 sites; " * 20)
        for i in range(8)
    ]
    view = ResearchView(profile=profile, kg=kg, tools=list_tools(), objectives=objectives, check_step=lambda s: None, seed=0)
    rids = list(kg.relations)
    steps = [
        Step(id=f"s_{i}", tool="differential_abundance", params={"modality": "phosphoproteomics_site", "group": "Proteomics_Tumor_Normal"}, status="done", summary="log2FC ... " * 60, metrics={"n_tested": 73212, "n_significant": 812}, relation_ids=rids[i * 100 : (i + 1) * 100])
        for i in range(6)
    ]
    hyp = Hypothesis(id="h1", statement="S" * 400, rationale="R" * 1000, evidence=rids[:12], entities=[f"protein:GENE{i}" for i in range(20)], test="T" * 500)
    calls = [
        ("plan_objectives", ()),
        ("plan_workflow", (objectives[0],)),
        ("interpret", (objectives[0], steps[0])),
        ("update_workflow", (objectives[0], steps, [StepSpec(tool="enrichment_ora", params={"modality": "proteomics"}, rationale="x" * 300)] * 6)),
        ("update_objectives", (objectives[:4], objectives[4:])),
        ("propose_hypotheses", ()),
        ("judge", (hyp,)),
    ]
    rows = []
    for name, args in calls:
        p = render_decision(name, view, *args, context_tokens=budget)
        rows.append((name, sum(estimate_tokens(m["content"]) for m in p.messages), p.max_tokens))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="folder with the CPTAC UCEC files (proteus datasets fetch cptac-ucec DIR)")
    ap.add_argument("--budget", type=int, default=8192, help="the model's context in tokens")
    ap.add_argument("--relations", type=int, default=5000)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    profile = real_profile(args.data) if args.data else ucec_like_profile()
    kg = big_kg(args.relations)
    rows = render_all(profile, kg, args.budget)
    src = args.data or "synthetic UCEC-shaped profile"
    print(f"profile: {src}; {len(profile.modalities)} layers ({', '.join(f'{m.name} {m.n_features}' for m in profile.modalities)}); {len(profile.variables)} clinical variables")
    print(f"knowledge graph: {len(kg.relations)} relations; tools: {len(list_tools())}")
    print(f"{'decision':<22}{'prompt':>8}{'answer':>8}  context {args.budget}")
    for name, tok, ans in rows:
        print(f"{name:<22}{tok:>8}{ans:>8}  {'OK' if tok + ans <= args.budget else 'OVER'}")
    worst = max(rows, key=lambda r: r[1] + r[2])
    total = worst[1] + worst[2]
    print(f"largest prompt + answer: {worst[0]} {total} tokens vs context {args.budget} ({total / args.budget:.0%}); {time.perf_counter() - t0:.1f} s")
    return 0 if total <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
