"""Gene-set libraries, an identifier map and the BioPlex network, shipped with PROTEUS.

Everything here is read from small gzip files next to this module (rebuilt by
``scripts/build_genesets.py``; sources, versions and licences in ``SOURCES.json``):

- ``load(library)`` -> ``{set_id: [gene symbols]}`` for ``"reactome"`` (CC0), ``"wikipathways"``
  (CC0) and ``"go_bp"`` (GO biological process, CC BY 4.0).
- ``set_names(library)`` -> ``{set_id: name}``.
- ``to_symbols(ids)`` -> gene symbol (or ``None``) for UniProt accessions (isoform suffixes,
  ``sp|P12345|NAME_HUMAN`` and MaxQuant ``;``-joined protein groups accepted), Entrez ids,
  Ensembl gene / protein ids (with or without version), current and (unambiguous) alias symbols,
  and site ids such as ``TP53-S15``.
- ``ppi_edges()`` -> BioPlex 3.0 HEK293T edges as a DataFrame ``a, b, pInt``.
- ``plasma_quality_panels()`` -> ``{panel: [gene symbols]}``: erythrocyte, platelet and coagulation
  quality markers of plasma / serum proteomes (Geyer et al. 2019, doi:10.15252/emmm.201910427).
- ``stabilising_variants()`` -> ``{gene: StabilisingRegion}``: genes whose missense variants in a named
  region raise their own protein (each with its mechanism and citation; ``stabilising_variants.json``).
- ``phenotype_determinants()`` -> ``[Phenotype]``: groupings defined by named genes' products (mismatch-repair
  deficiency by MLH1/MSH2/MSH6/PMS2, receptor status by its receptor), each with its definition and citation
  (``phenotype_determinants.json``); ``Phenotype.matches(column, levels)`` reads a grouping.
- ``gene_loci()`` -> ``{gene symbol: Locus}``: chromosome, GRCh38 span, strand and cytoband of each human
  gene (NCBI Gene / UCSC via org.Hs.eg.db; ``gene_loci.tsv.gz``).
- ``organism_problem(organism)`` -> why the shipped (human) sets do not apply to a layer's
  organism, or ``None``.

All loaders are cached; the returned objects are shared, so copy before mutating.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import pandas as pd

__all__ = ["LIBRARIES", "ORGANISM", "load", "set_names", "set_sources", "to_symbols", "known_symbols", "is_human_gene", "ppi_edges", "sources", "plasma_quality_panels",
           "organism_problem", "StabilisingRegion", "stabilising_variants", "Phenotype", "phenotype_determinants", "Locus", "gene_loci"]

LIBRARIES = ("reactome", "wikipathways", "go_bp")
"""Names accepted by :func:`load`."""

ORGANISM = "Homo sapiens"
"""The one organism the shipped gene sets, identifier map and network describe."""


def organism_problem(organism: str | None) -> str | None:
    """Why the shipped sets cannot be used for a layer of ``organism`` (``None`` when they can,
    or when the organism is unknown)."""
    if not organism or organism == ORGANISM:
        return None
    return (f"the proteins are from {organism}, and PROTEUS ships gene sets and interactions for {ORGANISM} only: "
            f"testing human sets on {organism} proteins would be wrong, so this analysis is not done")


def _open(name: str):
    return resources.files(__name__).joinpath(name).open("rb")


def _check(library: str) -> str:
    lib = str(library).lower()
    if lib not in LIBRARIES:
        msg = f"unknown gene-set library {library!r}; shipped libraries: {', '.join(LIBRARIES)}"
        raise ValueError(msg)
    return lib


@lru_cache(maxsize=None)
def _raw(library: str) -> dict:
    with _open(f"{library}.json.gz") as fh:
        return json.loads(gzip.decompress(fh.read()))


def load(library: str) -> dict[str, list[str]]:
    """Gene sets of ``library`` as ``{set_id: sorted gene symbols}``.

    Parameters
    ----------
    library
        ``"reactome"``, ``"wikipathways"`` or ``"go_bp"``.
    """
    return _sets(_check(library))


@lru_cache(maxsize=None)
def _sets(library: str) -> dict[str, list[str]]:
    return {k: v["genes"] for k, v in _raw(library)["sets"].items()}


@lru_cache(maxsize=None)
def set_names(library: str) -> dict[str, str]:
    """``{set_id: human-readable name}`` of ``library``."""
    return {k: v["name"] for k, v in _raw(_check(library))["sets"].items()}


def set_sources(library: str) -> dict[str, str]:
    """``{set_id: source database}`` (``Reactome``, ``WikiPathways``, ``GO_BP``)."""
    return {k: v["source"] for k, v in _raw(_check(library))["sets"].items()}


@lru_cache(maxsize=None)
def sources() -> dict:
    """Provenance and licence of every shipped file (``SOURCES.json``)."""
    with _open("SOURCES.json") as fh:
        return json.load(fh)


@dataclass(frozen=True)
class StabilisingRegion:
    """A protein region whose missense variants raise the protein's own level: 1-based residues
    ``start``-``end`` (inclusive), the region's name, the mechanism, its short reference and full citation."""

    start: int
    end: int
    name: str
    mechanism: str
    ref: str
    citation: str

    def holds(self, residue: int) -> bool:
        return self.start <= residue <= self.end


