"""Differential abundance on the real UPS1-in-yeast spike-in (Ramus et al. 2016, MaxQuant LFQ).

The folder comes from the shared dataset store (``datasets.shared_dataset_dir``); tests skip
without it. Truth (UPS1 = changed, yeast = unchanged) is read from the folder's ``truth.json``.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from proteus.datasets import shared_dataset_dir
from proteus.io import load_study

UPS1 = "ramus2016-ups1-maxquant"


@pytest.fixture(scope="module")
def ups_dir():
    d = shared_dataset_dir(UPS1)
    if d is None:
        pytest.skip(f"shared dataset {UPS1} absent")
    return d


@pytest.fixture(scope="module")
def ups_study(ups_dir, tmp_path_factory):
    """The primary contrast's folder alone (the sub-folders are separate MaxQuant runs)."""
    dest = tmp_path_factory.mktemp("ups1")
    for f in ("proteinGroups.txt", "samples.tsv"):
        (dest / f).write_bytes((ups_dir / f).read_bytes())
    return load_study(dest)


def test_maxquant_peptide_counts_kept(ups_dir, ups_study):
    raw = pd.read_csv(ups_dir / "proteinGroups.txt", sep="\t")
    a = ups_study.modalities["proteomics"]
    want = raw.set_index("Protein IDs")["Razor + unique peptides"]
    got = a.var.set_index("protein_ids")["n_peptides"]
    assert np.array_equal(got.to_numpy(), want.loc[got.index].to_numpy())
    assert got.min() >= 1


def _copy(src, dest):
    for f in ("proteinGroups.txt", "samples.tsv"):
        (dest / f).write_bytes((src / f).read_bytes())
    return load_study(dest)


def test_one_group_detected_proteins_are_tested_and_reported(ups_dir, tmp_path):
    """50 vs 0.5 fmol: most UPS1 proteins are absent from every 0.5 fmol run. The default resolves to
    the censored model (label-free, abundance-dependent missingness) and tests them, reported as
    detected in one group only (detection patterns: no relation claims a fold change for them);
    limma on observed values must skip them."""
    from proteus.tools.registry import ToolContext, get_tool

    sub = ups_dir / "50vs0.5"
    truth = json.loads((sub / "truth.json").read_text())
    study = _copy(sub, tmp_path)
    a = study.modalities["proteomics"]
    base = {"modality": "proteomics", "group": "condition", "case": "ups_50fmol", "control": "ups_0.5fmol",
            "lfc": 0.0}  # the ordinary test (auto would test against 1.5-fold: repeat injections)
    tool = get_tool("differential_abundance")
    res = tool(study, base, ToolContext(out_dir=tmp_path, seed=0))
    assert res.metrics["method"] == "censored" and res.metrics["normalize"] == "vsn"
    assert any("depend on abundance" in r for r in res.metrics["choices"])
    t = res.tables["results"].merge(a.var[["protein_ids"]], left_on="feature", right_index=True)
    # which proteins are absent from the control runs, computed from the raw table
    raw = pd.read_csv(sub / "proteinGroups.txt", sep="\t").set_index("Protein IDs")
    ctrl = [c for c in raw.columns if c.startswith("LFQ intensity ") and "0.5fmol" in c]
    absent = set(raw.index[(raw[ctrl].fillna(0) == 0).all(axis=1)])
    only = t[t["detection"] == "only in ups_50fmol"]
    assert set(only["protein_ids"]) == absent & set(t["protein_ids"])
    case_cols = [c for c in raw.columns if c.startswith("LFQ intensity ") and "50fmol" in c]
    absent_case = set(raw.index[(raw[case_cols].fillna(0) == 0).all(axis=1)]) & set(t["protein_ids"])
    assert res.metrics["n_detected_only_case"] == len(only)
    assert res.metrics["n_detected_only_control"] == len(absent_case) == (t["detection"] == "only in ups_0.5fmol").sum()
    ups_only = only[only["protein_ids"].isin(truth["true_positive_ids"])]
    assert len(ups_only) >= 25  # the README counts 31 UPS1 proteins absent at 0.5 fmol
    assert (ups_only["q"] < 0.05).mean() > 0.9 and (ups_only["logFC"] > 0).all()
    assert f"{len(only)} in ups_50fmol" in res.summary
    # seen in no 0.5 fmol run: a detection pattern (Fisher's test on the detected counts), not a measured fold change
    assert not {r.stats.extra["feature_id"] for r in res.relations} & set(only["feature"])
    assert res.relations and all(min(k for k, _ in r.stats.observed.values()) >= 2 for r in res.relations)
    assert (only["detection_p"] > 0).all() and "detection pattern" in res.summary
    # limma on observed values cannot test them: fewer than 2 values in the control group
    lim = tool(study, base | {"method": "limma"}, ToolContext(out_dir=tmp_path, seed=0))
    assert not set(only["feature"]) & set(lim.tables["results"]["feature"])
    assert set(only["feature"]) <= set(lim.tables["skipped"]["feature"])
    assert "detection" not in lim.tables["results"]


