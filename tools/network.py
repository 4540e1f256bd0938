"""Protein-protein interaction network of a contrast's hits (BioPlex 3.0).

The hits of ``group: case vs control`` (same differential computation and hit rule as
:mod:`proteus.tools.enrichment`) are placed on the BioPlex 3.0 HEK293T affinity-purification
network (Huttlin et al. 2021, shipped in :mod:`proteus.genesets`). The tool reports the hit-hit
interactions, connected modules (connected components; components larger than ``max_module``
are split by greedy modularity, Clauset-Newman-Moore 2004), hubs (degree among hits), and tests
whether the hits are more interconnected than random sets of measured proteins of the same size
(permutation test on the number of hit-hit edges, seeded).

References
----------
Huttlin EL, et al. (2021). Dual proteome-scale networks reveal cell-specific remodeling of the
human interactome. Cell 184:3022-3040. doi:10.1016/j.cell.2021.04.011
Clauset A, Newman MEJ, Moore C (2004). Finding community structure in very large networks.
Phys Rev E 70:066111. doi:10.1103/PhysRevE.70.066111
"""

from __future__ import annotations

from typing import Literal

import networkx as nx
import numpy as np
import pandas as pd
from pydantic import Field
from scipy import sparse

from proteus import genesets
from proteus.records import Entity, Relation, Stats, ToolResult
from proteus.stats.contrasts import TEST_FIELDS, ContrastTest
from proteus.study import Study
from proteus.tools.enrichment import _symbols_all, check_organism, contrast_table, gene_level, select_hits
from proteus.tools.registry import ToolContext, ToolFailed, register

__all__ = ["ppi_network", "hit_network"]

SOURCE = "BioPlex 3.0 HEK293T (Huttlin et al. 2021)"


class PpiParams(ContrastTest):
    """The contrast's differential test (the same parameters as ``differential_abundance``: name that
    step's to use its hits) and the network's settings."""

    modality: str = Field(description="bulk protein-level modality, e.g. 'proteomics' (sites are collapsed to proteins)")
    direction: Literal["up", "down", "both"] = Field("both", description="hits higher in case (up), lower (down), or either")
    hit_fdr: float = Field(0.05, gt=0, lt=1, description="BH q threshold for a feature to count as a hit")
    min_abs_logfc: float = Field(0.0, ge=0, description="minimum |log2 fold change| for a hit")
    max_hits: int | None = Field(500, ge=10, description="use at most this many most significant hit genes")
    min_pint: float = Field(0.75, ge=0, le=1, description="minimum BioPlex interaction probability pInt for an edge")
    min_module_size: int = Field(3, ge=2, description="smallest module reported")
    max_module: int = Field(40, ge=5, description="components larger than this are split by greedy modularity")
    permutations: int = Field(200, ge=0, le=5000, description="random same-size sets for the connectivity test (0 = skip)")
    max_relations: int = Field(300, ge=0, le=2000, description="at most this many interaction relations (highest pInt first)")


def _edge_index(edges: pd.DataFrame, nodes: list[str]) -> sparse.csr_matrix:
    pos = {g: i for i, g in enumerate(nodes)}
    a = edges["a"].map(pos)
    b = edges["b"].map(pos)
    ok = a.notna() & b.notna()
    ai, bi = a[ok].astype(int).to_numpy(), b[ok].astype(int).to_numpy()
    m = sparse.coo_matrix((np.ones(len(ai)), (ai, bi)), shape=(len(nodes), len(nodes)))
    return (m + m.T).tocsr()


def hit_network(hits: list[str], background: list[str], *, min_pint: float = 0.75, permutations: int = 200,
                seed: int = 0) -> tuple[nx.Graph, dict[str, float]]:
    """BioPlex graph among ``hits`` and a permutation test of its edge count.

    The null draws ``permutations`` random sets of the same size from the ``background`` genes
    that are in BioPlex (hits outside BioPlex count as isolated nodes, as do their random
    counterparts). Returns the graph (edge attribute ``pInt``) and ``{edges, expected, p, ...}``.
    """
    e = genesets.ppi_edges()
    e = e[e["pInt"] >= min_pint]
    in_net = set(e["a"]) | set(e["b"])
    bg = sorted(set(background) | set(hits))
    hit_set = set(hits)
    sub = e[e["a"].isin(hit_set) & e["b"].isin(hit_set)]
    g = nx.Graph()
    g.add_nodes_from(sorted(hit_set & in_net))
    g.add_edges_from((r.a, r.b, {"pInt": float(r.pInt)}) for r in sub.itertuples())
    stats_ = {"edges": g.number_of_edges(), "hits_in_network": len(hit_set & in_net), "hits": len(hit_set),
              "expected": float("nan"), "p": float("nan"), "permutations": permutations}
    if permutations and len(hit_set) >= 2:
        A = _edge_index(e, bg)
        rng = np.random.default_rng(seed)
        k = len(hit_set & set(bg))
        counts = np.empty(permutations)
        for i in range(permutations):
            x = np.zeros(len(bg))
            x[rng.choice(len(bg), size=k, replace=False)] = 1.0
            counts[i] = x @ (A @ x) / 2
        stats_["expected"] = float(counts.mean())
        stats_["p"] = float((1 + (counts >= stats_["edges"]).sum()) / (1 + permutations))
    return g, stats_