@lru_cache(maxsize=None)
def stabilising_variants() -> dict[str, StabilisingRegion]:
    """Genes whose missense variants in a named region are known to raise their own protein (the
    product escapes degradation), ``{gene symbol: region}`` (``stabilising_variants.json``; each entry
    cites its primary reference, e.g. the CTNNB1 exon-3 degron, Liu et al. 2002, doi:10.1016/S0092-8674(02)00685-2)."""
    with _open("stabilising_variants.json") as fh:
        genes = json.load(fh)["genes"]
    return {g: StabilisingRegion(int(v["region"][0]), int(v["region"][1]), v["region_name"], v["mechanism"], v["ref"], v["citation"])
            for g, v in genes.items()}


@dataclass(frozen=True)
class Locus:
    """A gene's place on the GRCh38 primary assembly: chromosome, 1-based span of its transcripts, strand
    (``"+"`` / ``"-"``) and cytogenetic band (``"3p22.2"``, ``"1q21.1-q21.2"``; ``""`` when unknown)."""

    chromosome: str
    start: int
    end: int
    strand: str
    cytoband: str

    @property
    def tss(self) -> int:
        """The outermost transcription start site: the 5' end on the gene's strand."""
        return self.start if self.strand == "+" else self.end

    @property
    def arm(self) -> str:
        """The chromosome arm (``"1q"``), ``""`` when the band does not name one."""
        band = self.cytoband[len(self.chromosome):len(self.chromosome) + 1]
        return f"{self.chromosome}{band}" if band in ("p", "q") else ""


@lru_cache(maxsize=None)
def gene_loci() -> dict[str, Locus]:
    """Where each human gene lies, ``{gene symbol: Locus}`` (``gene_loci.tsv.gz``: NCBI Gene map locations and
    UCSC gene positions via org.Hs.eg.db 3.16; chromosomes 1-22, X and Y)."""
    with _open("gene_loci.tsv.gz") as fh:
        rows = [line.split("\t") for line in gzip.decompress(fh.read()).decode().splitlines()[1:]]
    return {sym: Locus(chrom, int(start), int(end), strand, band) for sym, chrom, start, end, strand, band in rows}


@lru_cache(maxsize=None)
def plasma_quality_panels() -> dict[str, tuple[str, ...]]:
    """Sample-quality marker panels of plasma / serum proteomes, ``{panel: gene symbols}``
    (``plasma_quality_panels.json``; Geyer et al. 2019, doi:10.15252/emmm.201910427)."""
    with _open("plasma_quality_panels.json") as fh:
        return {k: tuple(v) for k, v in json.load(fh)["panels"].items()}


# --- identifiers ------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _idmap() -> dict[str, dict[str, str]]:
    with _open("idmap.tsv.gz") as fh:
        lines = gzip.decompress(fh.read()).decode().splitlines()
    out: dict[str, dict[str, str]] = {}
    for line in lines[1:]:  # header: id, kind, symbol
        i, kind, sym = line.split("\t")
        out.setdefault(kind, {})[i] = sym
    return out


@lru_cache(maxsize=None)
def known_symbols() -> frozenset[str]:
    """Every symbol the identifier map, the libraries or BioPlex know (upper case)."""
    return frozenset(_official()) | frozenset(_other_names())


@lru_cache(maxsize=None)
def _official() -> dict[str, str]:
    return {s.upper(): s for s in _idmap()["entrez"].values()}


def is_human_gene(symbol: str, protein_id: str = "") -> bool:
    """An official human gene symbol (case ignored), or a human UniProt accession (isoform suffix
    dropped) or Ensembl gene id of the shipped map. Aliases do not count: other organisms' gene
    names often equal one."""
    m = _idmap()
    pid = protein_id.split("-")[0].upper() if not protein_id.upper().startswith("ENSG") else protein_id.split(".")[0].upper()
    return symbol.upper() in _official() or pid in m["uniprot"] or pid in m.get("ensembl_gene", {})


@lru_cache(maxsize=None)
def _other_names() -> dict[str, str]:
    """Names used by a library or BioPlex that are not current official symbols."""
    names: set[str] = set()
    for lib in LIBRARIES:
        for genes in _sets(lib).values():
            names.update(genes)
    e = ppi_edges()
    names.update(e["a"])
    names.update(e["b"])
    return {g.upper(): g for g in sorted(names)}


