"""Offline analysis plans for bulk omics studies: what an experienced analyst runs, given the profile.

Each playbook turns the :class:`~proteus.profile.DataProfile` into objectives (with the workflow
steps that answer them) the way a proteomics analyst would plan a CPTAC-style study: sample-type
contrast first, then clinical subtypes, mutation status, cross-omics concordance and copy-number
cis effects, clinical correlates, survival, unsupervised subtypes (cf. Dou et al., Cell 2020 for
the UCEC discovery cohort's analysis plan). Cell-level studies use
:mod:`proteus.policy.cytometry`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from proteus.policy.decisions import ObjectiveSpec, StepSpec
from proteus.profile import _UNKNOWN, Contrast, DataProfile

__all__ = ["Play", "bulk_plays", "primary_modality"]

_PREFERRED = ("proteomics", "transcriptomics", "phosphoproteomics", "acetylproteomics", "mirna", "cna")
_CLINICAL_SCORES = [re.compile(p, re.I) for p in (r"immune", r"stromal|purity|estimate", r"score|index|stemness", r"bmi|age|size|grade")]
_STRONG_GROUP = re.compile(r"(subtype|histolog|status|class|type|stage|grade)", re.I)


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


def _pick_continuous(profile: DataProfile) -> str | None:
    for pattern in _CLINICAL_SCORES:
        hit = next((v for v in profile.continuous if pattern.search(v)), None)
        if hit:
            return hit
    return profile.continuous[0] if profile.continuous else None


def _missing_handling(profile: DataProfile, modality: str) -> dict:
    """Label-free intensities with much missingness: Perseus down-shift imputation (missing ~ low abundance).

    Log-ratio (TMT, CPTAC-style) layers are tested on observed values, as limma does.
    """
    m = next((m for m in profile.modalities if m.name == modality), None)
    if m is not None and m.scale == "log2" and m.missing_fraction > 0.3:
        return {"impute": "downshift", "min_valid": 3}
    return {}


def _valid_values(c: Contrast, fraction: float = 0.7) -> int:
    """Perseus' usual valid-value filter before imputation: 70% valid values in at least one group (>= 3)."""
    return max(3, math.ceil(fraction * min(c.n_case, c.n_control)))


def _mappable(profile: DataProfile, modality: str) -> bool:
    """Whether the layer's feature ids can be mapped to gene symbols (pathway and network steps need that)."""
    m = next((m for m in profile.modalities if m.name == modality), None)
    return m is None or m.id_type not in ("probe", "mirna")


def _contrast_params(c: Contrast) -> dict:
    return {"group": c.group, "case": c.case, "control": c.control}


def _contrast_play(profile: DataProfile, c: Contrast, primary: str, deep: bool) -> Play:
    cp = _contrast_params(c)
    missing = _missing_handling(profile, primary)
    if missing:
        missing["min_valid"] = _valid_values(c)
    steps = [_step("differential_abundance", f"moderated t (limma) {c.case} vs {c.control} in {primary}", modality=primary, **cp, **missing)]
    genes = _mappable(profile, primary)
    if genes:
        steps.append(_step("enrichment_ora", "pathways over-represented among increased features", modality=primary, direction="up", library="reactome", **cp))
        steps.append(_step("enrichment_ora", "pathways over-represented among decreased features", modality=primary, direction="down", library="reactome", **cp))
    if deep and genes:
        steps.append(_step("enrichment_gsea", "rank-based enrichment on the moderated t (no hit threshold)", modality=primary, library="reactome", **cp))
        steps.append(_step("ppi_network", "interaction modules among the hits (BioPlex)", modality=primary, **cp))
    rna = _layer(profile, "transcriptomics")
    if rna and rna != primary:
        steps.append(_step("differential_abundance", "does the RNA layer corroborate the protein changes?", modality=rna, **cp))
    phospho = _layer(profile, "phosphoproteomics")
    if deep and phospho:
        steps.append(_step("differential_abundance", "phosphosite changes: signalling beyond abundance", modality=phospho, **cp))
    return Play(
        ObjectiveSpec(
            title=f"{c.group}: {c.case} vs {c.control}",
            question=f"Which features separate {c.case} from {c.control} ({c.group}), and which pathways do they belong to?",
            family="differential",
            rationale=f"{c.n_case} vs {c.n_control} samples; the {'sample-type' if deep else 'clinical'} contrast an analyst tests first.",
        ),
        steps,
    )


def _anova_levels(profile: DataProfile, group: str, min_n: int = 3) -> dict:
    """Levels of ``group`` worth comparing: known values (not 'unknown', 'NA', ...) with >= ``min_n`` samples.

    Returns ``{"levels": [...]}`` when some levels are left out, else ``{}`` (the tool's default: all).
    """
    v = profile.variable(group)
    if v is None or not v.levels:
        return {}
    keep = [k for k, n in v.levels.items() if n >= min_n and not _UNKNOWN.match(k.strip())]
    if len(keep) == len(v.levels) or len(keep) < 3:
        return {}
    return {"levels": sorted(keep)}


def _survival_plays(profile: DataProfile, primary: str) -> list[Play]:
    """Outcome: Cox per feature, and Kaplan-Meier by the clinical groups the contrasts use (context for the features)."""
    plays = []
    restrict = _tumour_params(profile)
    for time, event in profile.survival[:1]:
        steps = [_step("cox_per_feature", "Cox proportional hazards per feature", modality=primary, time=time, event=event, **restrict)]
        groups: list[str] = []
        for c in profile.contrasts:
            if c.group not in groups and c.group != profile.sample_type_column:
                groups.append(c.group)
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


