"""A pathway-programme claim is validated as a programme (proteus.edge_data.programme_design), on UCEC.

Real data only: the tumour-vs-normal protein and phosphosite differentials of the UCEC study (``site_run``) and the
Reactome over-representation of their hits, as a run makes them; contrasts come from the data profile.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from proteus import genesets
from proteus.kg import KnowledgeGraph
from proteus.policy.patterns import compose_hypotheses
from proteus.policy.result_tables import ResultTables
from proteus.records import Provenance
from proteus.stats.features import canonical_features, feature_genes
from proteus.tools.registry import ToolContext, get_tool
from proteus.validation import permute_labels, validate_hypotheses


@pytest.fixture(scope="module")
def programmes(site_run, ucec_study, tmp_path_factory):
    """The knowledge graph with each layer's Reactome ORA added, and its programme drafts (statements that pathways move)."""
    kg0, tables, kinds, _ = site_run
    kg = KnowledgeGraph()
    kg.add_relations(list(kg0.relations.values()))
    out = tmp_path_factory.mktemp("programme")
    for d in [d for _, d in kg0.g.nodes(data=True) if d.get("type") == "step"]:
        ctx = ToolContext(out_dir=out, seed=0, figures=False, provenance=Provenance(tool="enrichment_ora", step=f"E{d['id']}"))
        kg.add_relations(get_tool("enrichment_ora")(ucec_study, dict(d["params"]) | {"library": "reactome", "direction": "both"}, ctx).relations)
    drafts = compose_hypotheses(kg, tables=ResultTables(kg, lambda p: tables.get(p), kinds), limit=200)
    return kg, [d for d in drafts if re.search(r"programmes? (is|are) (higher|lower)", d.statement)]


def _members(kg, eid):
    ex = kg.relation(eid).stats.extra
    return set(genesets.load(ex["library"])[ex["set_id"]])


def test_a_programme_claim_rests_on_its_pathways_never_on_a_gene(programmes):
    """Every pathway a programme statement says moves is a ``programme`` key; no gene's edge is a key (a cited
    member's edge supports, a gene outside a stated set is no key at all). Old code: no keys, so the first testable
    edge, a single gene's change, decided the programme."""
    kg, drafts = programmes
    assert drafts, "tumour vs normal has pathways whose members move"
    for d in drafts:
        named = re.findall(r"'([^']+)'", d.statement.split(" programme")[0])
        keys = {k.edge: k for k in d.key_edges}
        assert keys and all(k.model == "programme" for k in keys.values()), (d.statement, d.key_edges)
        assert sorted(kg.relation(e).subject.label for e in keys) == sorted(named), d.statement
        assert all(kg.relation(e).predicate == "enriched_in" and e in d.evidence for e in keys)
        genes = [e for e in d.evidence if kg.relation(e).predicate != "enriched_in"]
        assert not set(genes) & set(keys)


def test_the_verdict_comes_from_the_programme_score(programmes, ucec_study):
    """Each programme key is re-tested as the per-sample score of its set on held-out splits against the library's
    permutation null, and the hypothesis takes the worst of those verdicts, whatever its members' edges do;
    the score agrees with the mean z-score recomputed here, and on label-permuted samples no programme validates."""
    kg, drafts = programmes
    hyps = [{"id": f"H{i}", **d.model_dump()} for i, d in enumerate(drafts[:2])]
    out = validate_hypotheses(ucec_study, kg, hyps)
    worst = {"failed": 0, "inconclusive": 1, "validated": 2}
    for h in out:
        v = h["validation"]
        keys = v["key_edges"]
        assert keys and {k["model"] for k in keys} == {"programme"}, v["reason"]
        assert {k["edge"] for k in keys} == {x["edge"] for x in h["key_edges"]}, "no first testable (gene) edge stands in"
        tested = [k for k in keys if k["status"] == "tested"]
        assert tested, v["reason"]
        assert v["status"] == min((k["verdict"] for k in tested), key=worst.__getitem__)
        assert "programme score" in v["reason"]
        for k in tested:
            assert any("programme score" in n for n in k["notes"])
            assert np.sign(k["effect"]) == (1 if kg.relation(k["edge"]).stats.direction == "up" else -1) or k["verdict"] == "failed"
    # the programme score, recomputed: mean over member genes of the features' z-scores, tumour minus normal
    k = next(k for h in out for k in h["validation"]["key_edges"] if k["status"] == "tested")
    r = kg.relation(k["edge"])
    p = r.provenance.params
    a = ucec_study.modalities[r.modality]
    lab = ucec_study.sample_table(r.modality)[p["group"]].astype(str)
    lab = lab[lab.isin([p["case"], p["control"]])]
    X = pd.DataFrame(np.asarray(a.X, float), index=a.obs_names.astype(str), columns=a.var_names.astype(str)).loc[lab.index]
    keep = canonical_features(a).to_numpy(bool)
    sym = pd.Series(genesets.to_symbols(list(feature_genes(a))), index=X.columns)[keep]
    Z = ((X - X.mean()) / X.std(ddof=1)).loc[:, keep]
    Z = Z.loc[:, sym.isin(_members(kg, r.id)).to_numpy()]
    score = Z.T.groupby(sym[sym.isin(_members(kg, r.id))].to_numpy()).mean().mean()
    diff = score[lab == p["case"]].mean() - score[lab == p["control"]].mean()
    assert diff == pytest.approx(k["effect"], rel=0.05, abs=0.02)
    null = validate_hypotheses(permute_labels(ucec_study, seed=3), kg, hyps[:1])[0]["validation"]
    assert all(x.get("verdict") != "validated" for x in null["key_edges"]), null["reason"]
