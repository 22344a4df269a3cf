"""JupyterHub configuration for the workbench.

All logic is in `workbench.hub.apply_config` (tested against a plain traitlets Config); this file
only loads the settings and hands them over. Site overrides: every `jupyterhub_config.d/*.py`
beside this file, in name order, loaded after it (they see `c` and may change anything).

Start it with `workbench hub` (or `make hub`); `jupyterhub -f hub_config/jupyterhub_config.py`
works too once the first admin's account exists.
"""

from pathlib import Path

from workbench.config import load_settings
from workbench.hub import apply_config

c = get_config()  # noqa: F821 (provided by JupyterHub's config loader)
apply_config(load_settings(), c)

for override in sorted((Path(__file__).parent / "jupyterhub_config.d").glob("*.py")):
    load_subconfig(str(override))  # noqa: F821
