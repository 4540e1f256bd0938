"""Mutation tools: features that differ by a gene's mutation status, and cis effects of a mutation
on the gene's own RNA / protein.

Conventions (CPTAC practice, e.g. Dou et al. 2020 Cell, doi:10.1016/j.cell.2020.01.026):

- only samples present in the mutation table are genotyped; samples of a layer with no mutation
  rows at all are left out (not counted as wild type);
- a gene is tested when at least ``min_mutated`` (default 3) genotyped samples carry a mutation of
  the chosen classes ("nonsilent" by default: missense, nonsense, frameshift, in-frame indel,
  splice site, nonstop, start lost);
- comparisons are usually made within tumours (``restrict``).

``mutation_association`` uses limma's moderated t (Smyth 2004, doi:10.2202/1544-6115.1027) on
``~ mutated (+ covariates)``; ``mutation_cis_effect`` uses the Wilcoxon rank-sum (Mann-Whitney U)
test of the gene's own features, mutated vs wild type. BH across tests. Each cis effect also reports
its mutated samples' variant classes (truncating vs only missense / in-frame, from the MAF's
``Variant_Classification``, and how many sit at recurrent codons, from ``HGVSp_Short``), the same comparison without hypermutated samples (tumour mutation
burden split by Otsu's threshold) and adjusted for hypermutator status (a linear model with both), since hypermutated
tumours carry most passenger mutations, and its carriers beyond passenger load (``n_beyond_passengers``, as
:func:`driver_recurrence` counts them).
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from proteus.io.maf import MISSENSE, TRUNCATING, VARIANT_CLASSES, carrier_matrix
from proteus.io.maf import hypermutated as maf_hypermutated
from proteus.records import MODALITY_ENTITY, Entity, Stats, ToolResult, contrast_entity, feature_entity
from proteus.stats.features import SITE_KINDS, agrees_with_canonical, canonical_features, feature_genes, gene_annotation
from proteus.stats.limma import two_group_moderated
from proteus.stats.design import covariate_block, dropped_text, usable_covariates
from proteus.stats.multitest import bh
from proteus.study import Study
from proteus.tools.correlation import (
    _rel,
    covariate_matrix,
    modality_frame,
    modality_kind,
    restricted_samples,
)
from proteus.tools._plots import draw_volcano
from proteus.tools.registry import ToolContext, ToolFailed, ToolInputError, register

__all__ = ["mutation_association", "mutation_cis_effect", "mutation_group_enrichment", "mutation_matrix", "carrier_variants", "driver_recurrence",
           "enriched_groupings", "VARIANT_CLASSES"]


def mutation_matrix(
    study: Study, samples: list[str], variant_classes: str = "nonsilent"
) -> tuple[pd.DataFrame, list[str]]:
    """Boolean samples x genes matrix of mutations of the chosen classes over the genotyped samples
    (:func:`proteus.io.maf.carrier_matrix`; genotyped = among ``samples`` and present in the mutation table
    with any variant). Returns the matrix and the list of genotyped samples (its index)."""
    muts = study.mutations
    if muts is None or muts.empty:
        msg = "the study has no mutation table"
        raise ToolInputError(msg)
    return carrier_matrix(muts, samples, variant_classes)


def hypermutated(study: Study, samples: list[str]) -> tuple[pd.Series, float | None]:
    """Hypermutator status of the genotyped ``samples`` and the burden threshold (:func:`proteus.io.maf.hypermutated`)."""
    return maf_hypermutated(study.mutations, samples)


_CODON = re.compile(r"^p\.([A-Z*])(\d+)")


def carrier_variants(study: Study, carriers: list[str], gene: str) -> dict:
    """What ``gene``'s carriers among ``carriers`` hold (MAF ``Variant_Classification`` and ``HGVSp_Short``).

    ``n_truncating``: carriers with at least one truncating variant; ``n_missense_only``: the others with
    a missense / in-frame one; ``n_recurrent_missense``: those of them whose variant sits at a recurrent
    codon (a residue hit in at least two carriers of the cohort, a hotspot as recurrence-based callers
    define it, e.g. Chang et al. 2016, doi:10.1038/nbt.3391); ``recurrent``: the recurrent codons with
    their carrier counts (``"G12 x19, G13 x7"``), truncating ones included (an indel hotspot at a repeat);
    ``missense_residues``: each missense-only carrier's variant residue (1-based, comma-separated; the first
    listed where a carrier holds several), so a claim can ask whether they sit in a known region.
    """
    m = study.mutations
    rows = m[(m["gene"].astype(str) == gene) & m["sample"].astype(str).isin(set(carriers))]
    cls = rows["variant_class"].astype(str).str.strip().str.lower().str.replace(" ", "_")
    trunc = set(rows.loc[cls.isin(TRUNCATING), "sample"].astype(str))
    mis_rows = rows[cls.isin(MISSENSE) & ~rows["sample"].astype(str).isin(trunc)]
    changes = rows["protein_change"] if "protein_change" in rows else pd.Series(pd.NA, index=rows.index)
    parts = changes.astype("string").str.extract(_CODON)
    codon = parts[0] + parts[1]  # "G12"; <NA> where the MAF gives no protein change
    known = codon.notna()
    n_per = (rows.loc[known, "sample"].astype(str).groupby(codon[known].to_numpy()).nunique()
             .sort_values(ascending=False, kind="stable"))
    hot = set(n_per.index[n_per >= 2])
    hot_mis = {str(s) for s, c in zip(mis_rows["sample"], codon[mis_rows.index]) if not pd.isna(c) and c in hot}
    residue = parts[1].reindex(mis_rows.index)
    first = residue.groupby(mis_rows["sample"].astype(str).to_numpy()).first().dropna()  # one residue per carrier
    return {"n_truncating": len(trunc), "n_missense_only": int(mis_rows["sample"].nunique()), "n_recurrent_missense": len(hot_mis),
            "recurrent": ", ".join(f"{c} x{n}" for c, n in n_per[n_per >= 2].head(4).items()),
            "missense_residues": ",".join(str(int(x)) for x in first)}


def _recurrent(mat: pd.DataFrame, min_mutated: int, max_fraction: float = 1.0) -> pd.Series:
    counts = mat.sum(0)
    counts = counts[(counts >= min_mutated) & (counts <= max_fraction * len(mat))]
    return counts.sort_values(ascending=False, kind="stable")


# --------------------------------------------------------------------------------------------
# mutation_association
# --------------------------------------------------------------------------------------------


class MutationAssociationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="bulk modality whose features are compared, e.g. 'proteomics'")
    gene: str | None = Field(None, description="test this mutated gene only (a gene symbol of the mutation table); None: the top_n recurrent genes")
    top_n: int = Field(5, ge=1, le=50, description="number of recurrently mutated genes tested when gene is None, most recurrent beyond passenger load first")
    variant_classes: Literal["nonsilent", "truncating", "missense", "all"] = Field(
        "nonsilent", description="which variants count as 'mutated'"
    )
    min_mutated: int = Field(3, ge=2, description="minimum mutated (and wild-type) genotyped samples for a gene to be tested")
    min_fraction: float = Field(0.0, ge=0, le=0.5, description="minimum share of the genotyped samples mutated for a gene to be tested (with min_mutated)")
    covariates: list[str] = Field(default_factory=list, description="clinical columns added to the linear model")
    adjust_enriched: list[str] = Field(
        default_factory=list, description="sample-table groupings checked, per gene, for enrichment of its carriers; those they are "
        "enriched in (BH q<0.05) that can be separated from carrier status are added to that gene's model, so a trans effect is not the grouping's")
    pathways: Literal["reactome", "wikipathways", "go_bp"] | None = Field(
        None, description="also test each gene's hits (each direction, at q<fdr) for over-representation of this library's sets among the measured genes")
    restrict: dict[str, str | list[str]] | None = Field(
        None, description="keep only samples whose clinical column equals the value, as {column: level}"
    )
    fdr: float = Field(0.05, gt=0, lt=1, description="BH q-value threshold (per gene, over features; over sets for pathways)")
    max_relations: int = Field(120, ge=0, le=500, description="at most this many significant features become relations (split over genes)")


def driver_recurrence(study: Study, mat: pd.DataFrame, genes: list[str]) -> pd.Series:
    """How often each gene is mutated beyond passenger load: the larger of its carriers among samples that
    are not hypermutated (:func:`hypermutated`) and its carriers at its most frequent codon (a hotspot, as
    recurrence-based driver callers define it, Chang et al. 2016, doi:10.1038/nbt.3391). Hypermutated
    tumours carry most passenger mutations, and a passenger seldom hits one codon repeatedly (except at a
    repeat tract, where a frameshift hotspot is also how mismatch-repair-deficient drivers arise)."""
    hyper, _ = hypermutated(study, list(mat.index))
    low = ~hyper.reindex(mat.index, fill_value=False).to_numpy(bool)
    out = {}
    for g in genes:
        carriers = list(mat.index[mat[g].to_numpy(bool)])
        out[g] = max(int((mat[g].to_numpy(bool) & low).sum()), _top_codon(carrier_variants(study, carriers, g)["recurrent"]))
    return pd.Series(out, dtype=int)


def enriched_groupings(clin: pd.DataFrame, mutated: pd.Series, columns: list[str], seed: int = 0) -> tuple[list[str], list]:
    """Sample-table groupings ``columns`` a gene's carriers (``mutated``, over ``clin``'s samples) are enriched
    in, to adjust its trans test for (:func:`proteus.confounding.contrast_checks`: Fisher / chi-square,
    BH over the columns). Returns the columns to adjust for and every check. Taken: the most associated
    separable column (decision ``associated``), then the next unless one's levels nest in the other's
    (the same split at another resolution) or the two together leave carrier status collinear
    (R^2 at least :data:`~proteus.confounding.COLLINEAR_R2`)."""
    from proteus.confounding import COLLINEAR_R2, _nested, _r2, contrast_checks

    if not columns:
        return [], []
    name = "__carrier__"
    tab = clin.assign(**{name: np.where(mutated.reindex(clin.index).fillna(False).to_numpy(bool), "mutated", "wild-type")})
    checks = contrast_checks(tab, name, ["mutated"], ["wild-type"], [(c, "biological", False) for c in columns if c in clin], seed=seed)
    chosen: list[str] = []
    y = (tab[name] == "mutated").to_numpy(float)
    for c in (c for c in checks if c.decision == "associated"):
        if len(chosen) == 2:
            break
        if chosen:
            both = tab[chosen + [c.column]].notna().all(axis=1)
            if _nested(tab.loc[both, chosen[0]], tab.loc[both, c.column]):
                continue
            block = covariate_block(tab.loc[both], chosen + [c.column])
            if _r2(y[both.to_numpy()], block) >= COLLINEAR_R2:
                continue
        chosen.append(c.column)
    return chosen, checks


def _collinear_with(is_mut: pd.Series, clin: pd.DataFrame, columns: list[str]) -> dict[str, float]:
    """The adjusted ``columns`` carrier status ``is_mut`` is collinear with on the model's samples (``clin``), each with its
    Cramér's V (:func:`proteus.confounding.collinear_v`, the one reading of "cannot be separated"): adjusting for such a
    column cannot tell the carriers' effect from its own, so a claim says so rather than "with it adjusted for"."""
    from proteus.confounding import collinear_v
    from proteus.design import recorded

    out = {}
    for c in columns:
        col = recorded(clin[c])
        ok = col.notna()
        if (v := collinear_v(is_mut[ok], col[ok])) is not None:
            out[c] = round(v, 2)
    return out


