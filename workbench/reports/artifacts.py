"""Showing a run's large HTML artifacts (an Evidently report, explanations) in a notebook and its report.

The artifact is written to `workbench.runs.artifact_dir()` (the run's folder in a job run) and shown
with `show_html`: an iframe and a link, addressed relative to the run's folder, so the rendered report
shows it without inlining its megabytes and the pair travels together when the reports are copied.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..runs.layout import RUN_DIR_ENV

__all__ = ["show_html"]


def show_html(path: str | Path, title: str, height: int = 900):
    """An iframe (and a link) for an HTML artifact, addressed relative to the run's folder when it
    lives there, so the rendered run report shows it without inlining its megabytes."""
    from html import escape

    from IPython.display import HTML

    path = Path(path)
    run_dir = os.environ.get(RUN_DIR_ENV)
    src = str(path.relative_to(run_dir)) if run_dir and path.is_relative_to(run_dir) else path.resolve().as_uri()
    src = escape(src, quote=True)
    return HTML(
        f'<p><a href="{src}" target="_blank">{escape(title)}</a> (opens the standalone report)</p>'
        f'<iframe src="{src}" title="{escape(title, quote=True)}" style="width:100%;height:{int(height)}px;border:1px solid #ddd"></iframe>'
    )
