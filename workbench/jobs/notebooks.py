"""Finding a notebook by name and checking parameters against its `parameters` cell.

Everything here runs without a kernel: parameters are refused before anything starts.
The declared type of a parameter is its annotation (`n: int = 5`) or, failing that, the type of
its literal default (`n = 5  # rows`). Values given as text (the command line, templated job
parameters) are read as that type; typed values (YAML, Python) must already fit it.
"""

from __future__ import annotations

import ast
import difflib
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import Settings
from ..errors import NotebookError, ParameterError
from ..runs.layout import NOTEBOOK_SUFFIX, notebook_key, short_name

__all__ = [
    "Parameter",
    "resolve_notebook",
    "list_notebooks",
    "notebook_key",
    "short_name",
    "inspect_parameters",
    "check_parameters",
    "describe_parameters",
    "NO_PARAMETERS_HELP",
]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_TYPES = {"int", "float", "str", "bool", "list", "dict"}

NO_PARAMETERS_HELP = (
    "Add one: put the defaults in one code cell near the top, one literal per line with a comment "
    '(e.g. `dataset = "flights"  # dataset to read`), then tag that cell `parameters` '
    "(JupyterLab: select the cell, open the property inspector with the gear icon, add the tag)."
)


@dataclass(frozen=True)
class Parameter:
    """A parameter declared in a notebook's `parameters` cell."""

    name: str
    type: str | None  # int, float, str, bool, list, dict, or None when it cannot be told
    default: str  # the default as written in the cell
    help: str = ""
    nullable: bool = False  # the default is None or the annotation is Optional[...]

    def describe(self) -> str:
        kind = self.type or "any"
        return f"{self.name} ({kind}, default {self.default})" + (f": {self.help}" if self.help else "")


def list_notebooks(settings: Settings) -> list[Path]:
    folder = settings.path("notebooks_dir")
    return (
        sorted(p for p in folder.glob(f"*{NOTEBOOK_SUFFIX}") if not p.name.startswith(".")) if folder.is_dir() else []
    )


