"""Readers: a data folder (or file) -> :class:`~proteus.study.Study`.

One module per format: :mod:`~proteus.io.matrix` (plain TSV/CSV/XLSX), :mod:`~proteus.io.maxquant`,
:mod:`~proteus.io.diann`, :mod:`~proteus.io.spectronaut`, :mod:`~proteus.io.fragpipe`, :mod:`~proteus.io.maf`,
:mod:`~proteus.io.clinical`, :mod:`~proteus.io.h5ad`, FCS via ``proteus.io.cytometry``;
:func:`load_study` dispatches between them and :func:`describe` summarises the result.
"""

from proteus.io.describe import describe
from proteus.io.discover import DEFAULT_MAX_BYTES
from proteus.io.load import load_study
from proteus.io.modality import detect_modality

__all__ = ["load_study", "describe", "detect_modality", "DEFAULT_MAX_BYTES"]
