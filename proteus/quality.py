"""Sample quality of a study, found before biology is claimed, and what it means for each claim.

:func:`study_quality` records, once per run (``qc.json``, the report's QC section), the outlier runs
of every bulk layer (:func:`proteus.stats.sample_outliers.sample_outliers`: missing values, median,
correlation to the sample's group, robust z), with the profile's leading biological factor as the
groups. When the samples are blood plasma or serum (:func:`proteus.stats.contamination.blood_matrix`,
read from the sample table), it also records each sample's erythrocyte, platelet and coagulation
contamination index (Geyer et al. 2019, doi:10.15252/emmm.201910427) and tests it against every
studied grouping (Kruskal-Wallis, BH over panels and groupings).

:func:`quality_checks` takes a hypothesis's evidence: a differential result whose contrast holds an
outlier run is recomputed without the outlier(s) by the same test (the contrast-table service,
:func:`proteus.tools.differential.differential_table`, on the study less those samples) and says
whether each feature still passes the test's FDR in the same direction (a leave-outlier-out check), and so is
every feature the contrast calls (:func:`contrast_retests`: how many of its significant features hold; for every
differential contrast of the run, in ``qc.json`` and the report). A hypothesis none of whose features hold without
the outlier says so in its statement, and so does one whose comparison keeps fewer than half of its calls. A claim about a
contamination-panel protein whose contrast's groups differ in that panel's index (Mann-Whitney
p < 0.05) says that the difference may come from sample handling.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from proteus.confounding import evidence_contrast
from proteus.stats.contamination import blood_matrix, contamination_index
from proteus.stats.multitest import bh
from proteus.stats.sample_outliers import OUTLIER_Z, sample_outliers

__all__ = ["study_quality", "quality_checks", "contrast_retests", "outliers_of"]

_MIN_SAMPLES = 4
_ALPHA = 0.05
_PANELS_CITED = "Geyer et al. 2019, doi:10.15252/emmm.201910427"


def _grouping(profile) -> str | None:
    """The profile's leading biological factor (the groups a sample's replicates are in), if any."""
    return profile.factors[0].name if getattr(profile, "factors", None) else None


def study_quality(study, profile=None) -> dict[str, Any]:
    """The run's sample-quality record: per bulk layer, each sample's measures and the outliers."""
    group = _grouping(profile) if profile is not None else None
    layers = {}
    for name, a in study.bulk().items():
        if a.n_obs < _MIN_SAMPLES or a.n_vars < 10:
            continue
        groups = study.sample_table(name)[group] if group is not None and group in study.clinical else None
        table = sample_outliers(a, groups)
        layers[name] = {
            "samples": [{"sample": s, **{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}}
                        for s, row in table.round(4).to_dict("index").items()],
            "outliers": [{"sample": s, "reason": r} for s, r in table.loc[table["outlier"], "reason"].items()],
        }
    out = {"grouping": group, "threshold": OUTLIER_Z,
           "method": ("per sample: share of missing values, median value, median Pearson correlation to the other samples of "
                      f"its group; modified z-score (median/MAD, Iglewicz & Hoaglin 1993) beyond {OUTLIER_Z} on the worse side"),
           "layers": layers}
    contamination = _contamination(study, profile)
    return out | ({"contamination": contamination} if contamination else {})


def _contamination(study, profile) -> dict[str, Any] | None:
    """Per-sample contamination indices of the first protein layer of a plasma / serum study and
    their test against each biological factor of the profile."""
    from scipy import stats

    from proteus.genesets import plasma_quality_panels

    matrix = blood_matrix(study.clinical)
    layer = next((n for n, a in study.bulk().items() if a.uns.get("modality", n) == "proteomics"), None)
    if matrix is None or layer is None:
        return None
    index, members = contamination_index(study.modalities[layer], plasma_quality_panels())
    if index.empty:
        return None
    tests = []
    clin = study.sample_table(layer)
    for f in getattr(profile, "factors", None) or []:
        g = clin[f.name].astype(str).where(clin[f.name].notna())
        for panel in index.columns:
            parts = {lv: index.loc[(g == lv).to_numpy(), panel].dropna() for lv in f.levels}
            parts = {lv: v for lv, v in parts.items() if len(v) >= 2}
            if len(parts) < 2 or np.ptp(np.concatenate([v.to_numpy() for v in parts.values()])) == 0:
                continue
            tests.append({"panel": panel, "grouping": f.name, "test": "Kruskal-Wallis", "p": float(stats.kruskal(*parts.values()).pvalue),
                          "means": {lv: round(float(v.mean()), 3) for lv, v in parts.items()}})
    for t, q in zip(tests, bh(np.array([t["p"] for t in tests]))) if tests else ():
        t["q"] = float(q)
    return {"matrix": matrix, "modality": layer, "source": _PANELS_CITED,
            "method": "per sample: mean z-score (over samples) of the panel members measured in at least half of the samples",
            "members": members, "tests": tests,
            "index": {s: {p: (None if not np.isfinite(v) else round(float(v), 4)) for p, v in row.items()} for s, row in index.to_dict("index").items()}}


def outliers_of(quality: dict[str, Any] | None, modality: str | None) -> list[str]:
    """The outlier samples ``quality`` (:func:`study_quality`) found in ``modality``."""
    layer = ((quality or {}).get("layers") or {}).get(modality or "") or {}
    return [o["sample"] for o in layer.get("outliers", [])]


def _retest(r, seed: int = 0):
    """How to re-run the differential test a relation came from: ``(contrast label, modality, group, levels,
    cache key, run)`` where ``run(study)`` gives that test's table on ``study`` indexed by feature with
    ``effect`` and ``q``; ``None`` for a relation of no differential test. Two-group tests go through the
    contrast-table service (:func:`proteus.tools.differential.differential_table`), F-tests re-run
    ``differential_anova`` (effect: the most distinct level vs the others)."""
    from proteus.stats.contrasts import TEST_FIELDS, ContrastTest, test_key

    p = r.provenance.params or {}
    if not p.get("group") or not (r.stats.extra or {}).get("feature_id"):
        return None
    if r.provenance.tool == "differential_anova" and r.predicate == "differs_across":
        from proteus.tools.differential import AnovaParams

        params = AnovaParams.model_validate({k: v for k, v in p.items() if k in AnovaParams.model_fields})
        levels = [str(x) for x in (r.stats.extra or {}).get("levels") or params.levels]

        def run_anova(study):
            import tempfile
            from pathlib import Path

            from proteus.tools.registry import ToolContext, get_tool

            res = get_tool("differential_anova")(study, params, ToolContext(out_dir=Path(tempfile.gettempdir()), figures=False))
            return res.tables["results"].set_index("feature").rename(columns={"distinct_vs_rest": "effect"})

        return (f"{params.group}: F-test across {', '.join(levels)}", params.modality, params.group, levels,
                ("anova", params.model_dump_json()), run_anova)
    if r.object.type != "sample_group" or p.get("control") is None:
        return None
    try:
        test = ContrastTest.model_validate({k: v for k, v in p.items() if k in TEST_FIELDS})
    except ValueError:
        return None

    def run_two_group(study):
        from proteus.tools.differential import differential_table

        return differential_table(study, test, seed=seed).table.set_index("feature").rename(columns={"logFC": "effect"})

    cases = list(test.case_levels or [test.case])
    return (f"{test.group}: {', '.join(cases)} vs {test.control}", test.modality, test.group, [*cases, str(test.control)],
            ("two-group", test_key(test)), run_two_group)


def _without(study, key, run, outliers: list[str], cache: dict):
    """``run`` on the study less ``outliers`` (cached by test and outliers); the error text when the test cannot run."""
    from proteus.tools.registry import ToolFailed, ToolInputError

    key = ("leave-outlier-out", key, tuple(outliers))
    if key not in cache:
        keep = [s for s in study.clinical.index.astype(str) if s not in set(outliers)]
        try:
            cache[key] = run(study.subset_samples(keep))
        except (ToolFailed, ToolInputError, ValueError) as err:
            cache[key] = str(err)
    return cache[key]


def _outlier_contrasts(relations, quality: dict[str, Any] | None, study, seed: int) -> dict[str, tuple]:
    """The differential contrasts of ``relations`` (:func:`_retest`) whose groups hold an outlier run of their layer:
    label -> (modality, cache key, run, the outliers inside, the contrast's relations)."""
    out: dict[str, tuple] = {}
    for r in relations:
        spec = _retest(r, seed)
        if spec is None:
            continue
        label, modality, group, levels, key, run = spec
        bad = outliers_of(quality, modality)
        if not bad or group not in study.clinical:
            continue
        g = study.clinical[group].astype(str).where(study.clinical[group].notna())
        inside = [s for s in bad if s in g.index and g[s] in set(levels)]
        if inside:
            out.setdefault(label, (modality, key, run, inside, []))[4].append(r)
    return out


def _full(study, key, run, cache: dict):
    """``run`` on the whole study (cached by test); the error text when the test cannot run."""
    from proteus.tools.registry import ToolFailed, ToolInputError

    key = ("full", key)
    if key not in cache:
        try:
            cache[key] = run(study)
        except (ToolFailed, ToolInputError, ValueError) as err:
            cache[key] = str(err)
    return cache[key]


def _significant_retest(label: str, modality: str, key, run, inside: list[str], fdr: float, study, cache: dict) -> dict[str, Any]:
    """Every feature the contrast calls (q < ``fdr`` on all samples) re-tested without the outlier runs ``inside``: how
    many still pass ``fdr`` in the same direction, and the labels of those that do not (the first 20)."""
    full, without = _full(study, key, run, cache), _without(study, key, run, inside, cache)
    rec: dict[str, Any] = {"contrast": label, "modality": modality, "outliers": inside, "fdr": fdr}
    if isinstance(full, str) or isinstance(without, str):
        return rec | {"n_significant": None, "n_hold": None, "why": full if isinstance(full, str) else without}
    sig = full[(full["q"] < fdr) & np.isfinite(full["effect"].astype(float))]
    w = without.reindex(sig.index)
    hold = (np.sign(w["effect"].astype(float)) == np.sign(sig["effect"].astype(float))) & (w["q"].astype(float) < fdr)
    names = sig["label"].astype(str) if "label" in sig else pd.Series(sig.index.astype(str), index=sig.index)
    n, k = len(sig), int(hold.sum())
    return rec | {"n_significant": n, "n_hold": k, "lost": names[~hold.to_numpy()].tolist()[:20],
                  "decision": "no call" if n == 0 else "holds" if k == n else "does not hold" if k == 0 else "partly holds"}


def contrast_retests(relations, quality: dict[str, Any] | None, study, cache: dict | None = None, *, seed: int = 0) -> list[dict[str, Any]]:
    """Leave-outlier-out re-test of every differential contrast of ``relations`` whose groups hold an outlier run.

    For each (:func:`_retest`: two-group tests through the contrast-table service, F-tests by ``differential_anova``),
    the contrast's significant features (q below the test's FDR on all samples) are re-tested on the study less the
    outlier runs in its groups. One record per contrast: ``contrast``, ``modality``, ``outliers``, ``fdr``,
    ``n_significant``, ``n_hold`` (still below the FDR in the same direction), ``lost`` (labels that do not hold) and
    ``decision``. Written to ``qc.json`` (``leave_outlier_out``) and shown in the report's QC section.
    """
    cache = {} if cache is None else cache
    out = []
    for label, (modality, key, run, inside, rels) in _outlier_contrasts(relations, quality, study, seed).items():
        fdr = float((rels[0].provenance.params or {}).get("fdr", 0.05))
        out.append(_significant_retest(label, modality, key, run, inside, fdr, study, cache))
    return out


def quality_checks(relations, quality: dict[str, Any] | None, study, cache: dict | None = None,
                   *, seed: int = 0) -> tuple[list[dict[str, Any]], str, str]:
    """Leave-outlier-out checks of a hypothesis's differential evidence.

    Two-group and F-test results (:func:`_retest`) are re-run on the study less the outlier runs of
    their layer that lie in their groups. Returns ``(records, statement clause, rationale clause)``: one
    record per contrast that holds an outlier run (kind ``"outlier runs"``: the outliers, per cited feature its effect
    and q with and without them and whether it holds, and how many of the contrast's significant features hold,
    :func:`contrast_retests`); the clause says the claim does not hold without the outlier when none of its
    features does, or that most of its contrast's calls do not when fewer than half of them hold.
    """
    cache = {} if cache is None else cache
    records, failed, held, thinned = [], [], [], []
    for label, (modality, key, run, inside, rels) in _outlier_contrasts(relations, quality, study, seed).items():
        table = _without(study, key, run, inside, cache)
        fdr = float((rels[0].provenance.params or {}).get("fdr", 0.05))
        rows = []
        for r in rels:
            fid = str(r.stats.extra["feature_id"])
            row = {"feature": r.subject.label, "effect": r.stats.effect, "q": r.stats.q}
            if isinstance(table, str) or fid not in table.index:
                row |= {"holds": False, "why": table if isinstance(table, str) else "not tested without the outlier(s)"}
            else:
                t = table.loc[fid]
                same = np.sign(float(t["effect"])) == np.sign(r.stats.effect or 0.0)
                row |= {"effect_without": round(float(t["effect"]), 4), "q_without": float(t["q"]), "holds": bool(same and float(t["q"]) < fdr)}
            rows.append(row)
        n_hold = sum(x["holds"] for x in rows)
        whole = _significant_retest(label, modality, key, run, inside, fdr, study, cache)
        records.append({"kind": "outlier runs", "contrast": label, "outliers": inside, "fdr": fdr,
                        "n_features": len(rows), "n_hold": n_hold, "features": rows[:20],
                        "n_significant": whole.get("n_significant"), "n_significant_hold": whole.get("n_hold"),
                        "decision": "holds" if n_hold == len(rows) else "does not hold" if n_hold == 0 else "partly holds"})
        (held if n_hold else failed).append(records[-1])
        if n_hold and whole.get("n_significant") and 2 * whole["n_hold"] < whole["n_significant"]:
            thinned.append(records[-1])
    contamination, lead_flag = _contamination_checks(relations, quality, study)
    records += contamination
    clause = ""
    if lead_flag is not None:
        article = "an" if lead_flag["panel"][:1] in "aeiou" else "a"
        clause += (f"; {lead_flag['lead']} is {article} {lead_flag['panel']}-contamination marker of {lead_flag['matrix']} ({_PANELS_CITED}) and the "
                   f"{lead_flag['panel']} index differs between these groups (Mann-Whitney p={lead_flag['p']:.1g}), so the difference may come "
                   "from sample handling")
    if failed and not held:
        r = failed[0]
        clause += (f"; it does not hold without the outlier run{'s' if len(r['outliers']) > 1 else ''} {', '.join(r['outliers'])} "
                  f"(QC: {_reasons(quality, r['outliers'])})")
    elif thinned:
        r = thinned[0]
        clause += (f"; without the outlier run{'s' if len(r['outliers']) > 1 else ''} {', '.join(r['outliers'])} only {r['n_significant_hold']} "
                   f"of the {r['n_significant']} features its comparison calls still pass q < {r['fdr']:g} (QC: {_reasons(quality, r['outliers'])})")
    why = " ".join(
        f"Leave-outlier-out check of {r['contrast']}: without {', '.join(r['outliers'])} ({_reasons(quality, r['outliers'])}), "
        f"{r['n_hold']} of {r['n_features']} cited features still pass q < {r['fdr']:g} in the same direction"
        + (f", and {r['n_significant_hold']} of the {r['n_significant']} features the comparison calls." if r.get("n_significant") else ".")
        for r in records if r["kind"] == "outlier runs")
    why += "".join(f" Contamination check ({_PANELS_CITED}): {', '.join(r['features'])} {'is' if len(r['features']) == 1 else 'are'} "
                   f"{r['panel']} marker{'s' if len(r['features']) > 1 else ''}; the {r['panel']} index of {r['contrast']} "
                   f"{'differs between the groups' if r['decision'] == 'differs' else 'shows no difference between the groups at p < 0.05, which does not exclude one'} (Mann-Whitney p={r['p']:.1g}; the index includes the protein itself)."
                   for r in contamination)
    return records, clause, why.strip()


def _contamination_checks(relations, quality: dict[str, Any] | None, study) -> tuple[list[dict[str, Any]], dict | None]:
    """Per (panel, contrast) of the relations about panel members: the panel's index between the contrast's groups
    (Mann-Whitney); and the record of the hypothesis's lead protein when its panel differs (else None)."""
    from scipy import stats

    cont = (quality or {}).get("contamination") or {}
    index = pd.DataFrame.from_dict(cont.get("index") or {}, orient="index")
    panel_of = {g: p for p, genes in (cont.get("members") or {}).items() for g in genes}
    found: dict[tuple[str, tuple], dict[str, Any]] = {}
    lead = None
    proteins = [r for r in relations if r.subject.type in ("protein", "gene") and r.modality == cont.get("modality")]
    for r in proteins:
        gene = r.subject.label.split(";")[0].strip()
        key = evidence_contrast(r)
        if gene not in panel_of or key is None or key[0] not in study.clinical:
            continue
        group, cases, controls = key
        panel = panel_of[gene]
        if (panel, key) not in found:
            g = study.clinical[group].astype(str).reindex(index.index)
            a, b = index.loc[g.isin(cases).to_numpy(), panel].dropna(), index.loc[g.isin(controls).to_numpy(), panel].dropna()
            if min(len(a), len(b)) < 2:
                continue
            p = float(stats.mannwhitneyu(a, b).pvalue)
            found[(panel, key)] = {"kind": "sample contamination", "panel": panel, "matrix": cont.get("matrix"),
                                   "contrast": f"{group}: {', '.join(cases)} vs {', '.join(controls)}", "features": [],
                                   "test": "Mann-Whitney", "p": p, "effect": round(float(a.mean() - b.mean()), 4),
                                   "effect_name": "difference in mean index (case - control)", "n": len(a) + len(b),
                                   "decision": "differs" if p < _ALPHA else "does not differ"}
        rec = found[(panel, key)]
        rec["features"] = list(dict.fromkeys([*rec["features"], gene]))
        if r is proteins[0] and rec["decision"] == "differs" and r is relations[0]:
            lead = rec | {"lead": gene}
    return list(found.values()), lead


def _reasons(quality: dict[str, Any] | None, samples: list[str]) -> str:
    out = []
    for layer in ((quality or {}).get("layers") or {}).values():
        out += [o["reason"] for o in layer.get("outliers", []) if o["sample"] in samples and o["reason"] not in out]
    return "; ".join(out)[:300]

