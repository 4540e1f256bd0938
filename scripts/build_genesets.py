"""Rebuild the gene-set libraries, identifier map and BioPlex edges shipped in ``proteus/genesets/``.

Run from the repository root::

    python scripts/build_genesets.py [--orgdb PATH] [--godb PATH] [--cptac-wheel PATH]

Sources (all read offline; see ``proteus/genesets/SOURCES.json`` for versions and licences):

- Reactome (CC0): ``binn`` package data ``uniprot_2_reactome_*.txt`` (UniProt -> lowest-level
  pathway), ``reactome_pathways_relation_*.txt`` (hierarchy) and ``reactome_pathways_names_*.txt``.
  Genes are propagated from each pathway to all its ancestors (as Reactome's "all levels" files do).
- WikiPathways (CC0): ``cptac`` 1.5.14 wheel, ``cptac/utils/data/WikiPathwaysDataframe.tsv.gz``.
- GO biological process (CC BY 4.0): Bioconductor ``org.Hs.eg.db`` 3.16 table ``go_bp_all``
  (annotations propagated along is_a / part_of), term names from ``GO.db`` 3.16; evidence ND dropped;
  terms with 10-500 genes kept.
- Identifier map: ``org.Hs.eg.db`` (Entrez gene info, UniProt, Ensembl gene/protein, alias symbols)
  plus the UniProt -> symbol pairs of BioPlex.
- BioPlex 3.0 HEK293T network (Huttlin et al. 2021): ``cptac`` 1.5.14 wheel,
  ``BioPlex_293T_Network_10K_Dec_2019.tsv.gz``; symbol pairs with pInt.
- Gene loci: ``org.Hs.eg.db`` tables ``chromosome_locations`` (GRCh38 positions from UCSC, start signed by
  strand) and ``cytogenetic_locations`` (NCBI Gene map location); one row per symbol, chromosomes 1-22, X, Y.
  ``--loci-only`` rebuilds this table alone (needs only ``--orgdb``).

Get the Bioconductor files with ``apt-get download r-bioc-org.hs.eg.db r-bioc-go.db`` and
``dpkg-deb -x <deb> <dir>``; the cptac wheel with ``pip download cptac==1.5.14 --no-deps``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sqlite3
import zipfile
from collections import defaultdict
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "proteus" / "genesets"
DEB = Path("/tmp/debs/ext/usr/lib/R/site-library")


SOURCES = {
    "reactome.json.gz": {
        "source": "Reactome (https://reactome.org), UniProt2Reactome + pathway hierarchy, 2025-01 release "
        "as shipped in the binn 0.1.1 package; genes propagated to ancestor pathways",
        "licence": "CC0 1.0 (Reactome licence page: annotation and identifier-mapping files are CC0)",
        "citation": "Milacic M, et al. The Reactome Pathway Knowledgebase 2024. Nucleic Acids Res 2024;52:D672-D678. "
        "doi:10.1093/nar/gkad1025",
    },
    "wikipathways.json.gz": {
        "source": "WikiPathways human pathways as shipped in cptac 1.5.14 (cptac/utils/data/WikiPathwaysDataframe.tsv.gz)",
        "licence": "CC0 1.0 (WikiPathways data releases are CC0)",
        "citation": "Agrawal A, et al. WikiPathways 2024: next generation pathway database. Nucleic Acids Res "
        "2024;52:D679-D689. doi:10.1093/nar/gkad960",
    },
    "go_bp.json.gz": {
        "source": "Gene Ontology biological process annotations (go-basic 2022-07-01, NCBI gene2go 2022-09-12) "
        "via Bioconductor org.Hs.eg.db 3.16 (table go_bp_all: propagated along is_a/part_of) and GO.db 3.16 "
        "term names; evidence ND dropped; terms with 10-500 genes",
        "licence": "CC BY 4.0 (Gene Ontology Consortium); the Bioconductor packages are Artistic-2.0, "
        "only the data facts are used",
        "citation": "Gene Ontology Consortium. The Gene Ontology knowledgebase in 2023. Genetics 2023;224:iyad031. "
        "doi:10.1093/genetics/iyad031; Ashburner M, et al. Nat Genet 2000;25:25-29",
    },
    "idmap.tsv.gz": {
        "source": "NCBI Gene (Entrez ids, symbols, aliases), UniProt and Ensembl cross-references via "
        "org.Hs.eg.db 3.16 (sources dated 2022-09), plus UniProt->symbol pairs from BioPlex",
        "licence": "NCBI Gene: public domain (US government work); UniProt: CC BY 4.0; Ensembl: no restrictions",
        "citation": "Carlson M. org.Hs.eg.db: Genome wide annotation for Human. R package 3.16.0",
    },
    "bioplex.tsv.gz": {
        "source": "BioPlex 3.0 HEK293T network (BioPlex_293T_Network_10K_Dec_2019) as shipped in cptac 1.5.14; "
        "undirected symbol pairs with the CompPASS-Plus interaction probability pInt",
        "licence": "No explicit licence on the file; published as an open-access resource by the Gygi/Harper labs "
        "(bioplex.hms.harvard.edu), redistributed by cptac (Apache-2.0) and by BioGRID (MIT). Cite the paper.",
        "citation": "Huttlin EL, et al. Dual proteome-scale networks reveal cell-specific remodeling of the human "
        "interactome. Cell 2021;184:3022-3040. doi:10.1016/j.cell.2021.04.011",
    },
    "gene_loci.tsv.gz": {
        "source": "NCBI Gene map locations (cytogenetic_locations) and UCSC GRCh38 gene positions (chromosome_locations, "
        "2022-08-31) via Bioconductor org.Hs.eg.db 3.16; one row per symbol (the span of its transcripts on the first primary "
        "chromosome it maps to: 1-22, X, Y), strand from the sign of the start",
        "licence": "NCBI Gene: public domain (US government work); UCSC gene positions: free for all uses; the Bioconductor "
        "package is Artistic-2.0, only the data facts are used",
        "citation": "Carlson M. org.Hs.eg.db: Genome wide annotation for Human. R package 3.16.0; Brown GR, et al. Gene: a "
        "gene-centered information resource at NCBI. Nucleic Acids Res 2015;43:D36-D42. doi:10.1093/nar/gku1055",
    },
    "not_shipped": "MSigDB gene sets (MSigDB licence) and KEGG (commercial licence) are deliberately not shipped, "
    "although pathsingle carries copies of both.",
}


def _binn_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("binn")
    if spec is None or spec.origin is None:
        msg = "the binn package (pip install binn --no-deps) provides the Reactome source files"
        raise SystemExit(msg)
    return Path(spec.origin).parent / "data" / "downloads"


def _write_json_gz(obj: dict, path: Path) -> None:
    data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as fh:
        fh.write(data)


def _write_tsv_gz(df: pd.DataFrame, path: Path) -> None:
    data = df.to_csv(sep="\t", index=False).encode()
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as fh:
        fh.write(data)


# --- identifier map ---------------------------------------------------------------------------


def build_idmap(orgdb: Path, bioplex: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows (id, kind, symbol) and the UniProt -> symbol dict used to translate Reactome."""
    con = sqlite3.connect(orgdb)
    sym = dict(con.execute("select g._id, i.symbol from genes g join gene_info i on g._id = i._id"))
    entrez = dict(con.execute("select _id, gene_id from genes"))
    rows: list[tuple[str, str, str]] = []
    for _id, gid in entrez.items():
        rows.append((gid, "entrez", sym[_id]))
    uniprot: dict[str, str] = {}
    # an accession of several genes (read-through loci) keeps the gene with the lowest OrgDb row
    for _id, acc in con.execute("select _id, uniprot_id from uniprot order by _id"):
        uniprot.setdefault(acc, sym[_id])
    # BioPlex adds accessions (including isoforms, stripped) the OrgDb lacks
    for a, s in list(zip(bioplex["UniprotA"], bioplex["SymbolA"])) + list(zip(bioplex["UniprotB"], bioplex["SymbolB"])):
        acc = str(a).split("-")[0]
        if acc and acc != "nan" and acc not in uniprot and isinstance(s, str):
            uniprot[acc] = s
    rows += [(acc, "uniprot", s) for acc, s in uniprot.items()]
    for table, col, kind in (("ensembl", "ensembl_id", "ensembl_gene"), ("ensembl_prot", "prot_id", "ensembl_protein")):
        seen: dict[str, str] = {}
        for _id, eid in con.execute(f"select _id, {col} from {table}"):  # noqa: S608 (fixed names)
            seen.setdefault(eid, sym[_id])
        rows += [(eid, kind, s) for eid, s in seen.items()]
    # alias -> official symbol, only where unambiguous and not itself an official symbol
    official = set(sym.values())
    alias: dict[str, set[str]] = defaultdict(set)
    for _id, a in con.execute("select _id, alias_symbol from alias"):
        alias[a.upper()].add(sym[_id])
    ptype = dict(con.execute("select _id, gene_type from genetype"))
    coding = {sym[i] for i, t in ptype.items() if t == "protein-coding"}
    for a, targets in alias.items():
        if len(targets) == 1 and a not in official:
            (t,) = targets
            if t in coding:
                rows.append((a, "alias", t))
    df = pd.DataFrame(rows, columns=["id", "kind", "symbol"]).drop_duplicates(["id", "kind"])
    return df.sort_values(["kind", "id"]).reset_index(drop=True), uniprot


