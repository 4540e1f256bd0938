"""One event, one hypothesis (:mod:`proteus.policy.same_event`) on the real NAFLD plasma cohort: the same
proteins tested in the same samples under a second column that names the groups differently (as a subtype
column refines a status column) are folded into the first hypothesis; the same proteins in other samples
(the pooled contrast) or other proteins in the same samples stay separate."""

from __future__ import annotations

import pytest

from proteus.io import load_study
from proteus.kg import KnowledgeGraph
from proteus.policy.decisions import HypothesisDraft
from proteus.policy.same_event import fold_same_events
from proteus.profile import profile_study
from proteus.records import Provenance
from proteus.tools.registry import ToolContext, get_tool


@pytest.fixture(scope="module")
def relabelled(nafld_dir, tmp_path_factory):
    study = load_study(nafld_dir)
    prof = profile_study(study)
    pooled = next(c for c in prof.contrasts if c.case_levels)
    two = next(c for c in prof.contrasts if not c.case_levels and c.group == pooled.group)
    clin = study.clinical
    clin["relabelled"] = clin[two.group].map(lambda v: None if v is None else f"group {sorted(clin[two.group].dropna().unique()).index(v)}")
    relabel = dict(zip(clin[two.group], clin["relabelled"]))
    out = tmp_path_factory.mktemp("same_event")
    kg = KnowledgeGraph()
    runs = {}
    for name, params in {
        "original": {"group": two.group, "case": two.case, "control": two.control},
        "relabelled": {"group": "relabelled", "case": relabel[two.case], "control": relabel[two.control]},
        "pooled": {"group": pooled.group, "case": pooled.case, "control": pooled.control, "case_levels": pooled.case_levels},
    }.items():
        ctx = ToolContext(out_dir=out, seed=0, provenance=Provenance(tool="differential_abundance", step=name))
        res = get_tool("differential_abundance")(study, {"modality": "proteomics", **params}, ctx)
        kg.add_relations(res.relations)
        runs[name] = {(r.subject.label, r.predicate): r for r in res.relations if r.predicate in ("higher_in", "lower_in")}
    return kg, clin, runs


def _draft(r):
    return HypothesisDraft(statement=f"{r.subject.label} {r.predicate} {r.object.label}.", rationale="x", evidence=[r.id],
                           entities=[r.subject.id], test="t")


def test_the_same_proteins_in_the_same_samples_are_one_hypothesis(relabelled):
    kg, clin, runs = relabelled
    shared = sorted(set(runs["original"]) & set(runs["relabelled"]))
    assert len(shared) >= 2
    first, second = shared[:2]
    drafts = [_draft(runs["original"][first]), _draft(runs["original"][second]), _draft(runs["relabelled"][first])]
    out = fold_same_events(drafts, kg, clin)
    assert [d.statement for d in out] == [drafts[0].statement, drafts[1].statement]  # other protein, same samples: kept
    assert drafts[2].statement.rstrip(".") in out[0].rationale and runs["relabelled"][first].id in out[0].rationale
    assert "same event" not in out[1].rationale


def test_the_same_protein_in_other_samples_stays_its_own_hypothesis(relabelled):
    kg, clin, runs = relabelled
    key = next(k for k in sorted(runs["original"]) if k in runs["pooled"])
    drafts = [_draft(runs["original"][key]), _draft(runs["pooled"][key])]
    assert fold_same_events(drafts, kg, clin) == drafts