def bulk_plays(profile: DataProfile) -> list[Play]:
    """Objectives for a sample-level study, in the order an analyst would take them."""
    primary = primary_modality(profile)
    if primary is None:
        return []
    plays: list[Play] = []
    if profile.batch_columns:
        plays.append(
            Play(
                ObjectiveSpec(
                    title="Data quality and batch structure",
                    question=f"Is the main variation in {primary} technical (batch) or biological?",
                    family="qc",
                    rationale="missingness and batch effects decide how later results can be trusted",
                ),
                [
                    _step("missingness_report", "missing values per sample and feature; MNAR check", modality=primary),
                    _step("batch_check", "are principal components associated with a batch-like column?", modality=primary, batch=profile.batch_columns[0]),
                ],
            )
        )
    contrasts = list(profile.contrasts)
    if contrasts:
        plays.append(_contrast_play(profile, contrasts[0], primary, deep=True))
    plays += _survival_plays(profile, primary)
    # the next clinical contrasts, and every further level of the first group against the same
    # reference (e.g. each disease stage vs healthy), as an analyst reports them side by side
    first = contrasts[0] if contrasts else None
    extra = contrasts[1:3] + [c for c in contrasts[3:] if first and (c.group, c.control) == (first.group, first.control)][:2]
    for c in extra:
        plays.append(_contrast_play(profile, c, primary, deep=False))
    if profile.recurrent_mutations:
        top = list(profile.recurrent_mutations)[:1]
        plays.append(
            Play(
                ObjectiveSpec(
                    title="Consequences of recurrent mutations",
                    question="Do recurrent somatic mutations change their own protein (cis) and other proteins (trans)?",
                    family="mutation",
                    rationale=f"{len(profile.recurrent_mutations)} genes mutated in >= 3 samples",
                ),
                [
                    _step("mutation_cis_effect", "own-protein change in mutated vs wild-type samples", modalities=[primary], **_tumour_params(profile)),
                    _step("mutation_association", f"trans effects of {top[0]} mutation", modality=primary, gene=top[0], **_tumour_params(profile)),
                ],
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
                [_step("clinical_correlation", f"Spearman correlation with {var}", modality=primary, variable=var, **_tumour_params(profile))],
            )
        )
    plays.append(
        Play(
            ObjectiveSpec(
                title="Unsupervised subtypes",
                question=f"Do samples form reproducible {primary} subtypes, and do they match clinical variables?",
                family="subtypes",
                rationale="consensus clustering finds structure no single contrast names",
            ),
            [_step("consensus_clustering", "consensus clustering on the most variable features", modality=primary, **_tumour_params(profile))],
        )
    )
    groups = [g for g in profile.multi_groups if g != profile.sample_type_column]
    for g in sorted(groups, key=lambda g: (not _STRONG_GROUP.search(g), profile.multi_groups.index(g)))[:1]:
        plays.append(
            Play(
                ObjectiveSpec(
                    title=f"Differences across {g}",
                    question=f"Which features differ across the levels of {g}?",
                    family="differential",
                    rationale="a multi-level clinical variable",
                ),
                [_step("differential_anova", "moderated F across all levels", modality=primary, group=g, **_anova_levels(profile, g))],
            )
        )
    return plays


def followup_plays(profile: DataProfile, kg) -> list[Play]:
    """Objectives suggested by findings so far (derived from the knowledge graph, so deterministic).

    - a mutation that changes its own protein: follow its trans consequences;
    - a contrast with many protein changes but no phosphosite analysis: look at signalling.
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
                [_step("mutation_association", f"proteins that differ with {gene} mutation status", modality=primary, gene=gene, **_tumour_params(profile))],
            )
        )
    phospho = _layer(profile, "phosphoproteomics")
    if phospho:
        by_contrast: dict[tuple, int] = {}
        studied = set()
        for r in kg.relations.values():
            prov = r.provenance.params
            key = (prov.get("group"), prov.get("case"), prov.get("control"))
            if r.provenance.tool != "differential_abundance" or None in key:
                continue
            if prov.get("modality") == phospho:
                studied.add(key)
            elif prov.get("modality") == primary:
                by_contrast[key] = by_contrast.get(key, 0) + 1
        for (group, case, control), n in sorted(by_contrast.items(), key=lambda kv: -kv[1]):
            if n < 20 or (group, case, control) in studied:
                continue
            cp = {"group": group, "case": case, "control": control}
            plays.append(
                Play(
                    ObjectiveSpec(
                        title=f"Phosphosignalling in {group}: {case} vs {control}",
                        question=f"Which phosphosites change between {case} and {control} beyond protein abundance, and which pathways do their proteins belong to?",
                        family="differential",
                        rationale=f"{n} protein changes in this contrast; signalling is read from phosphosites",
                    ),
                    [
                        _step("differential_abundance", "phosphosite changes", modality=phospho, **cp),
                        _step("enrichment_ora", "pathways of proteins with increased phosphorylation (each protein counted once)", modality=phospho, direction="up", library="reactome", **cp),
                    ],
                )
            )
    return plays