def test_same_symbol_proteins_of_two_organisms_are_two_genes(ups_dir, tmp_path):
    """50 vs 5 fmol: the FASTA headers name each group's organism (UniProt ``OS=`` for the background,
    a tagged entry name such as ``XXXX_HUMAN_UPS`` for the spike-in). A spike-in protein whose symbol a
    background group also has is its own gene, labelled with its organism; so every spike-in protein
    measured in both groups and significant is a relation (the more observed background group of the
    same symbol no longer speaks for it)."""
    from proteus.stats.features import canonical_features, feature_labels
    from proteus.tools.registry import ToolContext, get_tool

    sub = ups_dir / "50vs5"
    truth = json.loads((sub / "truth.json").read_text())
    study = _copy(sub, tmp_path)
    a = study.modalities["proteomics"]
    tp, tn = a.var["protein_ids"].isin(truth["true_positive_ids"]), a.var["protein_ids"].isin(truth["true_negative_ids"])
    org, symbol = a.var["organism"].where(a.var["organism"] != ""), a.var["gene"]  # "": the header names none
    spike = org[tp].dropna().unique()
    assert org[tn].unique().tolist() == [a.uns["organism"]]  # the background: one organism, the layer's
    assert len(spike) == 1 and spike[0] != a.uns["organism"] and org[tp].notna().sum() >= tp.sum() - 2
    shared = tp & symbol.notna() & symbol.isin(symbol[tn])
    assert shared.sum() >= 2  # the data hold spike-in proteins with a background group's symbol
    labels, canon = feature_labels(a), canonical_features(a)
    assert (labels[shared] == symbol[shared] + f" ({spike[0]})").all() and canon[shared].all()
    one_organism = symbol.notna() & canon & ~shared & ~(tn & symbol.isin(symbol[shared]))
    assert (labels[one_organism] == symbol[one_organism]).all()  # the organism is shown only where a symbol is shared
    res = get_tool("differential_abundance")(study, {"modality": "proteomics", "group": "condition", "case": "ups_50fmol",
                                                     "control": "ups_5fmol", "fdr": (fdr := 0.05)}, ToolContext(out_dir=tmp_path, seed=0))
    t = res.tables["results"].merge(a.var[["protein_ids"]], left_on="feature", right_index=True)
    claimable = t[t["protein_ids"].isin(truth["true_positive_ids"]) & (t[["n_case", "n_control"]].min(axis=1) >= 2)
                  & (t["q"] < fdr)]
    related = {r.stats.extra["feature_id"] for r in res.relations}
    assert set(claimable["feature"]) <= related
    assert set(claimable["feature"]) & set(a.var_names[shared])  # including those sharing a background symbol
    labelled = {r.subject.label for r in res.relations if r.stats.extra["feature_id"] in set(a.var_names[shared])}
    assert all(lab.endswith(f"({spike[0]})") for lab in labelled)


