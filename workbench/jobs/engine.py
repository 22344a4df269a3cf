"""The execution step, as a papermill engine, and the pure notebook transforms around it.

`WorkbenchEngine` is papermill's nbclient engine plus two things papermill's own does not pass to
the kernel: its environment and its working directory. It is registered in papermill's engine
registry under ENGINE_NAME, so the runner never changes the process's own os.environ or cwd (safe
with several runs in one process).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import Settings

__all__ = [
    "ENGINE_NAME",
    "register_engine",
    "kernel_env",
    "find_error",
    "mark_error",
    "add_error_note",
    "strip_ansi",
    "ERROR_MARKER_TAG",
    "started_cell",
]

ENGINE_NAME = "workbench"
# papermill's own tag, so papermill (and we) remove old markers on a re-run of an executed notebook.
ERROR_MARKER_TAG = "papermill-error-cell-tag"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_registered = False


def register_engine() -> str:
    global _registered
    if not _registered:
        from papermill.clientwrap import PapermillNotebookClient
        from papermill.engines import NBClientEngine, papermill_engines
        from papermill.utils import merge_kwargs, remove_args

        class WorkbenchEngine(NBClientEngine):
            """nbclient engine that starts the kernel with a given environment and working directory."""

            @classmethod
            def execute_managed_notebook(
                cls,
                nb_man,
                kernel_name,
                log_output=False,
                stdout_file=None,
                stderr_file=None,
                start_timeout=60,
                execution_timeout=None,
                kernel_env=None,
                kernel_cwd=None,
                **kwargs,
            ):
                kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
                final = merge_kwargs(
                    kwargs,
                    timeout=execution_timeout,
                    startup_timeout=start_timeout,
                    kernel_name=kernel_name,
                    log=_papermill_logger(),
                    log_output=log_output,
                    stdout_file=stdout_file,
                    stderr_file=stderr_file,
                )
                start = {}
                if kernel_env is not None:
                    start["env"] = dict(kernel_env)
                if kernel_cwd is not None:
                    start["cwd"] = str(kernel_cwd)
                if _curve_available():  # encrypt the kernel's sockets when the kernelspec supports it
                    start["transport_encryption"] = "auto"
                return PapermillNotebookClient(nb_man, **final).execute(**start)

        papermill_engines.register(ENGINE_NAME, WorkbenchEngine)
        _registered = True
    return ENGINE_NAME


def _curve_available() -> bool:
    try:
        import zmq

        return bool(zmq.has("curve"))
    except Exception:
        return False


def _papermill_logger():
    from papermill.log import logger

    return logger


def settings_env(settings: Settings) -> dict[str, str]:
    """WORKBENCH_* variables that make a child process load the same settings as `settings`.

    Values from the environment are inherited anyway and values from workbench.toml are read again
    by the child; only the home and values set in code (with_overrides) need passing on.
    """
    env = {"WORKBENCH_HOME": str(settings.home)}
    for name, value, source, _ in settings.public_items():
        if source == "override" and name != "home":
            raw = getattr(settings, name)
            env[f"WORKBENCH_{name.upper()}"] = (
                ",".join(raw) if isinstance(raw, tuple) else str(raw).lower() if isinstance(raw, bool) else str(raw)
            )
    return env


def kernel_env(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: this process's, the settings, and `import workbench` resolving to this code."""
    env = dict(os.environ)
    env.update(settings_env(settings))
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([package_root, *paths])
    env.update(extra or {})
    return env


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def find_error(nb) -> dict[str, Any] | None:
    """The first error output of an executed notebook (papermill's rule: SystemExit(0) is not an error)."""
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") != "error":
                continue
            if output.get("ename") == "SystemExit" and output.get("evalue") in ("", "0"):
                continue
            return {
                "cell_index": index,
                "execution_count": cell.get("execution_count"),
                "source": cell.get("source", ""),
                "ename": output.get("ename", ""),
                "evalue": strip_ansi(output.get("evalue", "")),
                "traceback": [strip_ansi(line) for line in output.get("traceback", [])],
            }
        if cell.get("metadata", {}).get("papermill", {}).get("exception") is True:
            return {
                "cell_index": index,
                "execution_count": cell.get("execution_count"),
                "source": cell.get("source", ""),
                "ename": "CellExecutionError",
                "evalue": "",
                "traceback": [],
            }
    return None


def started_cell(nb) -> int | None:
    """Index of the last cell that started executing (the one running when a run was stopped)."""
    last = None
    for index, cell in enumerate(nb.cells):
        if cell.get("metadata", {}).get("papermill", {}).get("start_time"):
            last = index
    return last


def mark_error(nb, cell_index: int) -> None:
    """Insert a papermill-style anchor just before the failing cell (old markers removed first)."""
    import nbformat

    nb.cells = [c for c in nb.cells if ERROR_MARKER_TAG not in c.get("metadata", {}).get("tags", [])]
    anchor = nbformat.v4.new_markdown_cell(
        '<span id="workbench-error-cell">&#9888; The run stopped at the next cell.</span>'
    )
    anchor.metadata["tags"] = [ERROR_MARKER_TAG]
    nb.cells.insert(cell_index, anchor)


def add_error_note(nb, message: str) -> None:
    """A note at the top of the executed notebook linking to the anchor (the report has its own header)."""
    import nbformat

    top = nbformat.v4.new_markdown_cell(
        f'<span style="color:#cf222e">&#9888; {_escape(message)} '
        f'<a href="#workbench-error-cell">Jump to the cell.</a></span>'
    )
    top.metadata["tags"] = [ERROR_MARKER_TAG]
    nb.cells.insert(0, top)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
