"""References from one step of a job chain to what an earlier step's run produced.

    {{ steps.train.run_id }}              the run id (also: status, notebook, folder, report)
    {{ steps.train.metrics.auc }}         a metric the step published
    {{ steps.train.values.model_uri }}    a value the step published (publish(model_uri=...))
    {{ steps.train.model_uri }}           shorthand: values first, then metrics

A parameter that is exactly one reference takes the referenced value with its type; references
inside a longer string are substituted as text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import ParameterError

__all__ = ["REF", "find_refs", "resolve_refs", "RUN_FIELDS"]

REF = re.compile(r"\{\{\s*steps\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_.-]+?)\s*\}\}")
_ANY_BRACES = re.compile(r"\{\{.*?\}\}")
RUN_FIELDS = ("run_id", "status", "notebook", "folder", "report")


def find_refs(value: Any) -> list[tuple[str, str]]:
    """(step, path) of every reference in a parameter value; ParameterError for a malformed one."""
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        for braces in _ANY_BRACES.findall(value):
            match = REF.fullmatch(braces)
            if not match:
                raise ParameterError(
                    f"'{braces}' is not a step reference. Write {{{{ steps.STEP.run_id }}}}, "
                    f"{{{{ steps.STEP.metrics.NAME }}}} or {{{{ steps.STEP.values.NAME }}}}."
                )
            found.append((match.group(1), match.group(2)))
    elif isinstance(value, list):
        for item in value:
            found.extend(find_refs(item))
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(find_refs(item))
    return found


def _lookup(step: str, path: str, steps: Mapping[str, Any]) -> Any:
    if step not in steps:
        known = ", ".join(sorted(steps)) or "none"
        raise ParameterError(
            f"Reference to step '{step}', which has no run to read from. Steps available: {known}. "
            f"Bind one with --step-run {step}=RUN_ID."
        )
    record = steps[step]
    head, _, rest = path.partition(".")
    published = record.published or {}
    if head in RUN_FIELDS and not rest:
        if head == "folder":
            return str(record.folder)
        if head == "report":
            return str(record.report_path) if record.report_path else None
        return getattr(record, head)
    if head in ("metrics", "values") and rest:
        table = published.get(head) or {}
        if rest in table:
            return table[rest]
        raise ParameterError(
            f"Step '{step}' (run {record.run_id}) published no {head[:-1]} '{rest}'. It published "
            f"{head}: {', '.join(sorted(table)) or 'none'}."
        )
    if not rest:
        for table in (published.get("values") or {}, published.get("metrics") or {}):
            if head in table:
                return table[head]
    raise ParameterError(
        f"Step '{step}' (run {record.run_id}) has nothing called '{path}'. Use one of {', '.join(RUN_FIELDS)}, "
        f"metrics.NAME ({', '.join(sorted(published.get('metrics') or {})) or 'none published'}) or "
        f"values.NAME ({', '.join(sorted(published.get('values') or {})) or 'none published'})."
    )


def resolve_refs(value: Any, steps: Mapping[str, Any]) -> Any:
    """`value` with every {{ steps.X.Y }} replaced from the RunRecords in `steps` (by step name)."""
    if isinstance(value, str):
        find_refs(value)
        whole = REF.fullmatch(value.strip())
        if whole:
            return _lookup(whole.group(1), whole.group(2), steps)
        return REF.sub(lambda m: str(_lookup(m.group(1), m.group(2), steps)), value)
    if isinstance(value, list):
        return [resolve_refs(v, steps) for v in value]
    if isinstance(value, dict):
        return {k: resolve_refs(v, steps) for k, v in value.items()}
    return value