# --- gene loci -------------------------------------------------------------------------------

PRIMARY = [str(i) for i in range(1, 23)] + ["X", "Y"]
"""Primary-assembly chromosomes, in order (alternate haplotypes, fix patches and the mitochondrion left out)."""


def build_gene_loci(orgdb: Path) -> pd.DataFrame:
    """One row per gene symbol: ``symbol, chromosome, start, end, strand, cytoband`` (1-based GRCh38, the span of
    the gene's transcripts on the first primary chromosome it maps to; pseudo-autosomal genes keep X)."""
    con = sqlite3.connect(orgdb)
    loc = pd.read_sql("select i.symbol, c.seqname as chromosome, c.start_location as s, c.end_location as e "
                      "from gene_info i join chromosome_locations c on c._id = i._id", con)
    loc = loc[loc["chromosome"].isin(PRIMARY)].copy()
    loc["strand"] = ["-" if s < 0 else "+" for s in loc["s"]]
    loc["start"] = loc[["s", "e"]].abs().min(axis=1)
    loc["end"] = loc[["s", "e"]].abs().max(axis=1)
    loc["order"] = loc["chromosome"].map(PRIMARY.index)
    first = loc.sort_values(["symbol", "order"]).drop_duplicates("symbol")[["symbol", "chromosome", "strand"]]
    loc = loc.merge(first, on=["symbol", "chromosome", "strand"])
    out = loc.groupby(["symbol", "chromosome", "strand"], as_index=False).agg(start=("start", "min"), end=("end", "max"))
    # the gene's most precise band on its chromosome's arms (a single band before a range); "" when none names an arm
    band = pd.read_sql("select i.symbol, c.cytogenetic_location as cytoband from gene_info i join cytogenetic_locations c on c._id = i._id", con)
    band = band.merge(out[["symbol", "chromosome"]], on="symbol")
    band = band[[b.startswith(c) and b[len(c):len(c) + 1] in ("p", "q") for b, c in zip(band["cytoband"], band["chromosome"])]]
    band = band.assign(rank=["-" in b for b in band["cytoband"]], n=-band["cytoband"].str.len())
    band = band.sort_values(["symbol", "rank", "n", "cytoband"]).drop_duplicates("symbol")[["symbol", "cytoband"]]
    out = out.merge(band, on="symbol", how="left").fillna({"cytoband": ""})
    out["order"] = out["chromosome"].map(PRIMARY.index)
    return out.sort_values(["order", "start", "symbol"])[["symbol", "chromosome", "start", "end", "strand", "cytoband"]].reset_index(drop=True)


