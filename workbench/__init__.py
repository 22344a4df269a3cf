"""workbench: a notebook-first machine-learning workbench with a shared hub.

The top level is deliberately small and cheap to import; the parts live in their modules:
`workbench.data` (governed reads), `workbench.jobs` (headless runs), `workbench.reports` (publish, site),
`workbench.features` / `workbench.training` / `workbench.registry` / `workbench.validation` (models),
`workbench.drift`, `workbench.explain`, `workbench.serving`, `workbench.hub`.
"""

from .config import Settings, load_settings
from .errors import WorkbenchError
from .spark import get_spark

__version__ = "0.1.0"

__all__ = ["__version__", "Settings", "load_settings", "get_spark", "WorkbenchError"]
