"""One promoter, one event: head-to-head genes that change the same way in the same samples.

Two genes on opposite strands whose transcription start sites lie at most :data:`BIDIRECTIONAL_TSS` bp apart share
a bidirectional promoter (head-to-head genes; Trinklein et al. 2004, doi:10.1101/gr.1816504, about one human gene in
ten). Whatever opens or silences that promoter (its methylation, a factor binding it) moves both genes, so when both
change the same way in the same contrast they are one promoter event, not two findings: the hypothesis about one says
so, and a draft led by the other folds into it (:mod:`proteus.policy.same_event`). Positions are those of
:func:`proteus.genesets.gene_loci` (human genes; the outermost transcription start site of each).
"""

from __future__ import annotations

from functools import lru_cache

from proteus.genesets import gene_loci

__all__ = ["BIDIRECTIONAL_TSS", "bidirectional_partners", "promoter_clause"]

BIDIRECTIONAL_TSS = 1000
"""Largest distance (bp) between the transcription start sites of two opposite-strand genes that share a
bidirectional promoter (Trinklein et al. 2004)."""


@lru_cache(maxsize=None)
def _pairs() -> dict[str, dict[str, int]]:
    """Gene -> {head-to-head partner: distance between their transcription start sites (bp)}, for every human gene."""
    by_chromosome: dict[str, list[tuple[int, str, str]]] = {}
    for gene, locus in gene_loci().items():
        by_chromosome.setdefault(locus.chromosome, []).append((locus.tss, locus.strand, gene))
    out: dict[str, dict[str, int]] = {}
    for sites in by_chromosome.values():
        sites.sort()
        for i, (tss, strand, gene) in enumerate(sites):
            for tss2, strand2, gene2 in sites[i + 1:]:
                if tss2 - tss > BIDIRECTIONAL_TSS:
                    break
                if strand2 != strand:
                    out.setdefault(gene, {})[gene2] = out.setdefault(gene2, {})[gene] = tss2 - tss
    return out


def bidirectional_partners(gene: str) -> dict[str, int]:
    """The genes sharing a bidirectional promoter with human gene ``gene`` (opposite strand, transcription start
    sites at most :data:`BIDIRECTIONAL_TSS` bp apart), each with that distance in bp; empty when none or unknown."""
    return _pairs().get(gene, {})


def promoter_clause(gene: str, partner: str, distance: int, word: str) -> str:
    """The statement's clause: ``gene`` and ``partner`` (``distance`` bp between their start sites), the partner
    ``word`` ("lower", "higher") too, are one promoter event."""
    return (f"{gene} shares a bidirectional promoter with {partner} (head-to-head, transcription start sites {distance} bp apart; "
            f"Trinklein et al. 2004), which is {word} too: one promoter event, not two")
