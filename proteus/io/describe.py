"""A few human-readable lines about what :func:`~proteus.io.load_study` read (for the CLI)."""

from __future__ import annotations

from proteus.study import Study

__all__ = ["describe"]


def describe(study: Study) -> str:
    """Summarise a study: layers with shapes and scale, clinical table, mutations, skipped files.

    Returns
    -------
    str
        One line per layer plus lines for clinical data, mutations and file problems.
    """
    lines = [f"Data folder: {study.root}"]
    for name, a in study.modalities.items():
        unit = "cells" if a.uns.get("level") == "cell" else "samples"
        extra = f", {a.obs['sample_id'].nunique()} samples" if unit == "cells" and "sample_id" in a.obs else ""
        lines.append(
            f"  {name}: {a.n_obs} {unit} x {a.n_vars} features{extra} "
            f"(from {a.uns.get('source')}, scale {a.uns.get('scale')}, transform {a.uns.get('transform')})"
        )
    c = study.clinical
    if c.shape[1]:
        lines.append(f"  clinical: {c.shape[0]} samples x {c.shape[1]} variables")
    else:
        lines.append("  clinical: none (sample ids only)")
    lines += [f"  samples: {m.summary()}" for m in study.sample_matching]
    lines += [f"  sample table: {n}" for n in study.sample_notes]
    if study.mutations is not None:
        m = study.mutations
        lines.append(f"  mutations: {len(m)} in {m['sample'].nunique()} samples, {m['gene'].nunique()} genes")
    bad = [r for r in study.reports if r.problem]
    ignored = [r for r in study.reports if r.kind == "ignored"]
    if ignored:
        lines.append(f"  ignored: {len(ignored)} non-data file(s)")
    if bad:
        lines.append(f"  problems ({len(bad)}):")
        lines += [f"    - {r.problem}" for r in bad[:20]]
        if len(bad) > 20:
            lines.append(f"    ... and {len(bad) - 20} more")
    return "\n".join(lines)
