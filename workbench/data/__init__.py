"""Governed data access: the catalog, loading datasets by name, and the audit of every read.

Note: `workbench.data.catalog` is the function listing what the caller may read; the catalog module
itself is imported as `from workbench.data.catalog import load_catalog` (that form is unaffected).
"""

from .access import ColumnAccess, DatasetAccess, GovernanceWarning, load, sample
from .catalog import Catalog, Dataset, load_catalog
from .publish import publish

# isort: off
# After the submodule imports above, which bind `workbench.data.catalog` to the module: the public name is the function.
from .access import catalog
# isort: on

__all__ = [
    "load",
    "sample",
    "catalog",
    "publish",
    "load_catalog",
    "Catalog",
    "Dataset",
    "DatasetAccess",
    "ColumnAccess",
    "GovernanceWarning",
]
