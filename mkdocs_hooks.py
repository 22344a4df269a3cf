"""MkDocs hook: the settings reference is rendered from `workbench.config.Settings`, not written twice.

A page containing the line `<!-- settings-table -->` gets, in its place, one table row per setting: its name,
its environment variable, its default and its help text (the same text `workbench config --help-all` prints).
"""

from __future__ import annotations

import dataclasses

MARKER = "<!-- settings-table -->"


def _cell(text: object) -> str:
    """Text for one table cell: pipes escaped, and `<` / `>` escaped outside code spans (`<lake_root>` is no tag)."""
    parts = str(text).replace("|", "\\|").replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def settings_table() -> str:
    from workbench.config import ENV_PREFIX, Settings

    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(Settings):
        if f.metadata.get("internal"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, tuple):
            default = ",".join(default)
        shown = "(secret)" if f.metadata.get("secret") else (f"`{default}`" if default != "" else "-")
        env = f"`{ENV_PREFIX}{f.name.upper()}`"
        rows.append(f"| `{f.name}` | {env} | {_cell(shown)} | {_cell(f.metadata.get('help', ''))} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, settings_table())
    return markdown