# --- libraries --------------------------------------------------------------------------------


def build_reactome(binn_dir: Path, uniprot: dict[str, str]) -> tuple[dict, dict]:
    (mapping,) = binn_dir.glob("uniprot_2_reactome_*.txt")
    (relation,) = binn_dir.glob("reactome_pathways_relation_*.txt")
    (names_f,) = binn_dir.glob("reactome_pathways_names_*.txt")
    m = pd.read_csv(mapping, sep="\t", header=None, usecols=[0, 1, 5], names=["uniprot", "pathway", "species"])
    m = m[m["species"] == "Homo sapiens"]
    names = pd.read_csv(names_f, sep="\t", header=None, names=["id", "name", "species"])
    names = names[names["species"] == "Homo sapiens"].set_index("id")["name"].to_dict()
    rel = pd.read_csv(relation, sep="\t", header=None, names=["parent", "child"])
    rel = rel[rel["parent"].str.startswith("R-HSA-")]
    parents: dict[str, list[str]] = defaultdict(list)
    for p, c in zip(rel["parent"], rel["child"]):
        parents[c].append(p)

    def ancestors(node: str) -> set[str]:
        out, stack = set(), [node]
        while stack:
            for p in parents.get(stack.pop(), []):
                if p not in out:
                    out.add(p)
                    stack.append(p)
        return out

    genes: dict[str, set[str]] = defaultdict(set)
    n_unmapped = 0
    for acc, pw in zip(m["uniprot"], m["pathway"]):
        s = uniprot.get(str(acc).split("-")[0])
        if s is None:
            n_unmapped += 1
            continue
        for node in {pw} | ancestors(pw):
            genes[node].add(s)
    lib = {k: {"name": names.get(k, k), "source": "Reactome", "genes": sorted(v)} for k, v in genes.items() if len(v) >= 5}
    top = sorted(set(parents) | {p for ps in parents.values() for p in ps})
    hierarchy = {c: sorted(ps) for c, ps in parents.items() if c in lib}
    info = {"n_sets": len(lib), "uniprot_rows_unmapped": n_unmapped, "n_nodes_in_hierarchy": len(top)}
    return {"sets": lib, "hierarchy": hierarchy}, info


