"""Offline analysis plans for bulk omics studies: what an experienced analyst runs, given the profile.

Each playbook turns the :class:`~proteus.profile.DataProfile` into objectives (with the workflow
steps that answer them) the way a proteomics analyst would plan a study: technical factors
checked first (QC, never studied as biology), then the biological factors in the order of their
power, each tested as its design says (a factor with more than two levels: moderated F-test, a
linear trend when its levels are ordered, each level vs the reference or all pairs; every step
adjusted for the technical columns that cross the comparison), then mutation status,
cross-omics concordance and copy-number cis effects, clinical correlates, survival, unsupervised
subtypes (cf. Dou et al., Cell 2020 for a CPTAC cohort's analysis plan). Cell-level studies use
:mod:`proteus.policy.cytometry`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from proteus import genesets
from proteus.policy.claims import is_composition_score
from proteus.policy.decisions import ObjectiveSpec, StepSpec
from proteus.design import column_words
from proteus.profile import Contrast, DataProfile, FactorDesign
from proteus.stats.features import SITE_KINDS

__all__ = ["Play", "bulk_plays", "primary_modality"]

_PREFERRED = ("proteomics", "transcriptomics", "phosphoproteomics", "acetylproteomics", "mirna", "cna")
_OTHER_SCORES = [re.compile(p, re.I) for p in (r"score|index|stemness", r"bmi|age|size|grade")]
_MAX_DESIGN_CONTRASTS = 5
"""Two-group tests per multi-level factor objective (most powerful first: the pooled contrast and four
levels against the reference); its F-test covers the rest."""


@dataclass
class Play:
    """An objective and the steps that answer it."""

    objective: ObjectiveSpec
    steps: list[StepSpec] = field(default_factory=list)


def primary_modality(profile: DataProfile) -> str | None:
    """The layer an analyst looks at first: proteomics, else RNA, else the largest sample-level layer."""
    bulk = [m for m in profile.modalities if m.level == "sample"]
    for kind in _PREFERRED:
        for m in bulk:
            if m.kind == kind and m.n_samples >= 4:
                return m.name
    return max(bulk, key=lambda m: m.n_features).name if bulk else None


def _layer(profile: DataProfile, kind: str) -> str | None:
    m = next((m for m in profile.modalities if m.kind == kind and m.level == "sample"), None)
    return m.name if m else None


def _site_layers(profile: DataProfile) -> list[tuple[str, str]]:
    """Every sample-level modification-site layer (phospho, acetyl, ...: :data:`~proteus.stats.features.SITE_KINDS`)
    as (name, kind): each gets the same site-against-protein analysis."""
    layers = [m for m in profile.modalities if m.kind in SITE_KINDS and m.level == "sample"]
    return [(m.name, m.kind) for m in sorted(layers, key=lambda m: SITE_KINDS.index(m.kind))]


def _site_words(kind: str) -> str:
    """``phosphosite`` for ``phosphoproteomics``: how a step names the features of a site layer."""
    return kind.removesuffix("proteomics") + "site"


def _step(tool: str, rationale: str, **params) -> StepSpec:
    return StepSpec(tool=tool, params=params, rationale=rationale)


def _restrict(profile: DataProfile) -> dict | None:
    """Restrict within-tumour analyses to tumours when the study also holds normal samples."""
    if profile.sample_type_column and profile.tumour_level:
        return {profile.sample_type_column: profile.tumour_level}
    return None


def _tumour_params(profile: DataProfile) -> dict:
    r = _restrict(profile)
    return {"restrict": r} if r else {}


def _technical(profile: DataProfile) -> dict:
    """Covariates for a model over all (or all tumour) samples: the technical columns that vary across them."""
    return {"covariates": list(profile.adjust_for)} if profile.adjust_for else {}


TRANS_MIN_CARRIERS = 8
"""Fewest carriers (and non-carriers) of a mutation whose trans effects are tested; with ten per cent of the
genotyped samples (:data:`TRANS_MIN_FRACTION`), a gene's carriers are enough for a genome-wide test after the
groupings they are enriched in are adjusted for."""
TRANS_MIN_FRACTION = 0.1
TRANS_GENES = 8
"""Genes whose trans effects are tested, most recurrent beyond passenger load first."""


def _adjustable_groupings(profile: DataProfile) -> list[str]:
    """Groupings a mutation's carriers may be enriched in (a subtype, a hypermutator status), to adjust its
    trans test for: the biological factors of 2-8 levels other than the sample type, most powerful first (six
    at most), leaving out a column named after a gene (another gene's call: a co-mutation, not a grouping)."""
    symbols = genesets.known_symbols()
    keep = [f.name for f in profile.factors if f.name != profile.sample_type_column and 2 <= len(f.levels) <= 8
            and not any(w in symbols for w in re.split(r"[^A-Za-z0-9]+", f.name))]
    return keep[:6]


def _trans_params(profile: DataProfile) -> dict:
    """Parameters of a trans-effect step of the recurrent mutations (``mutation_association``)."""
    adjust = _adjustable_groupings(profile)
    return {"top_n": TRANS_GENES, "min_mutated": TRANS_MIN_CARRIERS, "min_fraction": TRANS_MIN_FRACTION, "pathways": "reactome"} | (
        {"adjust_enriched": adjust} if adjust else {})


def _clinical_variables(profile: DataProfile) -> dict:
    """Columns clusters are compared with: biological factors, covariates and outcomes (not technical ones)."""
    keep = [v.name for v in profile.variables if v.role in ("biological", "covariate", "outcome")]
    return {"variables": keep} if len(keep) < len(profile.variables) else {}


def _technical_variables(profile: DataProfile) -> dict:
    """Technical columns (batch, plate, run order) clusters are checked against, so a batch is not called a subtype."""
    keep = [v.name for v in profile.variables if v.role in ("technical", "block")]
    return {"technical": keep} if keep else {}


def _subtype_k_max(profile: DataProfile, primary: str) -> int:
    """Largest number of subtypes worth trying on the samples clustering sees: at least five samples
    a cluster (the tool's smallest eligible cluster) and at most six clusters; 0 below twenty
    samples, where the design's own groups are all a clustering can find."""
    r = _restrict(profile)
    f = next((f for f in profile.factors if r and f.name in r), None)
    n = f.n_per_level.get(r[f.name], 0) if f else next((m.n_samples for m in profile.modalities if m.name == primary), 0)
    return min(6, n // 5) if n >= 20 else 0


def _pick_continuous(profile: DataProfile) -> str | None:
    """The continuous variable a correlation objective studies: a tissue-composition score
    (:func:`proteus.policy.claims.is_composition_score`), immune content first, then summary scores
    before single cell-type fractions; else another score or index; else a common clinical
    measurement; else the first."""
    tiers = [
        lambda v: is_composition_score(v) and "immune" in v.lower(),
        lambda v: is_composition_score(v) and "score" in v.lower(),
        is_composition_score,
        *(p.search for p in _OTHER_SCORES),
    ]
    for tier in tiers:
        hit = next((v for v in profile.continuous if tier(v)), None)
        if hit:
            return hit
    return profile.continuous[0] if profile.continuous else None


def _missing_note(profile: DataProfile, modality: str) -> str:
    """Why the test fits the layer: label-free intensities with missing values get the tool's missing-value
    (dropout) model when missingness depends on abundance (``method='auto'`` decides on the data and reports
    why; repeat measurements of one sample are tested against a fold change, ``lfc='auto'``); log ratios are
    tested on observed values, as limma does."""
    m = next((m for m in profile.modalities if m.name == modality), None)
    if m is not None and m.scale == "log2" and m.missing_fraction > 0:
        return (f"; {m.missing_fraction:.0%} of values missing in label-free intensities: modelled as abundance-dependent "
                "dropouts where the data show it, proteins seen in one group only tested, nothing imputed; replicates "
                "that prove to be repeat measurements of one sample are tested against a 1.5-fold change")
    return ""


def _mappable(profile: DataProfile, modality: str) -> bool:
    """Whether the layer's feature ids can be mapped to the shipped (human) gene sets (pathway and
    network steps need that): not probes or miRNAs, and not another organism's proteins."""
    m = next((m for m in profile.modalities if m.name == modality), None)
    return m is None or (m.id_type not in ("probe", "mirna") and genesets.organism_problem(m.organism) is None)


def _contrast_params(c: Contrast) -> dict:
    """Group, levels (a pooled case with its levels) and the technical / block columns that cross the contrast (adjusted for)."""
    return ({"group": c.group, "case": c.case, "control": c.control} | ({"case_levels": list(c.case_levels)} if c.case_levels else {})
            | ({"covariates": list(c.covariates)} if c.covariates else {}))


_LAYER_WORDS = {
    "proteomics": {"proteomics", "proteome", "protein", "tmt", "plex", "itraq", "ms", "lcms"},
    "phosphoproteomics": {"phospho", "phosphoproteomics", "phosphosite", "phosphoproteome"},
    "acetylproteomics": {"acetyl", "acetylproteomics", "acetylsite", "acetylome", "kac"},
    "transcriptomics": {"rna", "rnaseq", "mrna", "transcriptomics", "transcriptome", "expression", "array", "microarray"},
}


def _for_layer(params: dict, kind: str) -> dict:
    """Contrast params for another layer: technical columns named after a different layer
    (a proteomics TMT plex for RNA) are not that layer's batches and are left out. A modification-site
    layer is enriched from the digest of the same labelled samples and measured in the same MS runs as
    its protein layer (Mertins et al. 2018, doi:10.1038/s41596-018-0006-9), so the protein layer's
    technical columns (plex, channel, run batch) are its own too and its model keeps them, as the
    protein model does: a site-minus-protein comparison then sets two models of one design side by side."""
    own = _LAYER_WORDS.get(kind, set()) | (_LAYER_WORDS["proteomics"] if kind in SITE_KINDS else set())
    others = set().union(*(w for k, w in _LAYER_WORDS.items() if k != kind)) - own
    covs = [c for c in params.get("covariates", []) if not (column_words(c) & others)]
    return {k: v for k, v in params.items() if k != "covariates"} | ({"covariates": covs} if covs else {})


def _adjusted(c: Contrast) -> str:
    text = f", adjusting for {', '.join(c.covariates)}" if c.covariates else ""
    return text + (f"; CONFOUNDED with {', '.join(c.confounded)}: a difference may be technical" if c.confounded else "")


def _da_step(profile: DataProfile, c: Contrast, primary: str) -> StepSpec:
    what = (f"pooled contrast: the mean of the {len(c.case_levels)} other levels vs {c.control} on the full design (a change "
            "they share)" if c.case_levels else f"{c.case} vs {c.control}")
    return _step("differential_abundance", f"moderated t {what} in {primary}{_adjusted(c)}"
                 f"{_missing_note(profile, primary)}", modality=primary, **_contrast_params(c))


def _contrast_steps(profile: DataProfile, c: Contrast, primary: str, deep: bool) -> list[StepSpec]:
    cp = _contrast_params(c)
    steps = [_da_step(profile, c, primary)]
    genes = _mappable(profile, primary)
    if genes:
        steps.append(_step("enrichment_ora", "pathways over-represented among increased features", modality=primary, direction="up", library="reactome", **cp))
        steps.append(_step("enrichment_ora", "pathways over-represented among decreased features", modality=primary, direction="down", library="reactome", **cp))
    rna = _layer(profile, "transcriptomics")
    if rna and rna != primary:
        steps.append(_step("differential_abundance", "does the RNA layer corroborate the protein changes?", modality=rna, **_for_layer(cp, "transcriptomics")))
    if profile.recurrent_mutations and c.group != profile.sample_type_column and not c.case_levels and _layer(profile, "proteomics"):
        steps.append(_step("mutation_group_enrichment", f"mutations more frequent in {c.case}, and whether their carriers carry "
                           "their own protein's change there (a cis effect as the mechanism)", group=c.group, case=c.case,
                           control=c.control, own_modality=_layer(profile, "proteomics"), **_tumour_params(profile)))
    if deep and genes:
        steps.append(_step("enrichment_gsea", "rank-based enrichment on the moderated t (no hit threshold)", modality=primary, library="reactome", **cp))
        steps.append(_step("ppi_network", "interaction modules among the hits (BioPlex)", modality=primary, **cp))
    for layer, kind in _site_layers(profile) if deep else []:
        steps.append(_step("differential_abundance", f"{_site_words(kind)} changes: modification beyond abundance",
                           modality=layer, **_for_layer(cp, kind)))
    return steps


def _factor_play(profile: DataProfile, f: FactorDesign, primary: str, deep: bool) -> Play | None:
    """One objective per biological factor, tested as its design says.

    Two levels: the contrast and its pathways. More levels: the moderated F-test (with a linear
    trend when ordered) first, then the most powerful design contrasts (each level vs the
    reference, or pairs), pathways of the strongest one.
    """
    contrasts = [c for c in profile.contrasts if c.group == f.name]
    adjust = f" adjusting for {', '.join(f.covariates)}" if f.covariates else ""
    if len(f.levels) == 2:
        if not contrasts:
            return None
        c = contrasts[0]
        return Play(
            ObjectiveSpec(
                title=f"{c.group}: {c.case} vs {c.control}",
                question=f"Which features separate {c.case} from {c.control} ({c.group}), and which pathways do they belong to?",
                family="differential",
                rationale=f"{c.n_case} vs {c.n_control} samples (effective n {c.power:.1f}){_adjusted(c)}; "
                + ("the sample-type contrast an analyst tests first." if f.name == profile.sample_type_column else "a biological factor ranked by power."),
            ),
            _contrast_steps(profile, c, primary, deep),
        )
    anova = {"modality": primary, "group": f.name, "levels": list(f.levels)}
    if f.ordered:
        anova["ordered"] = True
    if f.covariates:
        anova["covariates"] = list(f.covariates)
    tests = " and a linear trend over " + " < ".join(f.levels) if f.ordered else ""
    steps = [_step("differential_anova", f"moderated F across {len(f.levels)} levels{tests}{adjust}", **anova)]
    chosen = contrasts[:_MAX_DESIGN_CONTRASTS]
    if chosen:  # the design contrasts first, then pathways and corroboration of the strongest
        top = _contrast_steps(profile, chosen[0], primary, deep)
        steps += top[:1] + [_da_step(profile, c, primary) for c in chosen[1:]] + top[1:]
    design = "; ".join(f.tests)
    return Play(
        ObjectiveSpec(
            title=f"Differences across {f.name}",
            question=f"Which features differ across the levels of {f.name} ({', '.join(f.levels)}), and which pathways do they belong to?",
            family="differential",
            rationale=f"a {len(f.levels)}-level {'ordered ' if f.ordered else ''}factor tested as its design says: {design}{adjust}"
            + (f"; confounded in part with {', '.join(f.confounded)}" if f.confounded else ""),
        ),
        steps,
    )


def _survival_plays(profile: DataProfile, primary: str) -> list[Play]:
    """Outcome: Cox per feature, and Kaplan-Meier by the clinical groups the contrasts use (context for the features)."""
    plays = []
    restrict = _tumour_params(profile)
    for time, event in profile.survival[:1]:
        adjust = _technical(profile)  # the tool keeps only what the events can afford (stats.design.usable_covariates)
        steps = [_step("cox_per_feature", "Cox proportional hazards per feature" + (f", adjusted for {', '.join(adjust['covariates'])}" if adjust else ""),
                       modality=primary, time=time, event=event, **restrict, **adjust)]
        groups = [f.name for f in profile.factors if f.name != profile.sample_type_column]
        for g in groups[:2]:
            steps.append(_step("kaplan_meier", f"Kaplan-Meier by {g} with log-rank test: is the grouping itself prognostic?", time=time, event=event, group=g, **restrict))
        plays.append(
            Play(
                ObjectiveSpec(
                    title="Features associated with outcome",
                    question=f"Which features are associated with {time} ({event}), and which clinical groups differ in outcome?",
                    family="survival",
                    rationale="time-to-event data are available; outcome is what a clinical cohort is collected for",
                ),
                steps,
            )
        )
    return plays


def _qc_play(profile: DataProfile, primary: str) -> Play | None:
    """Technical factors are checked, never studied: is the main variation technical or biological?"""
    if not profile.batch_columns:
        return None
    steps = [_step("missingness_report", "missing values per sample and feature; MNAR check", modality=primary)]
    for col in profile.batch_columns[:3]:
        v = profile.variable(col)
        why = f" ({v.role_reason})" if v is not None and v.role_reason else ""
        steps.append(_step("batch_check", f"are principal components associated with the technical factor {col}{why}?", modality=primary, batch=col))
    return Play(
        ObjectiveSpec(
            title="Data quality and batch structure",
            question=f"Is the main variation in {primary} technical ({', '.join(profile.batch_columns[:3])}) or biological?",
            family="qc",
            rationale="technical factors are checked and adjusted for, never studied as biology; batch effects decide how later results can be trusted",
        ),
        steps,
    )


def bulk_plays(profile: DataProfile) -> list[Play]:
    """Objectives for a sample-level study, in the order an analyst would take them.

    The biological factors come in the profile's power order (the sample-type factor first), so
    that capping the objectives keeps the best-powered questions.
    """
    primary = primary_modality(profile)
    if primary is None:
        return []
    plays: list[Play] = []
    qc = _qc_play(profile, primary)
    if qc:
        plays.append(qc)
    designs = [p for i, f in enumerate(profile.factors) if (p := _factor_play(profile, f, primary, deep=i == 0)) is not None]
    plays += designs[:1]
    plays += _survival_plays(profile, primary)
    plays += designs[1:3]
    if profile.recurrent_mutations:
        trans = [_step("mutation_association", f"trans effects of the recurrent mutations on {layer}: carriers vs non-carriers, adjusted for "
                       "the groupings their carriers are enriched in, and the pathways over-represented among the hits",
                       modality=layer, **_trans_params(profile), **_tumour_params(profile), **_for_layer(_technical(profile), kind))
                 for layer, kind in [(primary, next(m.kind for m in profile.modalities if m.name == primary)), *_site_layers(profile)[:1]]]
        plays.append(
            Play(
                ObjectiveSpec(
                    title="Consequences of recurrent mutations",
                    question="Do recurrent somatic mutations change their own protein (cis) and other proteins and modification sites (trans)?",
                    family="mutation",
                    rationale=f"{len(profile.recurrent_mutations)} genes mutated in >= 3 samples",
                ),
                [_step("mutation_cis_effect", "own-protein change in mutated vs wild-type samples", modalities=[primary], **_tumour_params(profile)),
                 *trans],
            )
        )
    rna, cna = _layer(profile, "transcriptomics"), _layer(profile, "cna")
    if rna and primary != rna:
        steps = [_step("mrna_protein_concordance", "per-gene mRNA-protein correlation", modality=primary, other_modality=rna, **_tumour_params(profile))]
        if cna:
            steps.append(_step("cna_cis_effect", "copy-number cis effects on RNA and protein (buffering)", modality=cna, modalities=[rna, primary], **_tumour_params(profile)))
        plays.append(
            Play(
                ObjectiveSpec(
                    title="Cross-omics concordance and copy-number buffering",
                    question="How well does mRNA predict protein, and are copy-number changes buffered at the protein level?",
                    family="cross_omics",
                    rationale="paired RNA" + (" and copy number" if cna else "") + " for the same samples",
                ),
                steps,
            )
        )
    var = _pick_continuous(profile)
    if var:
        plays.append(
            Play(
                ObjectiveSpec(
                    title=f"Features associated with {var}",
                    question=f"Which features track {var} across samples?",
                    family="correlation",
                    rationale="continuous clinical variables are underused by group comparisons",
                ),
                [_step("clinical_correlation", f"Spearman correlation with {var}" + (f", partial on {', '.join(profile.adjust_for)}" if profile.adjust_for else ""),
                       modality=primary, variable=var, **_tumour_params(profile), **_technical(profile))],
            )
        )
    k_max = _subtype_k_max(profile, primary)
    if k_max:
        plays.append(
            Play(
                ObjectiveSpec(
                    title="Unsupervised subtypes",
                    question=f"Do samples form reproducible {primary} subtypes, and do they match clinical variables?",
                    family="subtypes",
                    rationale="consensus clustering finds structure no single contrast names",
                ),
                [_step("consensus_clustering", "consensus clustering on the most variable features; clusters compared with biological factors and covariates (technical factors are QC's)",
                       modality=primary, **_tumour_params(profile), **_clinical_variables(profile), **_technical_variables(profile), **({"k_max": k_max} if k_max < 6 else {}))],
            )
        )
    plays += designs[3:]
    return plays


def followup_plays(profile: DataProfile, kg) -> list[Play]:
    """Objectives suggested by findings so far (derived from the knowledge graph, so deterministic).

    - a mutation that changes its own protein: follow its trans consequences;
    - a contrast with many protein changes but no analysis of a modification-site layer (phospho,
      acetyl, ...): look at its sites.
    """
    primary = primary_modality(profile)
    plays: list[Play] = []
    if primary is None:
        return plays
    cis = sorted(
        (r for r in kg.by_predicate("cis_effect_on") if r.subject.type == "mutation"),
        key=lambda r: r.stats.q if r.stats.q is not None else 1.0,
    )
    for r in cis[:3]:
        gene = r.subject.label
        plays.append(
            Play(
                ObjectiveSpec(
                    title=f"Downstream effects of {gene} mutation",
                    question=f"Which proteins and pathways change with {gene} mutation status?",
                    family="mutation",
                    rationale=f"{gene} mutation changes its own protein ({r.stats.effect_type} {r.stats.effect:+.2f}, q={r.stats.q:.1e}); follow the consequences",
                ),
                [_step("mutation_association", f"proteins that differ with {gene} mutation status", modality=primary, gene=gene, pathways="reactome",
                       **({"adjust_enriched": a} if (a := _adjustable_groupings(profile)) else {}), **_tumour_params(profile), **_technical(profile))],
            )
        )
    sites = _site_layers(profile)
    by_contrast: dict[tuple, int] = {}
    adjusted_for: dict[tuple, list[str]] = {}  # the protein model's covariates: the site model keeps them
    studied: dict[str, set] = {layer: set() for layer, _ in sites}
    for r in kg.relations.values():
        prov = r.provenance.params
        key = (prov.get("group"), prov.get("case"), prov.get("control"))
        if r.provenance.tool != "differential_abundance" or None in key:
            continue
        if prov.get("modality") in studied:
            studied[prov["modality"]].add(key)
        elif prov.get("modality") == primary:
            by_contrast[key] = by_contrast.get(key, 0) + 1
            adjusted_for.setdefault(key, list(prov.get("covariates") or []))
    for (group, case, control), n in sorted(by_contrast.items(), key=lambda kv: -kv[1]):
        for layer, kind in sites:
            words = _site_words(kind)
            if n < 20 or (group, case, control) in studied[layer]:
                continue
            cp = _for_layer({"group": group, "case": case, "control": control, "covariates": adjusted_for[(group, case, control)]}, kind)
            plays.append(
                Play(
                    ObjectiveSpec(
                        title=f"{words.capitalize()}s in {group}: {case} vs {control}",
                        question=f"Which {words}s change between {case} and {control} beyond protein abundance, and which pathways do their proteins belong to?",
                        family="differential",
                        rationale=f"{n} protein changes in this contrast; modification-specific regulation is read from {layer} sites",
                    ),
                    [
                        _step("differential_abundance", f"{words} changes", modality=layer, **cp),
                        _step("enrichment_ora", f"pathways of proteins with increased {words}s (each protein counted once)", modality=layer,
                              direction="up", library="reactome", **cp),
                    ],
                )
            )
    return plays
