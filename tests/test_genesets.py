"""Shipped gene-set libraries, identifier map and BioPlex edges (proteus.genesets)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from proteus import genesets

MAXQUANT = Path(pytest.importorskip("alphastats").__file__).parent / "gui" / "example_data" / "proteinGroups.txt"


def test_libraries_load_with_names_and_sizes():
    for lib in genesets.LIBRARIES:
        sets = genesets.load(lib)
        names = genesets.set_names(lib)
        assert len(sets) > 300 and set(sets) == set(names)
        assert all(genes == sorted(set(genes)) for genes in sets.values())
    go = genesets.load("go_bp")
    assert all(10 <= len(g) <= 500 for g in go.values())
    assert genesets.set_names("go_bp")["GO:0006260"] == "DNA replication"
    with pytest.raises(ValueError, match="shipped libraries"):
        genesets.load("msigdb_hallmark")


def test_reactome_is_propagated_up_the_hierarchy():
    r = genesets.load("reactome")
    names = genesets.set_names("reactome")
    assert names["R-HSA-69306"] == "DNA Replication" and names["R-HSA-1640170"] == "Cell Cycle"
    assert {"MCM2", "MCM3", "MCM4", "MCM5", "MCM6", "MCM7"} <= set(r["R-HSA-69306"])
    # every pathway's genes are in each of its parents (Reactome's "all levels" convention)
    hierarchy = genesets._raw("reactome")["hierarchy"]
    pairs = [(c, par) for c, ps in hierarchy.items() for par in ps if par in r]
    assert len(pairs) > 1000
    assert all(set(r[c]) <= set(r[par]) for c, par in pairs)
    assert len(r["R-HSA-1640170"]) > 500


def test_to_symbols_detects_identifier_kinds():
    got = genesets.to_symbols([
        "sp|P04637|P53_HUMAN", "P04637-2", "7157", "ENSG00000141510.17", "tp53", "TP53-S15",
        "CON__P02768;P04637", "FYB", "not_a_gene", None, float("nan"),
    ])
    assert got == ["TP53", "TP53", "TP53", "TP53", "TP53", "TP53", "TP53", "FYB1", None, None, None]


def test_maxquant_uniprot_groups_map_to_the_gene_names_maxquant_reports():
    df = pd.read_csv(MAXQUANT, sep="\t", low_memory=False)
    df = df[df["Reverse"].ne("+") & df["Potential contaminant"].ne("+") & df["Gene names"].notna()]
    mapped = genesets.to_symbols(df["Protein IDs"].tolist())
    frac = sum(m is not None for m in mapped) / len(mapped)
    assert len(df) > 1500 and frac > 0.8, frac
    # agreement with MaxQuant's own gene names (old names mapped to current symbols too)
    pairs = [(m, [genesets.to_symbols([g])[0] or g for g in names.split(";")])
             for m, names in zip(mapped, df["Gene names"]) if m is not None]
    agree = sum(m in gs for m, gs in pairs) / len(pairs)
    assert agree > 0.95, agree


def test_bioplex_edges_and_shipped_files_are_small_and_licensed():
    e = genesets.ppi_edges()
    assert len(e) > 100_000 and (e["a"] < e["b"]).all()
    pairs = set(zip(e["a"], e["b"]))
    assert ("MCM2", "MCM4") in pairs or ("MCM2", "MCM6") in pairs
    files = [f for f in resources.files("proteus.genesets").iterdir() if f.name.endswith((".gz", ".json", ".tsv"))]
    total = sum(Path(str(f)).stat().st_size for f in files)
    assert total < 8e6, total
    src = json.loads(resources.files("proteus.genesets").joinpath("SOURCES.json").read_text())
    for f in files:
        if f.name.endswith(".gz"):
            assert src[f.name]["licence"] and src[f.name]["citation"], f.name
    assert "CC0" in src["reactome.json.gz"]["licence"] and "CC BY 4.0" in src["go_bp.json.gz"]["licence"]
    assert not any("msigdb" in f.name.lower() or "kegg" in f.name.lower() for f in files)


def test_phenotype_determinants_read_a_grouping_by_its_column_and_levels():
    """Each curated phenotype names genes the identifier map knows and cites its definition; a grouping
    is read by its column name, and by its levels only where the phenotype is named there (an instability
    call is a level of a subtype column; a receptor acronym among treatment-response levels is not a receptor)."""
    phenotypes = genesets.phenotype_determinants()
    assert phenotypes and all(ph.genes and "doi:" in ph.ref and "doi:" in ph.citation for ph in phenotypes)
    assert all(genesets.to_symbols(list(ph.genes)) == list(ph.genes) for ph in phenotypes)
    called = {(column, levels): [ph.genes for ph in phenotypes if ph.matches(column, levels)] for column, levels in [
        ("MSI_status", ("MSI-H", "MSS")), ("Subtype", ("MSI", "CNV_high")), ("msi.status", ("unstable", "stable")),
        ("Best_response", ("PR", "SD")), ("PR_status", ("Positive", "Negative")), ("her2.ihc", ("3+", "0")), ("Cohort", ("A", "B"))]}
    mmr = ("MLH1", "MSH2", "MSH6", "PMS2")
    assert called[("MSI_status", ("MSI-H", "MSS"))] == [mmr] == called[("Subtype", ("MSI", "CNV_high"))]
    assert called[("PR_status", ("Positive", "Negative"))] == [("PGR",)] and called[("her2.ihc", ("3+", "0"))] == [("ERBB2",)]
    assert called[("Best_response", ("PR", "SD"))] == [] == called[("Cohort", ("A", "B"))]


def test_gene_loci_place_genes_on_arms_and_find_bidirectional_promoters():
    """Gene positions (NCBI Gene map locations, UCSC GRCh38 positions via org.Hs.eg.db): MLH1 and EPM2AIP1 lie
    head-to-head on 3p22.2, opposite strands with transcription start sites a few hundred bp apart: one bidirectional
    promoter (Trinklein et al. 2004, doi:10.1101/gr.1816504), whose hypermethylation silences both in MSI tumours."""
    from proteus.policy.promoters import BIDIRECTIONAL_TSS, bidirectional_partners

    loci = genesets.gene_loci()
    mlh1, epm2aip1 = loci["MLH1"], loci["EPM2AIP1"]
    assert (mlh1.chromosome, mlh1.strand, mlh1.arm, epm2aip1.strand, epm2aip1.cytoband) == ("3", "+", "3p", "-", "3p22.2")
    assert 0 < mlh1.tss - epm2aip1.tss <= BIDIRECTIONAL_TSS  # each runs away from the other: head to head
    assert bidirectional_partners("MLH1") == {"EPM2AIP1": mlh1.tss - epm2aip1.tss} and "MLH1" in bidirectional_partners("EPM2AIP1")
    assert (loci["TP53"].arm, loci["ERBB2"].arm, loci["PRUNE1"].arm) == ("17p", "17q", "1q")
    assert {x.chromosome for x in loci.values()} == {*map(str, range(1, 23)), "X", "Y"} and len(loci) > 20_000
