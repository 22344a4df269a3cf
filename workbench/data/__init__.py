"""Governed data access: the catalog, loading datasets by name, and the audit of every read."""
from .access import load, sample
from .catalog import Catalog, Dataset, load_catalog

__all__ = ["load", "sample", "load_catalog", "Catalog", "Dataset"]
