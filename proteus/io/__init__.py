"""Readers: a data folder (or file) -> :class:`~proteus.study.Study`.

One module per format: :mod:`~proteus.io.matrix` (plain TSV/CSV/XLSX), :mod:`~proteus.io.maxquant`,
:mod:`~proteus.io.diann`, :mod:`~proteus.io.spectronaut`, :mod:`~proteus.io.fragpipe`, :mod:`~proteus.io.maf`,
:mod:`~proteus.io.clinical`, :mod:`~proteus.io.h5ad`, FCS via ``proteus.io.cytometry``;
:func:`load_study` dispatches between them and :func:`describe` summarises the result.
"""

from __future__ import annotations

from proteus.io.describe import describe
from proteus.io.discover import DEFAULT_MAX_BYTES
from proteus.io.modality import detect_modality

__all__ = ["load_study", "describe", "detect_modality", "DEFAULT_MAX_BYTES"]


def __getattr__(name: str):
    """``load_study`` is imported when first asked for (PEP 562): it imports every format's reader,
    which a module of this package used on its own (``proteus.io.values``) does not need."""
    if name != "load_study":
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    from proteus.io.load import load_study

    return load_study