def build_wikipathways(wheel: Path, idmap: pd.DataFrame) -> dict:
    official = set(idmap.loc[idmap["kind"] == "entrez", "symbol"])
    alias = idmap[idmap["kind"] == "alias"].set_index("id")["symbol"].to_dict()

    def current(g: str) -> str:  # outdated names in the WikiPathways table -> current symbols
        return g if g in official else alias.get(g.upper(), g)

    with zipfile.ZipFile(wheel) as z, z.open("cptac/utils/data/WikiPathwaysDataframe.tsv.gz") as fh:
        df = pd.read_csv(fh, sep="\t", index_col=0, compression="gzip")
    lib = {}
    for col in df.columns:
        g = sorted({current(str(x)) for x in df.index[df[col].astype(bool)]})
        if len(g) >= 5:
            slug = "".join(ch if ch.isalnum() else "_" for ch in col).strip("_")
            while "__" in slug:
                slug = slug.replace("__", "_")
            lib[f"WP:{slug[:80]}"] = {"name": col, "source": "WikiPathways", "genes": g}
    return {"sets": lib}


def build_go_bp(orgdb: Path, godb: Path, min_size: int = 10, max_size: int = 500) -> dict:
    con = sqlite3.connect(orgdb)
    rows = con.execute(
        "select distinct i.symbol, a.go_id from go_bp_all a join gene_info i on a._id = i._id where a.evidence != 'ND'"
    )
    genes: dict[str, set[str]] = defaultdict(set)
    for s, go in rows:
        genes[go].add(s)
    names = dict(sqlite3.connect(godb).execute("select go_id, term from go_term where ontology = 'BP'"))
    lib = {
        go: {"name": names.get(go, go), "source": "GO_BP", "genes": sorted(g)}
        for go, g in genes.items()
        if min_size <= len(g) <= max_size and go in names
    }
    return {"sets": lib}