def _rscript(code: str, tmp_path, **tables) -> pd.DataFrame:
    """Run R ``code`` with each DataFrame written to ``<name>.tsv``; it writes ``out.tsv``."""
    if shutil.which("Rscript") is None or subprocess.run(
            ["Rscript", "-e", "suppressMessages(library(limma))"], capture_output=True).returncode != 0:
        pytest.skip("Rscript with limma not installed")
    for k, v in tables.items():
        v.to_csv(tmp_path / f"{k}.tsv", sep="\t", na_rep="NA")
    (tmp_path / "run.R").write_text(f'setwd("{tmp_path}")\nsuppressMessages(library(limma))\n{code}')
    r = subprocess.run(["Rscript", str(tmp_path / "run.R")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return pd.read_csv(tmp_path / "out.tsv", sep="\t", index_col=0)


def _complete_ups(ups_study):
    """The UPS1 study restricted to protein groups measured in every sample, without peptide counts."""
    from proteus.study import Study

    a = ups_study.modalities["proteomics"]
    a = a[:, np.isfinite(np.asarray(a.X)).all(axis=0)].copy()
    del a.var["n_peptides"]
    return Study(root=ups_study.root, modalities={"proteomics": a}, clinical=ups_study.clinical)


def _r_limma_fit(study, fit: str, tmp_path) -> pd.DataFrame:
    """R limma's t and p of ``fit`` (an R expression of ``y``, the log matrix, and ``g``, 1 for
    ups_25fmol) on ``study``'s proteomics layer."""
    a = study.modalities["proteomics"]
    case = (study.sample_table("proteomics")["condition"] == "ups_25fmol").astype(int)
    return _rscript("y <- as.matrix(read.delim('y.tsv', row.names = 1, check.names = FALSE))\n"
                    "g <- read.delim('g.tsv', row.names = 1)[colnames(y), 1]\n"
                    f"fit <- {fit}\n"
                    "write.table(data.frame(t = fit$t[, 1], p = fit$p.value[, 1]), 'out.tsv', sep = '\\t', quote = FALSE)",
                    tmp_path, y=pd.DataFrame(np.asarray(a.X).T, index=a.var_names, columns=a.obs_names),
                    g=case.to_frame("case"))


def test_without_missing_values_or_counts_the_result_is_r_limma(ups_study, tmp_path):
    """Complete UPS1 protein groups, no peptide counts: 'auto' and 'censored' both give R limma's
    moderated t exactly. R: ``fit <- eBayes(lmFit(y, cbind(1, case))[, 2]); fit$t; fit$p.value``."""
    from proteus.tools.registry import ToolContext, get_tool

    study = _complete_ups(ups_study)
    r = _r_limma_fit(study, "eBayes(lmFit(y, cbind(1, g))[, 2])", tmp_path)
    base = {"modality": "proteomics", "group": "condition", "case": "ups_25fmol", "control": "ups_12.5fmol",
            "normalize": "none", "lfc": 0.0}
    for extra in ({}, {"method": "censored"}):
        res = get_tool("differential_abundance")(study, base | extra, ToolContext(out_dir=tmp_path, seed=0))
        assert res.metrics["method"] == "limma" and res.metrics["variance_prior"] == "constant"
        t = res.tables["results"].set_index("feature")
        np.testing.assert_allclose(t["t"], r.loc[t.index, "t"], rtol=1e-8)
        np.testing.assert_allclose(t["p"], r.loc[t.index, "p"], rtol=1e-6)


def test_censored_model_keeps_limma_for_complete_features(ups_study, tmp_path):
    """With missing values present, complete features keep limma's t; the others get finite tests."""
    from proteus.stats.limma import ebayes, lm_fit
    from proteus.tools.registry import ToolContext, get_tool

    base = {"modality": "proteomics", "group": "condition", "case": "ups_25fmol", "control": "ups_12.5fmol",
            "normalize": "none", "variance_prior": "constant", "method": "censored", "lfc": 0.0}
    res = get_tool("differential_abundance")(ups_study, base, ToolContext(out_dir=tmp_path, seed=0))
    t = res.tables["results"].set_index("feature")
    a = ups_study.modalities["proteomics"]
    Y = pd.DataFrame(np.asarray(a.X).T, index=a.var_names)
    case = (ups_study.sample_table("proteomics")["condition"] == "ups_25fmol").to_numpy(float)
    eb = ebayes(lm_fit(Y.loc[t.index].to_numpy(), np.column_stack([np.ones(6), case])).subset([1]))
    complete = (t["n_case"] == 3) & (t["n_control"] == 3)
    np.testing.assert_allclose(t.loc[complete, "t"], eb.t[complete.to_numpy(), 0], rtol=1e-10)
    assert np.isfinite(t.loc[~complete, ["t", "p", "logFC"]].to_numpy()).all() and (~complete).sum() > 20


def test_dropout_curves_on_real_runs(ups_study):
    """The shallowest run (most missing values) loses half its values at the highest intensity;
    missingness falls with abundance (negative probit slope)."""
    from proteus.stats.censored import fit_dropout_curves

    a = ups_study.modalities["proteomics"]
    Y = np.asarray(a.X, dtype=float).T
    case = (ups_study.sample_table("proteomics")["condition"] == "ups_25fmol").to_numpy()
    curves = fit_dropout_curves(Y, case)
    n_missing = np.isnan(Y).sum(0)
    assert np.argmax(curves.rho) == np.argmax(n_missing)
    assert curves.slope_z < -5 and np.all(curves.scale > 0)
    assert np.all(curves.rho < np.nanmedian(Y))  # half-detection below the typical intensity


DEQMS_R = """
d <- read.delim('v.tsv', row.names = 1)
ok <- d$df > 0
logVAR <- log(d$sigma2[ok]); df <- d$df[ok]; x <- log2(pmax(d$count[ok], 1))
y.pred <- fitted(loess(logVAR ~ x, span = 0.75, control = loess.control(surface = 'direct')))
eg <- logVAR - digamma(df / 2) + log(df / 2)
egpred <- y.pred - digamma(df / 2) + log(df / 2)
d0 <- 2 * trigammaInverse(mean((eg - egpred)^2 - trigamma(df / 2)))
s02 <- exp(egpred + digamma(d0 / 2) - log(d0 / 2))
post <- (d0 * s02 + df * d$sigma2[ok]) / (d0 + df)
write.table(data.frame(row.names = rownames(d)[ok], post = post, prior = s02, d0 = d0), 'out.tsv', sep = '\\t',
            quote = FALSE)
"""


def test_deqms_prior_matches_published_formula_in_r(ups_study, tmp_path):
    """DEqMS ``spectraCounteBayes`` (Zhu et al. 2020) on the UPS1 fits and their MaxQuant peptide counts,
    computed in R by the published formula (loess of log variance on log2 count, span 0.75; d0 from
    the trigamma equation, solved exactly with limma's trigammaInverse instead of DEqMS' 0.1 grid)."""
    from proteus.stats.deqms import count_variance_prior
    from proteus.stats.limma import lm_fit

    a = ups_study.modalities["proteomics"]
    case = (ups_study.sample_table("proteomics")["condition"] == "ups_25fmol").to_numpy(float)
    fit = lm_fit(np.asarray(a.X, dtype=float).T, np.column_stack([np.ones(6), case]))
    counts = a.var["n_peptides"].to_numpy(float)
    post, prior, d0 = count_variance_prior(fit.sigma**2, fit.df_residual, counts)
    v = pd.DataFrame({"sigma2": fit.sigma**2, "df": fit.df_residual, "count": counts}, index=a.var_names)
    r = _rscript(DEQMS_R, tmp_path, v=v)
    ok = fit.df_residual > 0
    assert d0 == pytest.approx(r["d0"].iloc[0], rel=1e-6)
    np.testing.assert_allclose(post[ok], r["post"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(prior[ok], r["prior"].to_numpy(), rtol=1e-6)
    # fewer peptides, larger prior variance (the reason for the method)
    assert prior[counts == 1].mean() > prior[counts >= 10].mean()


def test_vsn_like_normalisation_on_real_intensities(ups_study):
    """Generalised log of the UPS1 LFQ intensities: log2 far above the additive-noise level c, compressed
    below it, samples median-centred, and less dependence of the spread on abundance than plain log2."""
    from proteus.tools.qc import normalize_layer

    a = ups_study.modalities["proteomics"]
    v = normalize_layer(a, method="vsn")
    c = v.uns["normalization"]["glog_c"]
    X, V = np.asarray(a.X, dtype=float), np.asarray(v.X, dtype=float)
    assert c > 0 and np.ptp(np.nanmedian(V, axis=1)) < 1e-9
    high, low = np.exp2(X) > 20 * c, np.exp2(X) < c
    assert high.mean() > 0.2 and low.any()
    for j in range(X.shape[0]):  # log2 plus one centring offset per sample far above c, compressed below
        d = (V - X)[j]
        assert np.ptp(d[high[j]]) < 0.01
        assert (d[low[j]] > d[high[j]].max()).all()
    # spread vs abundance: SD ratio of the lowest to the highest abundance quintile shrinks
    def sd_ratio(M):
        ok = np.isfinite(M).all(0)
        mean, sd = M[:, ok].mean(0), M[:, ok].std(0, ddof=1)
        q = np.quantile(mean, [0.2, 0.8])
        return np.median(sd[mean < q[0]]) / np.median(sd[mean > q[1]])
    assert sd_ratio(V) < sd_ratio(X)


def test_plain_log2_matrix_gets_the_same_choices(ups_study, tmp_path):
    """The same UPS1 values handed over as an already-log2 plain matrix (no MaxQuant columns, no peptide
    counts): the reader marks them log2 intensities and 'auto' picks the same normalisation and model."""
    from proteus.tools.registry import ToolContext, get_tool

    a = ups_study.modalities["proteomics"]
    pd.DataFrame(np.asarray(a.X).T, index=pd.Index(a.var_names, name="protein"), columns=a.obs_names).to_csv(
        tmp_path / "proteins.tsv", sep="\t", na_rep="NA")
    ups_study.sample_table("proteomics")[["condition"]].rename_axis("sample").to_csv(tmp_path / "samples.tsv", sep="\t")
    study = load_study(tmp_path)
    (name,) = study.modalities
    assert study.modalities[name].uns["scale"] == "log2" and study.modalities[name].uns["transform"] == "none"
    res = get_tool("differential_abundance")(
        study, {"modality": name, "group": "condition", "case": "ups_25fmol", "control": "ups_12.5fmol"},
        ToolContext(out_dir=tmp_path, seed=0))
    assert res.metrics["normalize"] == "vsn" and res.metrics["method"] == "censored"
    assert res.metrics["variance_prior"] == "constant"


def test_censored_model_is_calibrated_on_a_real_null(nafld_dir, tmp_path):
    """A null on real label-free data: the healthy donors of the NAFLD plasma cohort (MaxQuant, ~59 %
    missing) split at random into two halves. The censored model must not find differences: p < 0.05
    for about 5 % of the features with missing values, features detected in one half only no more
    often, and nothing at q < 0.05. (Counting each dropout of a group without values as independent
    evidence gave 31-58 % of one-half-only features p < 0.05 here.)"""
    from proteus.io import load_study
    from proteus.tools.registry import ToolContext, get_tool

    study = load_study(nafld_dir)
    tool = get_tool("differential_abundance")
    a = study.modalities["proteomics"]
    healthy = [s for s in study.clinical.index[study.clinical["disease"] == "healthy"] if s in set(a.obs_names)]
    assert len(healthy) >= 8
    frac_missing, frac_one_side, n_one_side = [], [], 0
    for seed in range(4):
        half = set(np.random.default_rng(seed).permutation(healthy)[: len(healthy) // 2])
        sub = study.subset_samples(healthy)
        sub.clinical = sub.clinical.assign(split=["A" if s in half else "B" for s in sub.clinical.index])
        res = tool(sub, {"modality": "proteomics", "group": "split", "case": "A", "control": "B"},
                   ToolContext(out_dir=tmp_path, seed=0))
        assert res.metrics["method"] == "censored"
        t = res.tables["results"]
        incomplete = (t["n_case"] + t["n_control"]) < len(healthy)
        one_side = t["detection"] != "both"
        assert incomplete.sum() > 200 and one_side.sum() > 20
        frac_missing.append((t.loc[incomplete, "p"] < 0.05).mean())
        frac_one_side.append((t.loc[one_side, "p"] < 0.05).mean())
        n_one_side += int(one_side.sum())
        assert (t["q"] < 0.05).sum() == 0
    assert np.mean(frac_missing) < 0.09, frac_missing
    assert np.mean(frac_one_side) < 0.10, (frac_one_side, n_one_side)


def test_benchmark_sets_contaminant_and_mixed_species_groups_apart(ups_dir):
    """The spike-in benchmark classifies protein groups by all their members: on every UPS1 set the
    ambiguous groups are exactly those MaxQuant flags as contaminant or decoy (read from the table,
    not the truth file), the rest split into changing and null as the truth lists them, and a group
    joining a spiked and a background accession is ambiguous too."""
    from proteus.evals.bench_spikein import classify_groups, spikein_folders

    for folder in spikein_folders(ups_dir):
        truth = json.loads((folder / "truth.json").read_text())
        changing, null, ambiguous = classify_groups(truth)
        raw = pd.read_csv(folder / "proteinGroups.txt", sep="\t").set_index("Protein IDs")
        flagged = raw.index[(raw["Potential contaminant"] == "+") | raw.index.str.contains("REV__")]
        assert ambiguous == set(flagged) and ambiguous
        assert changing == set(truth["true_positive_ids"]) - ambiguous
        assert null == set(truth["true_negative_ids"]) - ambiguous
        mixed = f"{sorted(changing)[0]};{sorted(null)[0]}"
        assert mixed in classify_groups(truth | {"excluded_ids": [mixed]})[2]


def test_treat_threshold_is_r_limma_treat_and_extends_to_the_censored_model(ups_study, tmp_path):
    """lfc > 0 (asked for explicitly) tests |log2FC| > lfc: on complete UPS1 groups it is R limma's
    ``treat`` number for number; with missing values the censored model's TREAT p is never below its
    ordinary p, agrees with limma's treat on complete features, and a threshold above a feature's
    fold change leaves t = 0."""
    from proteus.tools.registry import ToolContext, get_tool

    tool = get_tool("differential_abundance")
    base = {"modality": "proteomics", "group": "condition", "case": "ups_25fmol", "control": "ups_12.5fmol",
            "normalize": "none", "variance_prior": "constant", "lfc": 0.0}
    study = _complete_ups(ups_study)
    r = _r_limma_fit(study, "treat(lmFit(y, cbind(1, g))[, 2], lfc = 0.5)", tmp_path)
    res = tool(study, base | {"method": "limma", "lfc": 0.5}, ToolContext(out_dir=tmp_path, seed=0))
    t = res.tables["results"].set_index("feature")
    np.testing.assert_allclose(t["p"], r.loc[t.index, "p"], rtol=1e-6)
    np.testing.assert_allclose(t["t"], r.loc[t.index, "t"], rtol=1e-8, atol=1e-12)
    assert (t["t"] == 0).any() and "TREAT" in res.summary

    plain_res = tool(ups_study, base | {"method": "censored"}, ToolContext(out_dir=tmp_path, seed=0))
    plain = plain_res.tables["results"]
    treat = tool(ups_study, base | {"method": "censored", "lfc": 0.5}, ToolContext(out_dir=tmp_path, seed=0))
    both = plain.set_index("feature").join(treat.tables["results"].set_index("feature"), rsuffix="_treat")
    assert (both["p_treat"] >= both["p"] - 1e-12).all()
    incomplete = (both["n_case"] < 3) | (both["n_control"] < 3)
    assert incomplete.sum() > 20 and (both.loc[incomplete, "p_treat"] > both.loc[incomplete, "p"]).mean() > 0.9
    inside = both["logFC"].abs() < 0.5
    assert (both.loc[inside, "t_treat"] == 0).all() and inside.sum() > 100
    # complete features: limma's treat from the same fit (se = logFC / t, df = prior df + 4 residual df)
    from scipy import stats

    c = both.loc[~incomplete]
    se, df = c["logFC"] / c["t"], plain_res.metrics["df_prior"] + 4
    expected = stats.t.sf((c["logFC"].abs() - 0.5) / se.abs(), df) + stats.t.sf((c["logFC"].abs() + 0.5) / se.abs(), df)
    np.testing.assert_allclose(c["p_treat"], expected, rtol=1e-6)


def test_auto_threshold_for_repeat_measurements_of_one_sample(ups_dir, ups_study, nafld_dir, tmp_path):
    """lfc='auto': each UPS1 condition is one sample injected three times (within-group CV about 7 %), so the
    test is against a 1.5-fold change and says why; the NAFLD plasma donors are independent samples (CV about
    50 %), so it is the ordinary test, exactly the table of lfc=0 (the rule off). The case-vs-rest table
    honours the same threshold: with two conditions it is limma's treat of the two-group test."""
    from proteus.stats.contrasts import ContrastTest
    from proteus.stats.replicates import TECHNICAL_CV, cv_to_log2_sd, within_group_sd
    from proteus.tools.differential import differential_table
    from proteus.tools.registry import ToolContext, get_tool

    tool = get_tool("differential_abundance")
    treat = float(np.log2(1.5))
    base = {"modality": "proteomics", "group": "condition", "case": "ups_25fmol", "control": "ups_12.5fmol"}
    auto = tool(ups_study, base, ToolContext(out_dir=tmp_path, seed=0))
    assert auto.metrics["lfc"] == pytest.approx(treat)
    assert any("repeat measurements of one sample" in r for r in auto.metrics["choices"])
    assert "1.5-fold threshold" in auto.summary and "TREAT" in auto.summary
    explicit = tool(ups_study, base | {"lfc": treat}, ToolContext(out_dir=tmp_path, seed=0))
    pd.testing.assert_frame_equal(auto.tables["results"], explicit.tables["results"])
    off = tool(ups_study, base | {"lfc": 0.0}, ToolContext(out_dir=tmp_path, seed=0))
    assert off.metrics["lfc"] == 0 and not any("fold" in r for r in off.metrics["choices"])
    assert (auto.tables["results"]["q"] < 0.05).sum() < (off.tables["results"]["q"] < 0.05).sum()

    study = load_study(nafld_dir)
    a = study.modalities["proteomics"]
    bio = {"modality": "proteomics", "group": "disease", "case": "liver cirrhosis", "control": "healthy"}
    res = tool(study, bio, ToolContext(out_dir=tmp_path, seed=0))
    assert res.metrics["lfc"] == 0 and any("independent samples" in r for r in res.metrics["choices"])
    rule_off = tool(study, bio | {"lfc": 0.0}, ToolContext(out_dir=tmp_path, seed=0))
    pd.testing.assert_frame_equal(res.tables["results"], rule_off.tables["results"])
    # the spread the rule reads, on the raw intensities: repeat injections well below the cut, donors far above
    cut = cv_to_log2_sd(TECHNICAL_CV)
    g = study.sample_table("proteomics")["disease"].astype(str).to_numpy()
    keep = np.isin(g, ["liver cirrhosis", "healthy"])
    assert within_group_sd(np.asarray(a.X, float)[keep].T, g[keep])[0] > 2 * cut
    u = ups_study.modalities["proteomics"]
    assert within_group_sd(np.asarray(u.X, float).T, ups_study.sample_table("proteomics")["condition"].to_numpy())[0] < cut

    # every UPS1 set, also 50 vs 0.5 fmol, where one run misses 160 proteins: centred on its own median
    # that run sat 0.38 log2 off and its group's SD read as CV 18 %, hiding the design
    for sub, case, control in (("50vs5", "ups_50fmol", "ups_5fmol"), ("50vs0.5", "ups_50fmol", "ups_0.5fmol")):
        (tmp_path / sub).mkdir()
        s = _copy(ups_dir / sub, tmp_path / sub)
        r = tool(s, {"modality": "proteomics", "group": "condition", "case": case, "control": control},
                 ToolContext(out_dir=tmp_path, seed=0))
        assert r.metrics["lfc"] == pytest.approx(treat), (sub, r.metrics["choices"])

    rest = differential_table(ups_study, ContrastTest(**{**base, "control": None}), seed=0)
    assert "TREAT" in rest.method and rest.details["lfc"] == pytest.approx(treat)
    two = tool(ups_study, base | {"method": "limma", "normalize": "none", "variance_prior": "constant", "lfc": treat},
               ToolContext(out_dir=tmp_path, seed=0)).tables["results"].set_index("feature")
    r = rest.table.set_index("feature").loc[two.index]
    np.testing.assert_allclose(r["p"], two["p"], rtol=1e-10)
    np.testing.assert_allclose(r["t"], two["t"], rtol=1e-10, atol=1e-12)
    plain = differential_table(ups_study, ContrastTest(**{**base, "control": None, "lfc": 0.0}), seed=0)
    assert "TREAT" not in plain.method and (plain.table["q"] < 0.05).sum() > (rest.table["q"] < 0.05).sum()
