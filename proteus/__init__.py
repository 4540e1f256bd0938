"""PROTEUS: an autonomous scientific-discovery agent for proteomics and multi-omics."""

__version__ = "0.1.0"
