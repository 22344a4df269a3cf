"""Start-up time of the `workbench run` process.

jsonschema (imported by nbformat, hence by papermill and nbconvert) imports `rfc3987_syntax` when
it is installed, to check the `iri` string format; that module compiles ~40 lark grammars at import
time: 2 s on an idle machine, 6 s or more on a busy one (python-jsonschema/jsonschema#1428). Notebook
validation never uses the `iri` format, so a process that only runs notebooks can skip it.
Call before anything imports jsonschema; it does nothing once jsonschema is loaded, and it only
affects the calling process (never a kernel, the hub or a notebook server).
"""

from __future__ import annotations

import sys

__all__ = ["skip_iri_grammar"]


def skip_iri_grammar() -> bool:
    """Make `import rfc3987_syntax` fail fast in this process; jsonschema then skips the `iri` checker."""
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        return False
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # the import system reads None as "not installed"
    return True
