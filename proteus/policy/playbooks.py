"""Offline analysis plans for bulk omics studies: what an experienced analyst runs, given the profile.

Each playbook turns the :class:`~proteus.profile.DataProfile` into objectives (with the workflow
steps that answer them) the way a proteomics analyst would plan a CPTAC-style study: sample-type
contrast first, then clinical subtypes, mutation status, cross-omics concordance and copy-number
cis effects, clinical correlates, survival, unsupervised subtypes (cf. Dou et al., Cell 2020 for
the UCEC discovery cohort's analysis plan). Cell-level studies use
:mod:`proteus.policy.cytometry`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from proteus.policy.decisions import ObjectiveSpec, StepSpec
from proteus.profile import Contrast, DataProfile

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


def _contrast_params(c: Contrast) -> dict:
    return {"group": c.group, "case": c.case, "control": c.control}


def _contrast_play(profile: DataProfile, c: Contrast, primary: str, deep: bool) -> Play:
    cp = _contrast_params(c)
    steps = [
        _step("differential_abundance", f"moderated t (limma) {c.case} vs {c.control} in {primary}", modality=primary, **cp, **_missing_handling(profile, primary)),
        _step("enrichment_ora", "pathways over-represented among increased features", modality=primary, direction="up", library="reactome", **cp),
        _step("enrichment_ora", "pathways over-represented among decreased features", modality=primary, direction="down", library="reactome", **cp),
    ]
    if deep:
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
    for c in contrasts[1:3]:
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
    for time, event in profile.survival[:1]:
        plays.append(
            Play(
                ObjectiveSpec(
                    title="Features associated with outcome",
                    question=f"Which features are associated with {time} ({event})?",
                    family="survival",
                    rationale="time-to-event data are available",
                ),
                [_step("cox_per_feature", "Cox proportional hazards per feature", modality=primary, time=time, event=event, **_tumour_params(profile))],
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
                [_step("differential_anova", "moderated F across all levels", modality=primary, group=g)],
            )
        )
    return plays
