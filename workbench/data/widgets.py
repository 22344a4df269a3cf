"""A notebook browser of `workbench.data.catalog()`: pick a dataset, see your level, row filter and
how each column is classified and masked, and preview a few rows (a governed, audited read).

    from workbench.data.widgets import browser
    browser()
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from ..config import Settings, load_settings
from ..errors import SetupError, WorkbenchError
from .access import DatasetAccess, catalog, sample

if TYPE_CHECKING:
    import ipywidgets

__all__ = ["browser", "dataset_html"]

PREVIEW_ROWS = 10


def dataset_html(entry: DatasetAccess) -> str:
    """An HTML summary of one dataset as the caller sees it."""
    esc = html.escape
    rows = "".join(
        f"<tr><td><code>{esc(c.name)}</code></td><td>{esc(c.type)}</td><td>{esc(c.classification)}</td>"
        f"<td>{esc(c.mask or '') if c.released else 'withheld'}</td></tr>"
        for c in entry.columns
    )
    row_filter = f"<br>Rows: only where <code>{esc(entry.row_filter)}</code>" if entry.row_filter else ""
    return (
        f"<b>{esc(entry.name)}</b> &mdash; {esc(entry.description)}<br>Your level: <b>{esc(entry.level)}</b> "
        f"(through group {esc(entry.group) or '-'}); owner: {esc(entry.owner)}; zone: {esc(entry.zone)}{row_filter}"
        f"<table><thead><tr><th>column</th><th>type</th><th>classification</th><th>mask at your level</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def browser(settings: Settings | None = None) -> ipywidgets.VBox:
    """An ipywidgets browser of the datasets the caller may read."""
    try:
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError as exc:
        raise SetupError("The catalog browser needs ipywidgets: `pip install 'ipywidgets>=8.1'`.") from exc
    settings = settings or load_settings()
    entries = {e.name: e for e in catalog(settings)}
    if not entries:
        return widgets.VBox([widgets.HTML("You may read no dataset yet: ask a dataset owner for a grant.")])
    picker = widgets.Dropdown(
        options=[(f"{e.name} ({e.level})", e.name) for e in entries.values()], description="Dataset"
    )
    details = widgets.HTML(dataset_html(next(iter(entries.values()))))
    button = widgets.Button(
        description=f"Preview {PREVIEW_ROWS} rows", tooltip="a governed read, recorded in the audit log"
    )
    output = widgets.Output()

    def on_pick(change) -> None:
        details.value = dataset_html(entries[change["new"]])
        output.clear_output()

    def on_preview(_button) -> None:
        output.clear_output()
        with output:
            try:
                display(sample(picker.value, PREVIEW_ROWS, settings=settings, purpose="catalog browser preview"))
            except WorkbenchError as exc:
                print(f"error: {exc}")

    picker.observe(on_pick, names="value")
    button.on_click(on_preview)
    return widgets.VBox([widgets.HBox([picker, button]), details, output])