def build_bioplex(wheel: Path) -> pd.DataFrame:
    with zipfile.ZipFile(wheel) as z, z.open("cptac/utils/data/BioPlex_293T_Network_10K_Dec_2019.tsv.gz") as fh:
        return pd.read_csv(fh, sep="\t", compression="gzip")


def _write_sources(out: Path, counts: dict) -> None:
    """``SOURCES.json`` with the built files' entries and ``counts`` updated; entries of curated files kept."""
    path = out / "SOURCES.json"
    sources = json.loads(path.read_text()) if path.is_file() else {}
    sources.update(json.loads(json.dumps(SOURCES)))
    sources["counts"] = {**sources.get("counts", {}), **counts}
    path.write_text(json.dumps(sources, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orgdb", type=Path, default=DEB / "org.Hs.eg.db/extdata/org.Hs.eg.sqlite")
    ap.add_argument("--godb", type=Path, default=DEB / "GO.db/extdata/GO.sqlite")
    ap.add_argument("--cptac-wheel", type=Path, default=Path("/tmp/wheels/cptac-1.5.14-py3-none-any.whl"))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--loci-only", action="store_true", help="rebuild gene_loci.tsv.gz alone")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)

    loci = build_gene_loci(a.orgdb)
    _write_tsv_gz(loci, a.out / "gene_loci.tsv.gz")
    if a.loci_only:
        _write_sources(a.out, {"gene_loci": int(len(loci))})
        return

    bioplex = build_bioplex(a.cptac_wheel)
    idmap, uniprot = build_idmap(a.orgdb, bioplex)
    _write_tsv_gz(idmap, a.out / "idmap.tsv.gz")

    edges = bioplex[["SymbolA", "SymbolB", "pInt"]].dropna(subset=["SymbolA", "SymbolB"])
    edges = edges[edges["SymbolA"] != edges["SymbolB"]].copy()
    ab = edges[["SymbolA", "SymbolB"]].astype(str).to_numpy()
    edges["a"] = [min(x, y) for x, y in ab]
    edges["b"] = [max(x, y) for x, y in ab]
    edges = edges.groupby(["a", "b"], as_index=False)["pInt"].max()
    edges["pInt"] = edges["pInt"].round(3)
    _write_tsv_gz(edges.sort_values(["a", "b"]), a.out / "bioplex.tsv.gz")

    reactome, rinfo = build_reactome(_binn_dir(), uniprot)
    _write_json_gz(reactome, a.out / "reactome.json.gz")
    wp = build_wikipathways(a.cptac_wheel, idmap)
    _write_json_gz(wp, a.out / "wikipathways.json.gz")
    go = build_go_bp(a.orgdb, a.godb)
    _write_json_gz(go, a.out / "go_bp.json.gz")

    counts = {
        "reactome": len(reactome["sets"]),
        "wikipathways": len(wp["sets"]),
        "go_bp": len(go["sets"]),
        "idmap_rows": int(len(idmap)),
        "idmap_by_kind": {k: int(v) for k, v in idmap["kind"].value_counts().items()},
        "bioplex_edges": int(len(edges)),
        "reactome_build": rinfo,
        "gene_loci": int(len(loci)),
    }
    _write_sources(a.out, counts)
    for f in sorted(a.out.glob("*.gz")):
        print(f"{f.name}: {f.stat().st_size / 1e6:.2f} MB")
    print(json.dumps(counts, indent=2))


if __name__ == "__main__":
    main()