def _modules(g: nx.Graph, min_size: int, max_module: int) -> list[list[str]]:
    mods: list[list[str]] = []
    for comp in nx.connected_components(g):
        if len(comp) < min_size:
            continue
        if len(comp) <= max_module:
            mods.append(sorted(comp))
            continue
        for c in nx.algorithms.community.greedy_modularity_communities(g.subgraph(comp), weight="pInt"):
            if len(c) >= min_size:
                mods.append(sorted(c))
    deg = dict(g.degree())
    return sorted(mods, key=lambda m: (-len(m), -max(deg[n] for n in m), m[0]))


@register("ppi_network", family="network", params=PpiParams, requires=("bulk", "clinical"))
def ppi_network(study: Study, params: PpiParams, ctx: ToolContext) -> ToolResult:
    """Protein-protein interaction network (BioPlex 3.0) among the hits of a contrast: hit-hit interactions, modules, hub proteins, and a permutation test of whether the hits are more connected than random measured proteins.

    Use after a differential contrast to find complexes and modules that change together (e.g.
    ribosome, proteasome, spliceosome subunits up in tumours). Returns tables of edges, modules
    and nodes, a network figure, ``protein --interacts_with--> protein`` relations for hit-hit
    edges and ``protein --member_of--> module`` relations.
    """
    name = "ppi_network"
    p = params
    check_organism(study, p.modality)
    tab, method = contrast_table(study, **p.model_dump(include=TEST_FIELDS), ctx=ctx)
    tab = _symbols_all(tab)
    background = sorted(set(tab["symbol"].dropna()))
    directions = ["up", "down"] if p.direction == "both" else [p.direction]
    hit_dir: dict[str, str] = {}
    for d in directions:
        for gname in select_hits(tab, d, hit_fdr=p.hit_fdr, min_abs_logfc=p.min_abs_logfc):
            hit_dir[gname] = "mixed" if gname in hit_dir else d  # sites of one protein may go both ways
    gene_rows = gene_level(tab).set_index("symbol")  # a gene's canonical feature (sites: the strongest)
    hits = sorted(hit_dir, key=lambda s: (gene_rows.at[s, "p"], s))[: p.max_hits] if p.max_hits else sorted(hit_dir)
    if len(hits) < 2:
        msg = (f"only {len(hits)} hit genes for {p.group}: {p.case} vs {p.control or 'rest'} at q<{p.hit_fdr}; "
               f"a network needs at least 2 (relax hit_fdr or min_abs_logfc)")
        raise ToolFailed(msg)
    g, st = hit_network(hits, background, min_pint=p.min_pint, permutations=p.permutations, seed=ctx.seed)
    g.remove_nodes_from([n for n in list(g) if g.degree(n) == 0])
    for n in g:
        g.nodes[n]["logFC"] = float(gene_rows.at[n, "logFC"])
        g.nodes[n]["direction"] = hit_dir[n]
    mods = _modules(g, p.min_module_size, p.max_module)
    deg = dict(g.degree())
    label = f"{p.group}: {p.case} vs {p.control if p.control is not None else 'rest'}"
    module_names = []
    for i, m in enumerate(mods, 1):
        hub = max(m, key=lambda n: (deg[n], n))
        module_names.append(f"PPI module {i} ({hub} hub; {label}, {p.direction})")

    edges = pd.DataFrame([(a, b, d["pInt"], g.nodes[a]["logFC"], g.nodes[b]["logFC"]) for a, b, d in g.edges(data=True)],
                         columns=["a", "b", "pInt", "logFC_a", "logFC_b"]).sort_values(["pInt", "a", "b"], ascending=[False, True, True])
    node_module = {n: i for i, m in enumerate(mods, 1) for n in m}
    nodes = pd.DataFrame({"gene": list(g), "degree": [deg[n] for n in g], "logFC": [g.nodes[n]["logFC"] for n in g],
                          "direction": [g.nodes[n]["direction"] for n in g],
                          "module": [node_module.get(n) for n in g]}).sort_values(["degree", "gene"], ascending=[False, True])
    modules = pd.DataFrame({"module": range(1, len(mods) + 1), "name": module_names, "size": [len(m) for m in mods],
                            "edges": [g.subgraph(m).number_of_edges() for m in mods],
                            "hub": [max(m, key=lambda n: (deg[n], n)) for m in mods],
                            "mean_logFC": [float(np.mean([g.nodes[n]["logFC"] for n in m])) for m in mods],
                            "genes": mods})

    prov = ctx.provenance_for(name, p)
    rels: list[Relation] = []
    for r in edges.head(p.max_relations).itertuples():
        same = np.sign(r.logFC_a) == np.sign(r.logFC_b)
        rels.append(Relation(
            subject=Entity(type="protein", label=r.a), predicate="interacts_with", object=Entity(type="protein", label=r.b),
            stats=Stats(effect=float(r.pInt), effect_type="bioplex_pInt", direction="positive" if same else "negative",
                        extra={"source": SOURCE, "contrast": label, "logFC_a": float(r.logFC_a), "logFC_b": float(r.logFC_b),
                               "direction_note": "positive = both hits change the same way"}),
            modality=p.modality, provenance=prov))
    for mname, m, row in zip(module_names, mods, modules.itertuples()):
        mod = Entity(type="module", label=mname)
        for n in m:
            rels.append(Relation(
                subject=Entity(type="protein", label=n), predicate="member_of", object=mod,
                stats=Stats(effect=float(deg[n]), effect_type="degree_in_hit_network", n=len(m),
                            direction="up" if g.nodes[n]["logFC"] > 0 else "down",
                            extra={"source": SOURCE, "contrast": label, "module_edges": int(row.edges), "hub": row.hub,
                                   "genes": list(m), "network_p": st["p"], "network_edges": st["edges"],
                                   "network_expected": st["expected"]}),
                modality=p.modality, provenance=prov))
    figures = []
    if ctx.figures:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 7))
        ax = fig.subplots()
        show = [n for m in mods[:8] for n in m][:150]
        if show:
            sg = g.subgraph(show)
            pos = nx.spring_layout(sg, seed=ctx.seed, k=0.4)
            lfc = np.array([sg.nodes[n]["logFC"] for n in sg])
            lim = max(float(np.abs(lfc).max()), 1e-6)
            nx.draw_networkx_edges(sg, pos, ax=ax, alpha=0.3, width=0.6)
            nx.draw_networkx_nodes(sg, pos, ax=ax, node_size=[20 + 12 * deg[n] for n in sg], node_color=lfc,
                                   cmap="coolwarm", vmin=-lim, vmax=lim)
            hubs = {r.hub for r in modules.head(8).itertuples()} | set(nodes.head(15)["gene"]) & set(show)
            nx.draw_networkx_labels(sg, pos, labels={n: n for n in sg if n in hubs}, font_size=6, ax=ax)
        else:
            ax.text(0.5, 0.5, "no module among the hits", ha="center", va="center")
        ax.set_axis_off()
        ax.set_title(f"BioPlex network of {p.modality} hits, {label} ({p.direction})\n"
                     f"{st['edges']} edges among {len(hits)} hits (expected {st['expected']:.1f}, p={st['p']:.3g})", fontsize=8)
        path = ctx.figure_path(f"ppi_network_{p.modality}_{p.direction}")
        fig.savefig(path, dpi=120, bbox_inches="tight")
        figures.append(path)

    top_mods = "; ".join(f"{r.size} proteins around {r.hub}" for r in modules.head(4).itertuples())
    summary = (f"BioPlex 3.0 network (pInt>={p.min_pint}) of {len(hits)} {p.direction} hit genes of {label} "
               f"({p.modality}, q<{p.hit_fdr}; differential by {method}): {st['hits_in_network']} are in BioPlex, "
               f"{st['edges']} hit-hit interactions vs {st['expected']:.1f} expected for random measured proteins "
               f"(permutation p={st['p']:.3g}); {len(mods)} modules of >= {p.min_module_size}"
               + (f": {top_mods}." if top_mods else ".")
               + (f" Hubs: {', '.join(nodes.head(5)['gene'])}." if len(nodes) else ""))
    return ToolResult(summary=summary, tables={"edges": edges.reset_index(drop=True), "nodes": nodes.reset_index(drop=True),
                                               "modules": modules}, figures=figures, relations=rels,
                      metrics={"n_hits": len(hits), "n_hits_in_network": st["hits_in_network"], "n_edges": st["edges"],
                               "expected_edges": st["expected"], "p_connectivity": st["p"], "n_modules": len(mods),
                               "differential_method": method})