_UNIPROT = re.compile(r"^(?:[OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9](?:[A-Z][A-Z0-9]{2}[0-9]){1,2})$")
_ENSG = re.compile(r"^ENSG\d{11}$")
_ENSP = re.compile(r"^ENSP\d{11}$")
_SITE = re.compile(r"^(.+?)[-_:]([STYK]\d+[a-z]?)+(?:[-_:;].*)?$")


def _one(token: str) -> str | None:
    t = token.strip()
    if not t:
        return None
    if "|" in t:  # sp|P12345|NAME_HUMAN, tr|..., or pipes from FASTA headers
        parts = t.split("|")
        t = parts[1] if len(parts) >= 2 and parts[0].lower() in ("sp", "tr") else parts[0]
    m = _idmap()
    head = t.split(".")[0] if t.upper().startswith("ENS") else t
    head_u = head.upper()
    if _ENSG.match(head_u):
        return m["ensembl_gene"].get(head_u)
    if _ENSP.match(head_u):
        return m["ensembl_protein"].get(head_u)
    if head.isdigit():
        return m["entrez"].get(head)
    base = head_u.split("-")[0]
    if _UNIPROT.match(base) and base in m["uniprot"]:
        return m["uniprot"][base]
    for table in (_official, lambda: m["alias"], _other_names):  # lazily: the last one loads every library
        hit = table().get(head_u)
        if hit is not None:
            return hit
    site = _SITE.match(head)
    if site:  # TP53-S15, GENE_S123, AKT1-S473s
        return _one(site.group(1))
    return None


def to_symbols(ids: list[str] | pd.Index | pd.Series) -> list[str | None]:
    """Map identifiers of any common kind to HGNC gene symbols; ``None`` where unknown.

    The kind is detected per identifier: ``ENSG…``/``ENSP…`` (version suffix dropped), digits
    (Entrez), UniProt accessions (isoform suffix ``-2`` dropped; ``sp|P04637|P53_HUMAN`` and
    ``tr|…`` headers read), official symbols (case-insensitive), unambiguous alias symbols, and
    site ids (``TP53-S15``). A MaxQuant protein group ``"P04637;P04637-2;Q9XXX1"`` maps to the
    first member that maps.
    """
    out: list[str | None] = []
    for x in ids:
        if x is None or (isinstance(x, float) and x != x):
            out.append(None)
            continue
        sym = None
        for tok in str(x).split(";"):
            sym = _one(tok)
            if sym is not None:
                break
        out.append(sym)
    return out


# --- network ----------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def ppi_edges() -> pd.DataFrame:
    """BioPlex 3.0 (HEK293T) interactions as undirected symbol pairs ``a < b`` with ``pInt``."""
    with _open("bioplex.tsv.gz") as fh:
        rows = [line.split("\t") for line in gzip.decompress(fh.read()).decode().splitlines()]
    df = pd.DataFrame(rows[1:], columns=rows[0])
    df["pInt"] = df["pInt"].astype(float)
    return df


def _tokens(text: str) -> set[str]:
    return set(re.split(r"[^A-Za-z0-9]+", str(text))) - {""}


@dataclass(frozen=True)
class Phenotype:
    """A sample grouping whose definition is the loss or presence of ``genes``' products: how a
    grouping's column name (``column_tokens``) or its column name and levels (``level_tokens``) name
    it; two-letter acronyms (ER, PR) match as written, longer tokens in any case."""

    name: str
    genes: tuple[str, ...]
    column_tokens: tuple[str, ...]
    level_tokens: tuple[str, ...]
    definition: str
    ref: str
    citation: str

    @staticmethod
    def _hit(words: set[str], wanted: tuple[str, ...]) -> bool:
        lower = {w.lower() for w in words}
        return any(t in words if len(t) <= 2 else t.lower() in lower for t in wanted)

    def matches(self, column: str, levels: list[str] | tuple[str, ...] = ()) -> bool:
        """True when the grouping ``column`` (with its compared ``levels``) is this phenotype."""
        col = _tokens(column)
        lev = set().union(*(_tokens(v) for v in levels)) if levels else set()
        return self._hit(col, self.column_tokens) or self._hit(col | lev, self.level_tokens)


@lru_cache(maxsize=None)
def phenotype_determinants() -> tuple[Phenotype, ...]:
    """Groupings defined by named genes' products (``phenotype_determinants.json``; each cites its
    definition, e.g. mismatch-repair deficiency, Boland and Goel 2010, doi:10.1053/j.gastro.2009.12.064)."""
    with _open("phenotype_determinants.json") as fh:
        entries = json.load(fh)["phenotypes"]
    return tuple(Phenotype(name, tuple(v["genes"]), tuple(v["column_tokens"]), tuple(v["level_tokens"]), v["definition"], v["ref"], v["citation"])
                 for name, v in entries.items())