def resolve_notebook(name: str | Path, settings: Settings) -> Path:
    """A notebook by path, by file name in `notebooks_dir` (with or without .ipynb), or by short name
    ('drift_monitor' finds 04_drift_monitor.ipynb)."""
    text = str(name)
    direct = Path(text).expanduser()
    if direct.suffix == NOTEBOOK_SUFFIX and direct.is_file():
        return direct.resolve()
    folder = settings.path("notebooks_dir")
    base = Path(text).name[: -len(NOTEBOOK_SUFFIX)] if text.endswith(NOTEBOOK_SUFFIX) else Path(text).name
    exact = folder / f"{base}{NOTEBOOK_SUFFIX}"
    if exact.is_file():
        return exact.resolve()
    available = list_notebooks(settings)
    by_short = [p for p in available if short_name(notebook_key(p)) == base]
    if len(by_short) == 1:
        return by_short[0].resolve()
    names = [notebook_key(p) for p in available]
    if len(by_short) > 1:
        raise NotebookError(
            f"Notebook name '{base}' is ambiguous in {folder}: it matches {', '.join(notebook_key(p) for p in by_short)}. Use the full name."
        )
    close = difflib.get_close_matches(base, names + [short_name(n) for n in names], n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(names) if names else "none"
    raise NotebookError(
        f"No notebook '{text}' in {folder}.{hint} Available notebooks: {listing}. Give a file name, a short name (without the NN_ prefix) or a path to an .ipynb file."
    )


class ParameterWarning(UserWarning):
    """A variable in the parameters cell that papermill does not see as a parameter."""


def inspect_parameters(path: Path) -> dict[str, Parameter]:
    """The parameters declared by the notebook's `parameters` cell (papermill.inspect_notebook).

    Raises ParameterError when the notebook has no cell tagged `parameters`.
    """
    import nbformat
    from papermill import inspect_notebook

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:
        raise NotebookError(
            f"{path} is not a readable notebook ({exc.__class__.__name__}). Open and save it in JupyterLab to repair it."
        ) from exc
    cell = next((c for c in nb.cells if "parameters" in (c.get("metadata", {}).get("tags") or [])), None)
    if cell is None:
        raise ParameterError(
            f"Notebook {notebook_key(path)} has no cell tagged 'parameters', so it cannot be run with parameters. {NO_PARAMETERS_HELP}"
        )
    try:
        found = inspect_notebook(str(path))
    except ValueError as exc:  # no kernelspec/language in the metadata
        raise NotebookError(
            f"Notebook {notebook_key(path)} does not say its language ({exc}). Open it in JupyterLab, pick a Python kernel and save it."
        ) from exc
    unread = _unread_assignments(cell.get("source", ""), found)
    if unread:
        warnings.warn(
            ParameterWarning(
                f"Notebook {notebook_key(path)}: papermill does not read {', '.join(repr(n) for n in unread)} in the parameters "
                f"cell as parameter(s), so -p cannot set them. Its parser drops a line with a second '=' anywhere, "
                f'the comment included (x = "month = 1", or y = ""  # "" = all): rephrase ("month IN (1)", "" means all).'
            ),
            stacklevel=2,
        )
    return {name: _parameter(p) for name, p in found.items()}


def _unread_assignments(source: str, found: Mapping[str, Any]) -> list[str]:
    """Names assigned at the top level of the parameters cell's `source` that papermill's inspection missed."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return [n for n in dict.fromkeys(names) if n not in found]


def _parameter(p: Mapping[str, Any]) -> Parameter:
    annotation = p.get("inferred_type_name") or "None"
    default = str(p.get("default", ""))
    declared, nullable = _annotation_type(annotation)
    if declared is None and annotation == "None":
        try:
            value = ast.literal_eval(default)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = ...  # an expression, not a literal: type unknown
        if value is None:
            nullable = True
        elif value is not ...:
            declared = {
                bool: "bool",
                int: "int",
                float: "float",
                str: "str",
                list: "list",
                tuple: "list",
                dict: "dict",
            }.get(type(value))
    elif default.strip() == "None":
        nullable = True
    return Parameter(name=p["name"], type=declared, default=default, help=str(p.get("help") or ""), nullable=nullable)


def _annotation_type(annotation: str) -> tuple[str | None, bool]:
    text = annotation.replace(" ", "")
    nullable = False
    match = re.fullmatch(r"(?:typing\.)?Optional\[(.+)\]", text)
    if match:
        text, nullable = match.group(1), True
    base = text.split("[", 1)[0].lower()
    base = {
        "string": "str",
        "integer": "int",
        "boolean": "bool",
        "tuple": "list",
        "sequence": "list",
        "mapping": "dict",
    }.get(base, base)
    return (base if base in _TYPES else None), nullable


def describe_parameters(params: Mapping[str, Parameter]) -> str:
    return "; ".join(p.describe() for p in params.values()) or "none"


def check_parameters(
    notebook: str, declared: Mapping[str, Parameter], given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The given parameters converted to their declared types, or ParameterError listing every problem."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name, value in (given or {}).items():
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1, cutoff=0.6)
            problems.append(f"unknown parameter '{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            continue
        ok, converted = _convert(declared[name], value)
        if ok:
            values[name] = converted
        else:
            param = declared[name]
            problems.append(
                f"parameter '{name}' expects {param.type or 'a value'}{' or None' if param.nullable else ''}; "
                f"the {type(value).__name__} given cannot be read as {param.type}"
            )
    if problems:
        raise ParameterError(
            f"Notebook {notebook}: {'; '.join(problems)}. Accepted parameters: {describe_parameters(declared)}."
        )
    return values


def _convert(param: Parameter, value: Any) -> tuple[bool, Any]:
    kind = param.type
    if value is None or (isinstance(value, str) and value.strip() in ("None", "null", "~") and kind != "str"):
        return (param.nullable or kind is None), None
    if kind is None:
        return True, resolve_text(value) if isinstance(value, str) else value
    if isinstance(value, str):
        return _from_text(kind, value)
    if kind == "bool":
        return isinstance(value, bool), value
    if isinstance(value, bool):
        return False, None
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return isinstance(value, int), value
    if kind == "float":
        return isinstance(value, (int, float)), float(value) if isinstance(value, (int, float)) else None
    if kind == "str":
        return isinstance(value, (int, float)), str(value)
    if kind == "list":
        return isinstance(value, (list, tuple)), list(value) if isinstance(value, (list, tuple)) else None
    if kind == "dict":
        return isinstance(value, dict), value
    return True, value


def _from_text(kind: str, text: str) -> tuple[bool, Any]:
    stripped = text.strip()
    try:
        if kind == "str":
            return True, text
        if kind == "int":
            return True, int(stripped)
        if kind == "float":
            return True, float(stripped)
        if kind == "bool":
            low = stripped.lower()
            if low in _TRUE or low in _FALSE:
                return True, low in _TRUE
            return False, None
        parsed = yaml.safe_load(stripped) if stripped else None
        if kind == "list":
            if isinstance(parsed, list):
                return True, parsed
            return True, [item.strip() for item in stripped.split(",") if item.strip()]
        if kind == "dict":
            return isinstance(parsed, dict), parsed
    except (ValueError, yaml.YAMLError):
        return False, None
    return True, text


def resolve_text(text: str) -> Any:
    """papermill's reading of an untyped `-p` value: True/False/None, an int, a float, else the text."""
    if text == "True":
        return True
    if text == "False":
        return False
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