@register("mutation_association", family="mutation", params=MutationAssociationParams, requires=("bulk", "mutations"))
def mutation_association(study: Study, params: MutationAssociationParams, ctx: ToolContext) -> ToolResult:
    """Find features of a modality that differ between samples with and without a mutation in a gene (its trans effects: one chosen gene, or each of the top-N recurrently mutated genes), by limma moderated t, mutated vs wild type, adjusted per gene for the groupings its carriers are enriched in; optionally the pathways shifted with it (preranked GSEA).

    Only genotyped samples (present in the mutation table) are used, usually within tumours
    (restrict). With ``gene`` None the genes mutated in ``min_mutated`` samples and ``min_fraction`` of
    them are taken most recurrent beyond passenger load first (:func:`driver_recurrence`). Each gene's
    model adds the ``adjust_enriched`` columns its carriers are enriched in (:func:`enriched_groupings`),
    so a hypermutator or subtype difference is not read as the mutation's. Relations:
    ``feature --higher_in/lower_in--> sample_group "<GENE> mutation: mutated vs wild-type"`` with the
    ``mutation:<GENE>`` entity and the gene's model covariates (``covariates``) in the statistics (a named paralog
    significant only within its pre-specified family, :func:`_paralog_family`, also ``family`` and the family's
    features, ``family_features``: its q and its validation null are the family's), and with ``pathways``, ``pathway --enriched_in--> sample_group`` (effect: odds ratio) for sets over-represented among
    its hits (:func:`_trans_pathways`).
    """
    name = "mutation_association"
    p = params
    samples = restricted_samples(study, list(study.modalities[p.modality].obs_names.astype(str)), p.restrict)
    mat, geno = mutation_matrix(study, samples, p.variant_classes)
    if len(geno) < 2 * p.min_mutated:
        msg = f"only {len(geno)} samples of {p.modality!r} are genotyped (in the mutation table); need {2 * p.min_mutated}"
        raise ToolFailed(msg)
    clin = study.clinical.reindex(geno)
    need = max(p.min_mutated, int(np.ceil(p.min_fraction * len(geno))))
    rec = _recurrent(mat, need)
    rec = rec[(len(geno) - rec) >= p.min_mutated]
    if p.gene is not None:
        if p.gene not in rec.index:
            n = int(mat[p.gene].sum()) if p.gene in mat.columns else 0
            msg = (f"{p.gene} is mutated ({p.variant_classes}) in {n} of {len(geno)} genotyped samples; need {need} "
                   f"mutated and {p.min_mutated} wild type. Most recurrent: {', '.join(f'{g} ({c})' for g, c in rec.head(10).items())}")
            raise ToolFailed(msg)
        genes = [p.gene]
    else:
        ranked = driver_recurrence(study, mat, list(rec.index)) if len(rec) > p.top_n else pd.Series(0, index=rec.index)
        genes = sorted(rec.index, key=lambda g: (-int(ranked[g]), -int(rec[g]), g))[: p.top_n]
    if not genes:
        msg = f"no gene is mutated in at least {need} of {len(geno)} genotyped samples"
        raise ToolFailed(msg)
    X_all = modality_frame(study, p.modality, geno).T  # features x samples
    kind = modality_kind(study, p.modality)
    ann_all = gene_annotation(study.modalities[p.modality], X_all.index).set_index(X_all.index)
    hyper, burden_cut = hypermutated(study, geno)
    tables, path_tables, rels, lines, models = [], [], [], [], {}
    dropped: dict[str, str] = {}
    cap = max(1, p.max_relations // len(genes)) if p.max_relations else 0
    for g in genes:
        enriched, checks = enriched_groupings(clin, mat[g], p.adjust_enriched, seed=ctx.seed)
        covs, drop_g = usable_covariates(clin, enriched + [c for c in p.covariates if c not in enriched], 2)
        dropped |= drop_g
        Zdf = covariate_matrix(clin, covs)
        rows = [s for s, ok in zip(geno, Zdf.notna().all(axis=1)) if ok]
        X = X_all[rows]
        is_mut = mat.loc[rows, g]
        n_mut, n_rows = int(is_mut.sum()), len(rows)
        n_hyper = int((is_mut & hyper.reindex(rows, fill_value=False)).sum())
        enriched_said = [f"{c.column} ({c.effect_name} {c.effect:.2f}, q={c.q:.1g})" for c in checks if c.column in enriched]
        inseparable = [c.column for c in checks if c.decision == "cannot be separated"]
        tied = _collinear_with(is_mut, clin.loc[rows], [c for c in enriched if c in covs])
        models[g] = {"covariates": covs, "adjusted_for_enrichment": [c for c in enriched if c in covs], "not_separable_from": inseparable,
                     "collinear_with_carriers": tied,
                     "n_mutated": n_mut, "n_genotyped": n_rows, "n_mutated_hypermutated": n_hyper}
        tab = two_group_moderated(X, is_mut, Zdf.loc[rows] if covs else None)
        tab = tab.rename(columns={"P.Value": "p", "adj.P.Val": "q"})
        tab.insert(0, "feature", tab.index.astype(str))
        ann = ann_all.loc[tab.index]
        for i, c in enumerate(ann.columns):
            tab.insert(1 + i, c, ann[c].to_numpy())
        tab.insert(0, "mutated_gene", g)
        tab = tab.sort_values("p").reset_index(drop=True)
        tab["covariates"] = ", ".join(covs)
        tables.append(tab)
        sig = tab[(tab["q"] < p.fdr) & agrees_with_canonical(tab, "logFC", p.fdr)]
        obj = contrast_entity(f"{g} mutation", "mutated", "wild-type")
        model_extra = {"mutation": f"mutation:{g}", "variant_classes": p.variant_classes, "covariates": covs,
                       "adjusted_for_enrichment": models[g]["adjusted_for_enrichment"], "enriched_in": enriched_said,
                       "collinear_with_carriers": tied,
                       "not_separable_from": inseparable, "n_mutated_hypermutated": n_hyper,
                       "hypermutator_burden": burden_cut}
        paralog = _paralog_family(tab, g, p.fdr, set(sig["feature"].head(cap)))
        for r in (*sig.head(cap).itertuples(), *paralog.itertuples()):
            up = r.logFC > 0
            family = {} if r.q < p.fdr else {"family": f"named paralogs of {g} ({len(paralog.attrs['tested'])} features tested)",
                                            "family_features": list(paralog.attrs["tested"]), "q_genome_wide": float(r.q)}
            rels.append(_rel(ctx, name, p, feature_entity(kind, r.label), "higher_in" if up else "lower_in", obj,
                             Stats(effect=float(r.logFC), effect_type="log2FC", p=float(r.p), q=float(r.q if r.q < p.fdr else r.q_family),
                                   n=n_rows, direction="up" if up else "down",
                                   observed={"mutated": (int(r.n_case), n_mut), "wild-type": (int(r.n_control), n_rows - n_mut)},
                                   extra=model_extra | family | {"feature_id": str(r.feature), "t": float(r.t), "n_mutated": int(r.n_case),
                                                                 "n_wildtype": int(r.n_control), "test": "limma moderated t"}),
                             p.modality))
        top = ", ".join(f"{r.feature} ({r.logFC:+.2f})" for r in sig.head(4).itertuples())
        paths = ""
        if p.pathways:
            gs, prels = _trans_pathways(tab, g, p, obj, kind, model_extra, ctx)
            path_tables.append(gs)
            rels += prels
            paths = f"; {len(prels)} {p.pathways} sets over-represented among them" + (f" [{', '.join(r.subject.label for r in prels[:2])}]" if prels else "")
        lines.append(f"{g} ({n_mut} of {n_rows} mutated" + (f", adjusted for {', '.join(enriched_said)}" if enriched_said else "")
                     + f"): {len(sig)} features at q<{p.fdr}" + (f" [{top}]" if top else "") + paths)
    table = pd.concat(tables, ignore_index=True)
    figures = []
    if ctx.figures:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(3.2 * min(len(genes), 3), 3.0 * ((len(genes) + 2) // 3)))
        axes = np.atleast_1d(fig.subplots((len(genes) + 2) // 3, min(len(genes), 3))).ravel()
        for ax, tab, g in zip(axes, tables, genes):
            draw_volcano(ax, tab["logFC"], tab["p"], tab["q"], p.fdr, xlabel="log2FC")
            ax.set_title(f"{g} mutated vs WT", fontsize=8)
        for ax in axes[len(genes):]:
            ax.set_visible(False)
        path = ctx.figure_path(f"mutation_association_{p.modality}")
        fig.savefig(path, dpi=110)
        figures.append(path)
    n_sig = int((table["q"] < p.fdr).sum())
    base = [c for c in p.covariates if any(c in m["covariates"] for m in models.values())]
    summary = (f"limma moderated t, mutated ({p.variant_classes}) vs wild type, on {p.modality} over {len(geno)} genotyped samples"
               f"{', adjusted for ' + ', '.join(base) if base else ''}: " + "; ".join(lines) + "." + dropped_text(dropped))
    out_tables = {"mutation_association": table} | ({"pathways": pd.concat(path_tables, ignore_index=True)} if any(len(t) for t in path_tables) else {})
    return ToolResult(summary=summary, tables=out_tables, figures=figures, relations=rels,
                      metrics={"n_tested": len(table), "n_significant": n_sig, "n_genes": len(genes),
                               "n_skipped": int(X_all.shape[0] * len(genes) - len(table)), "n_genotyped": len(geno),
                               "genes": genes, "covariates": base, "covariates_dropped": dropped, "models": models})


def _paralog_family(tab: pd.DataFrame, gene: str, fdr: float, stated: set[str]) -> pd.DataFrame:
    """Rows of one gene's trans table for its named paralogs (:func:`proteus.stats.units.named_paralogs`): a
    family fixed before the test (a paralog may compensate for the mutated gene's loss), BH within it
    (``q_family``), those at ``q_family < fdr`` not already stated genome-wide; ``attrs['tested']`` the family's features."""
    from proteus.stats.units import named_paralogs

    fam = tab[tab["gene"].isin(named_paralogs(gene)) & tab["canonical"].astype(bool)].copy()
    fam["q_family"] = bh(fam["p"].to_numpy()) if len(fam) else []
    out = fam[(fam["q_family"] < fdr) & ~fam["feature"].isin(stated)]
    out.attrs["tested"] = list(fam["feature"])
    return out


def _trans_pathways(tab: pd.DataFrame, gene: str, p: MutationAssociationParams, obj: Entity, kind: str, model_extra: dict,
                    ctx: ToolContext) -> tuple[pd.DataFrame, list]:
    """Over-representation of ``p.pathways`` sets among one gene's trans hits, each direction on its own (hits at
    q < ``p.fdr``, each gene once, sites collapsed to their protein; background: the measured genes annotated in
    the library; :func:`proteus.tools.enrichment.enrich_hits`), and the ``pathway --enriched_in--> mutation contrast``
    relations of sets at BH q < ``p.fdr`` (at most five a direction). Directions with fewer than three hit genes are not tested."""
    from proteus.tools.enrichment import enrich_hits, gene_level, select_hits

    genes = gene_level(tab)
    background = list(genes["symbol"])
    out, rels = [], []
    for d in ("up", "down"):
        hits = select_hits(genes, d, hit_fdr=p.fdr)
        if len(hits) < 3:
            continue
        res = enrich_hits(hits, background, p.pathways)
        res.insert(0, "direction", d)
        res.insert(0, "mutated_gene", gene)
        out.append(res)
        for r in res[res["q"] < p.fdr].head(5).itertuples():
            rels.append(_rel(ctx, "mutation_association", p, Entity(type="pathway", label=str(r.name)), "enriched_in", obj,
                             Stats(effect=float(r.odds_ratio), effect_type="odds_ratio", p=float(r.p), q=float(r.q), n=int(r.overlap),
                                   direction=d,
                                   extra=model_extra | {"genes": list(r.genes), "set_id": r.set_id, "library": p.pathways,
                                                        "set_size": int(r.set_size), "n_hits": int(r.n_hits), "n_background": int(r.n_background),
                                                        "test": "hypergeometric", "entity_type_of_hits": MODALITY_ENTITY.get(kind, "feature")}),
                             p.modality))
    return (pd.concat(out, ignore_index=True) if out else pd.DataFrame()), rels


# --------------------------------------------------------------------------------------------
# mutation_cis_effect
# --------------------------------------------------------------------------------------------


def _hypermutator_note(r) -> str:
    """How a cis effect stands against hypermutator status (empty when no sample was called hypermutated): without
    the hypermutated samples, and adjusted for hypermutator status (:func:`_adjusted_for_hypermutator`). It is
    separated from that status when either comparison keeps its direction at p < 0.05."""
    if r.hypermutator_burden is None or not np.isfinite(r.hypermutator_burden):
        return ""
    head = (f"{int(r.n_mutated_hypermutated)} of {int(r.n_mutated)} mutated samples are hypermutated "
            f"(> {r.hypermutator_burden:.0f} non-silent mutations)")
    same = np.sign(r.mean_diff)
    without = np.isfinite(r.mean_diff_not_hypermutated)
    adjusted = np.isfinite(r.diff_adjusted_hypermutator)
    parts = [f"without them the difference is {r.mean_diff_not_hypermutated:+.2f} (p={r.p_not_hypermutated:.1e})" if without
             else "too few of them are not hypermutated to test without"]
    if adjusted:
        parts.append(f"adjusted for hypermutator status (carriers against non-carriers of the same status) it is "
                     f"{r.diff_adjusted_hypermutator:+.2f} (p={r.p_adjusted_hypermutator:.1e})")
    held = ((without and np.sign(r.mean_diff_not_hypermutated) == same and r.p_not_hypermutated < 0.05)
            or (adjusted and np.sign(r.diff_adjusted_hypermutator) == same and r.p_adjusted_hypermutator < 0.05))
    return head + "; " + "; ".join(parts) + ("" if held else ", so the effect cannot be separated from hypermutator status")


def _adjusted_for_hypermutator(v: np.ndarray, mut: np.ndarray, hyper: np.ndarray) -> tuple[float, float]:
    """Carriers' difference adjusted for hypermutator status: the least-squares coefficient of carrier status in
    ``value ~ 1 + carrier + hypermutated`` (:func:`proteus.stats.adjusted.adjusted_t`) and its two-sided p. Where every
    carrier is hypermutated it is carriers minus hypermutated non-carriers, a comparison within the status rather
    than across it. NaN where not estimable (one status only, or carrier status aliased with it)."""
    from proteus.stats.adjusted import adjusted_t

    if hyper.all() or not hyper.any():
        return np.nan, np.nan
    res = adjusted_t(v[:, None], mut.astype(float), hyper.astype(float)[:, None])
    t, df = float(res.t[0, 0]), float(res.df[0, 0])
    if not np.isfinite(t):
        return np.nan, np.nan
    return float(res.coef[0, 0]), float(2 * stats.t.sf(abs(t), df))


def _top_codon(recurrent: str) -> int:
    """Carriers at a gene's most frequent codon, from :func:`carrier_variants`' ``recurrent`` (``"G12 x22, G13 x7"``)."""
    return max((int(x.split(" x")[1]) for x in recurrent.split(", ") if " x" in x), default=0)


class MutationCisParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modalities: list[str] | None = Field(
        None, description="layers in which each gene's own features are compared (default: every bulk layer of kind "
        "proteomics, transcriptomics and the modification-site layers: phospho, acetyl)"
    )
    genes: list[str] | None = Field(None, description="genes to test; None: every gene mutated in at least min_mutated samples (top_n most recurrent)")
    top_n: int = Field(50, ge=1, le=1000, description="at most this many most recurrent genes when genes is None")
    variant_classes: Literal["nonsilent", "truncating", "missense", "all"] = Field(
        "nonsilent", description="which variants count as 'mutated'"
    )
    min_mutated: int = Field(3, ge=2, description="minimum mutated (and wild-type) samples with a value")
    restrict: dict[str, str | list[str]] | None = Field(
        None, description="keep only samples whose clinical column equals the value, as {column: level}"
    )
    fdr: float = Field(0.05, gt=0, lt=1, description="BH q-value threshold (over all gene x feature tests)")
    max_relations: int = Field(150, ge=0, le=500, description="at most this many significant cis effects become relations")


@register("mutation_cis_effect", family="mutation", params=MutationCisParams, requires=("bulk", "mutations"))
def mutation_cis_effect(study: Study, params: MutationCisParams, ctx: ToolContext) -> ToolResult:
    """Test whether a gene's mutation changes its own abundance (cis effect): for recurrently mutated genes, compare the gene's own protein / RNA / phosphosites between mutated and wild-type samples (Wilcoxon rank-sum, BH).

    Truncating mutations of tumour suppressors typically lower their own protein (nonsense-mediated
    decay, unstable products). Relations: ``mutation:<GENE> --cis_effect_on--> protein:<GENE>``
    (or gene / phosphosite), modality-tagged, with the log2 mean difference as effect.
    """
    name = "mutation_cis_effect"
    p = params
    mods = p.modalities
    if mods is None:
        mods = [m for m in study.bulk() if modality_kind(study, m) in ("proteomics", "transcriptomics", *SITE_KINDS)]
    if not mods:
        msg = f"no proteomics/transcriptomics layer to test; loaded modalities: {list(study.modalities)}"
        raise ToolInputError(msg)
    rows = []
    n_geno = {}
    for mod in mods:
        samples = restricted_samples(study, list(study.modalities[mod].obs_names.astype(str)), p.restrict)
        mat, geno = mutation_matrix(study, samples, p.variant_classes)
        n_geno[mod] = len(geno)
        if len(geno) < 2 * p.min_mutated:
            continue
        X = modality_frame(study, mod, geno)
        gmap = feature_genes(study.modalities[mod])[canonical_features(study.modalities[mod])]
        hyper, burden_cut = hypermutated(study, geno)
        rec = _recurrent(mat, p.min_mutated)
        genes = [g for g in p.genes if g in mat.columns] if p.genes is not None else list(rec.index)
        own = gmap[gmap.isin(genes)]
        if p.genes is None:
            measured = set(own)
            genes = [g for g in genes if g in measured][: p.top_n]
            own = own[own.isin(genes)]
        for feat, g in own.items():
            v = X[feat]
            mut = mat[g].reindex(v.index).to_numpy(bool)
            ok = v.notna().to_numpy()
            a, b = v.to_numpy()[ok & mut], v.to_numpy()[ok & ~mut]
            if len(a) < p.min_mutated or len(b) < p.min_mutated or np.ptp(np.concatenate([a, b])) == 0:
                continue
            u, pv = stats.mannwhitneyu(a, b, alternative="two-sided")
            variants = carrier_variants(study, [s for s, x in zip(v.index[ok], mut[ok]) if x], g)
            # the same comparison without hypermutated samples (they carry most passenger mutations)
            low = ok & ~hyper.reindex(v.index, fill_value=False).to_numpy(bool)
            a0, b0 = v.to_numpy()[low & mut], v.to_numpy()[low & ~mut]
            d0 = p0 = np.nan
            if len(a0) >= p.min_mutated and len(b0) >= p.min_mutated and np.ptp(np.concatenate([a0, b0])) > 0:
                d0, p0 = float(a0.mean() - b0.mean()), float(stats.mannwhitneyu(a0, b0, alternative="two-sided")[1])
            da, pa = _adjusted_for_hypermutator(v.to_numpy()[ok], mut[ok], ~low[ok])
            n_hyper = int((mut & ok & ~low).sum())
            rows.append(dict(modality=mod, gene=g, feature=feat, n_mutated=len(a), n_wildtype=len(b),
                             mean_diff=float(a.mean() - b.mean()), median_diff=float(np.median(a) - np.median(b)),
                             auc=float(u / (len(a) * len(b))), p=float(pv), **variants,
                             n_mutated_hypermutated=n_hyper, hypermutator_burden=burden_cut,
                             mean_diff_not_hypermutated=d0, p_not_hypermutated=p0,
                             diff_adjusted_hypermutator=da, p_adjusted_hypermutator=pa,
                             n_beyond_passengers=max(len(a) - n_hyper, _top_codon(variants["recurrent"]))))
    table = pd.DataFrame(rows, columns=["modality", "gene", "feature", "n_mutated", "n_wildtype", "mean_diff",
                                        "median_diff", "auc", "p", "n_truncating", "n_missense_only", "n_recurrent_missense", "recurrent", "missense_residues",
                                        "n_mutated_hypermutated", "hypermutator_burden", "mean_diff_not_hypermutated",
                                        "p_not_hypermutated", "diff_adjusted_hypermutator", "p_adjusted_hypermutator",
                                        "n_beyond_passengers"])
    if table.empty:
        msg = (f"no gene had {p.min_mutated} mutated and {p.min_mutated} wild-type samples with its own feature measured "
               f"(genotyped samples per layer: {n_geno})")
        raise ToolFailed(msg)
    table["q"] = bh(table["p"].to_numpy())
    table = table.sort_values("p").reset_index(drop=True)
    sig = table[table["q"] < p.fdr]
    rels = []
    for r in sig.head(p.max_relations).itertuples():
        kind = modality_kind(study, r.modality)
        down = r.mean_diff < 0
        rels.append(_rel(ctx, name, p, Entity(type="mutation", label=r.gene), "cis_effect_on", feature_entity(kind, r.feature),
                         Stats(effect=float(r.mean_diff), effect_type="mean_difference_mutated_minus_wildtype", p=float(r.p),
                               q=float(r.q), n=int(r.n_mutated + r.n_wildtype), direction="down" if down else "up",
                               extra={"test": "wilcoxon rank-sum", "n_mutated": int(r.n_mutated), "n_wildtype": int(r.n_wildtype),
                                      "auc": float(r.auc), "variant_classes": p.variant_classes,
                                      "n_truncating": int(r.n_truncating), "n_missense_only": int(r.n_missense_only),
                                      "n_recurrent_missense": int(r.n_recurrent_missense), "recurrent": str(r.recurrent or ""),
                                      "missense_residues": str(r.missense_residues or ""),
                                      "n_mutated_hypermutated": int(r.n_mutated_hypermutated),
                                      "n_beyond_passengers": int(r.n_beyond_passengers),
                                      "hypermutator_note": _hypermutator_note(r)}),
                         r.modality))
    figures = []
    if ctx.figures:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 4))
        ax = fig.subplots()
        for mod in table["modality"].unique():
            t = table[table["modality"] == mod]
            ax.plot(t["mean_diff"], -np.log10(t["p"].clip(lower=1e-300)), ".", ms=4, label=mod)
        for r in sig.head(10).itertuples():
            ax.annotate(f"{r.feature}", (r.mean_diff, -np.log10(max(r.p, 1e-300))), fontsize=6)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel("mean difference, mutated - wild type")
        ax.set_ylabel("-log10 p")
        ax.legend(fontsize=7)
        ax.set_title("mutation cis effects", fontsize=9)
        path = ctx.figure_path("mutation_cis_effect")
        fig.savefig(path, dpi=120)
        figures.append(path)
    n_down = int((sig["mean_diff"] < 0).sum())
    top = ", ".join(f"{r.gene} {r.modality} ({r.mean_diff:+.2f}, q={r.q:.2g})" for r in sig.head(6).itertuples())
    summary = (f"Mutation ({p.variant_classes}) cis effects: {len(table)} gene x layer tests over "
               f"{table['gene'].nunique()} recurrently mutated genes; {len(sig)} significant at BH q<{p.fdr} "
               f"({n_down} lower, {len(sig) - n_down} higher when mutated)" + (f": {top}." if top else "."))
    return ToolResult(summary=summary, tables={"cis_effects": table}, figures=figures, relations=rels,
                      metrics={"n_tested": len(table), "n_significant": len(sig), "n_lower": n_down,
                               "n_genes": int(table["gene"].nunique()), "n_skipped": 0, "n_genotyped": n_geno})


# --------------------------------------------------------------------------------------------
# mutation_group_enrichment
# --------------------------------------------------------------------------------------------


class MutationGroupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str = Field(description="clinical column whose two levels are compared, e.g. a molecular subtype")
    case: str = Field(description="level of group tested for more frequent mutations")
    control: str = Field(description="reference level of group")
    own_modality: str | None = Field(None, description="layer in which each enriched gene's own feature is compared between the levels, "
                                     "with and without its carriers (default: the first proteomics layer)")
    variant_classes: Literal["nonsilent", "truncating", "missense", "all"] = Field("nonsilent", description="which variants count as 'mutated'")
    min_mutated: int = Field(3, ge=2, description="minimum mutated genotyped samples (both levels together) for a gene to be tested")
    top_n: int = Field(200, ge=1, le=2000, description="at most this many most recurrently mutated genes are tested")
    restrict: dict[str, str | list[str]] | None = Field(None, description="keep only samples whose clinical column equals the value, as {column: level}")
    fdr: float = Field(0.05, gt=0, lt=1, description="BH q-value threshold over the genes tested")
    max_relations: int = Field(30, ge=0, le=200, description="at most this many enriched genes become relations")


def _own_difference(v: pd.Series, case: pd.Series, mutated: pd.Series) -> dict:
    """A gene's own feature (Welch's t each): case minus control level over all samples (``all``) and over
    the non-carriers only (``wildtype``), so a difference the carriers carry shrinks without them; and
    carriers minus non-carriers over both levels (``carriers``, the cis effect on these samples)."""
    ok = v.notna()
    out = {}
    for key, keep, split in (("all", ok, case), ("wildtype", ok & ~mutated, case), ("carriers", ok, mutated)):
        a, b = v[keep & split].to_numpy(), v[keep & ~split].to_numpy()
        if len(a) >= 3 and len(b) >= 3:
            out[f"own_diff_{key}"] = float(a.mean() - b.mean())
            out[f"own_p_{key}"] = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return out


@register("mutation_group_enrichment", family="mutation", params=MutationGroupParams, requires=("bulk", "mutations"))
def mutation_group_enrichment(study: Study, params: MutationGroupParams, ctx: ToolContext) -> ToolResult:
    """Find genes mutated more (or less) often in one level of a grouping than in another (Fisher's exact test, BH), with each enriched gene's own protein compared between the levels with and without its carriers.

    A mutation enriched in a subtype whose carriers have lower (or higher) protein of that gene explains
    the gene's change in the subtype: the difference shrinks once the carriers are left out.
    Relations: ``mutation:<GENE> --higher_in/lower_in--> sample_group "<group>: <case> vs <control>"``
    (effect: log2 odds ratio; extra: the carriers' variants, :func:`carrier_variants`, and the own-feature
    differences ``own_diff_all`` / ``own_diff_wildtype`` / ``own_diff_carriers`` with Welch p, and ``own_q_all``: BH of
    ``own_p_all`` over the enriched genes, which mutation frequency alone selected; ``own_family``: those genes' own
    features, the family of that q).
    """
    name = "mutation_group_enrichment"
    p = params
    if p.group not in study.clinical.columns:
        msg = f"{p.group!r} is not a clinical column; columns include: {list(map(str, study.clinical.columns))[:40]}"
        raise ToolInputError(msg)
    lab = pd.Series(study.clinical[p.group].astype(str).to_numpy(), index=study.clinical.index.astype(str))
    levels = sorted(set(lab[study.clinical[p.group].notna().to_numpy()]))
    if p.case not in levels or p.control not in levels:
        msg = f"case {p.case!r} and control {p.control!r} must be levels of {p.group!r}; levels: {levels[:40]}"
        raise ToolInputError(msg)
    samples = restricted_samples(study, list(lab.index[lab.isin([p.case, p.control])]), p.restrict)
    mat, geno = mutation_matrix(study, samples, p.variant_classes)
    case = lab.reindex(geno) == p.case
    if case.sum() < p.min_mutated or (~case).sum() < p.min_mutated:
        msg = f"{int(case.sum())} {p.case} and {int((~case).sum())} {p.control} samples of {p.group} are genotyped; need {p.min_mutated} each"
        raise ToolFailed(msg)
    genes = list(_recurrent(mat, p.min_mutated).index[: p.top_n])
    own_mod = p.own_modality or next((m for m in study.bulk() if modality_kind(study, m) == "proteomics"), None)
    X = modality_frame(study, own_mod, geno) if own_mod else None
    own = (feature_genes(study.modalities[own_mod])[canonical_features(study.modalities[own_mod])] if own_mod else pd.Series(dtype=object))
    feat_of = {g: f for f, g in own.items() if g is not None}
    rows = []
    n_case, n_ctrl = int(case.sum()), int((~case).sum())
    for g in genes:
        mut = mat[g]
        a, c = int((mut & case).sum()), int((mut & ~case).sum())
        odds, pv = stats.fisher_exact([[a, n_case - a], [c, n_ctrl - c]])
        lor = float(np.log2((a + 0.5) * (n_ctrl - c + 0.5) / ((n_case - a + 0.5) * (c + 0.5))))  # Haldane-Anscombe
        row = dict(gene=g, mutated_case=a, n_case=n_case, mutated_control=c, n_control=n_ctrl, log2_odds_ratio=lor, p=float(pv))
        if X is not None and g in feat_of:
            v = X[feat_of[g]].reindex(geno)
            row |= {"own_feature": feat_of[g]} | _own_difference(v, case, mut)
        rows.append(row | carrier_variants(study, list(mut.index[mut & case]), g))
    table = pd.DataFrame(rows)
    if table.empty:
        msg = f"no gene is mutated in {p.min_mutated} of the {len(geno)} genotyped samples of {p.case} and {p.control}"
        raise ToolFailed(msg)
    table["q"] = bh(table["p"].to_numpy())
    table = table.sort_values("p", kind="stable").reset_index(drop=True)
    sig = table[table["q"] < p.fdr]
    family: list[str] = []
    if "own_p_all" in table:  # the own-feature tests of the enriched genes (chosen by mutation frequency alone), BH over them
        mine = sig["own_p_all"].notna()
        table.loc[sig.index[mine], "own_q_all"] = bh(sig.loc[mine, "own_p_all"].to_numpy()) if mine.any() else []
        family = [str(f) for f in sig.loc[mine, "own_feature"]]
        sig = table[table["q"] < p.fdr]
    obj = contrast_entity(p.group, p.case, p.control)
    rels = []
    for r in sig.head(p.max_relations).to_dict("records"):
        up = r["log2_odds_ratio"] > 0
        extra = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()
                 if k.startswith(("own_", "n_truncating", "n_missense", "n_recurrent", "recurrent", "missense_residues"))}
        rels.append(_rel(ctx, name, p, Entity(type="mutation", label=r["gene"]), "higher_in" if up else "lower_in", obj,
                         Stats(effect=r["log2_odds_ratio"], effect_type="log2_odds_ratio", p=r["p"], q=r["q"], n=len(geno),
                               direction="up" if up else "down",
                               observed={p.case: (r["mutated_case"], n_case), p.control: (r["mutated_control"], n_ctrl)},
                               extra={"test": "Fisher exact", "own_modality": own_mod, "variant_classes": p.variant_classes} | extra
                               | ({"own_family": family} if extra.get("own_q_all") is not None else {})),
                         None))
    top = ", ".join(f"{r.gene} ({r.mutated_case}/{r.n_case} vs {r.mutated_control}/{r.n_control})" for r in sig.head(6).itertuples())
    summary = (f"Mutation ({p.variant_classes}) frequency, {p.case} vs {p.control} ({p.group}), Fisher's exact test over {len(table)} recurrently "
               f"mutated genes in {len(geno)} genotyped samples: {len(sig)} differ at BH q<{p.fdr}" + (f": {top}." if top else "."))
    return ToolResult(summary=summary, tables={"mutation_groups": table}, figures=[], relations=rels,
                      metrics={"n_tested": len(table), "n_significant": len(sig), "n_genotyped": len(geno), "own_modality": own_mod})
