"""``ToolContext(figures=False)`` (``proteus tools run --no-figures``): every tool family draws nothing and
returns the same tables, relations, metrics and summary as the call that draws, on the UCEC study."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from proteus.study import Study
from proteus.tools.registry import ToolContext, get_tool


def _calls(study: Study) -> list[tuple[str, dict]]:
    """One call per figure-drawing family, its arguments read from the study: a two-level clinical
    column with at least 20 samples per level, and a numeric one."""
    clin = study.clinical
    group = next(c for c in clin.columns if clin[c].nunique() == 2 and clin[c].value_counts().min() >= 20)
    case = sorted(map(str, clin[group].dropna().unique()))[0]
    numeric = next(c for c in clin.columns if pd.api.types.is_numeric_dtype(clin[c]) and clin[c].nunique() > 20)
    prot, rna, cna = "proteomics", "transcriptomics", "cna"
    return [
        ("missingness_report", {"modality": prot}),
        ("filter_valid_values", {"modality": prot}),
        ("normalize", {"modality": prot}),
        ("impute", {"modality": prot}),
        ("pca_qc", {"modality": prot}),
        ("clinical_correlation", {"modality": prot, "variable": numeric}),
        ("mrna_protein_concordance", {"modality": prot, "other_modality": rna}),
        ("cna_cis_effect", {"modality": cna}),
        ("coabundance_modules", {"modality": prot}),
        ("mutation_cis_effect", {}),
        ("mutation_association", {"modality": prot}),
        ("enrichment_ora", {"modality": prot, "group": group, "case": case}),
        ("ppi_network", {"modality": prot, "group": group, "case": case}),
    ]


def test_every_family_draws_nothing_with_figures_off_and_returns_the_same_result(ucec_study, tmp_path):
    failed = []
    for name, params in _calls(ucec_study):
        res = {}
        for draw in (True, False):
            study = Study(ucec_study.root, dict(ucec_study.modalities), ucec_study.clinical, ucec_study.mutations)
            res[draw] = get_tool(name)(study, dict(params), ToolContext(out_dir=tmp_path / name / str(draw), seed=3, figures=draw))
        on, off = res[True], res[False]
        assert on.figures and all(Path(f).is_file() for f in on.figures), name
        assert off.figures == [] and not (tmp_path / name / "False" / "figures").exists(), name
        assert on.tables.keys() == off.tables.keys(), name
        for k in on.tables:
            pd.testing.assert_frame_equal(on.tables[k], off.tables[k], obj=f"{name}.{k}")
        if not (on.relations == off.relations and on.metrics == off.metrics and on.summary == off.summary):
            failed.append(name)
    assert failed == []


def test_qc_module_imports_neither_matplotlib_nor_scipy_stats():
    """differential_abundance normalises label-free data through ``qc.normalize_layer``: importing qc in a
    fresh process pulls in neither the plotting library nor scipy.stats (median / VSN need neither)."""
    import json
    import subprocess
    import sys

    code = "import json, sys\nimport proteus.tools.qc\nprint(json.dumps(sorted(sys.modules)))"
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout))
    assert "proteus.tools.qc" in loaded
    assert [m for m in ("matplotlib", "scipy.stats") if m in loaded] == []
