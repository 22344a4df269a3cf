"""The dataset catalog: names -> URI, format, zone, owner, columns with classification and mask,
and the grants that say which groups may read what, at which level.

The catalog is a YAML file (`catalog_path` setting), validated when it is loaded; every error names
the file, the dataset and the field. URIs may use `{lake}` for the lake root so one catalog serves
a laptop and a cluster.

    version: 1
    default_dataset: flights       # optional: the dataset a notebook's `dataset = ""` means
    grants:                        # group -> level for every dataset: none, masked or full
      data-stewards: full
      data-scientists: masked
      stakeholders: none
    datasets:
      flights:
        uri: '{lake}/raw/flights'
        format: parquet
        zone: raw                  # raw or curated
        owner: data-stewards
        description: ...
        grants: {jfk-ops: masked}  # optional: per-dataset grants, overriding the top-level ones
        row_filters:               # optional: group -> Spark SQL predicate applied to its reads
          jfk-ops: "origin = 'JFK'"
        columns:
          tailnum: {type: string, classification: pii, mask: hash}
          time_hour: {type: timestamp, classification: sensitive, mask: year_only}
          note: {type: string, classification: sensitive, mask: {sql: "left(note, 3)"}}
        roles:                     # optional: modelling roles (workbench.data.roles documents them)
          target: {column: arr_delay, name: late, kind: binary, positive: "> 15"}

Columns default to classification `internal`. Sensitive and pii columns must have a mask; other
columns must not. Loading is strict: a duplicate key, an unknown field, a type Spark does not name or a
mask that is the column itself is an error, and every problem of the file is reported at once
(CatalogInvalid). `check_schema` compares a dataset's columns with the data itself; the checks that
need data (masks that change nothing, unmasked columns that give a masked one away) are in `checks`.
The catalog knows no dataset in particular (the sample lake writes its own first catalog).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import Settings
from ..errors import CatalogError, CatalogInvalid, UnknownDataset
from ..storage import atomic_write_text
from .roles import Roles, parse_roles

__all__ = [
    "Column",
    "Mask",
    "Dataset",
    "Catalog",
    "load_catalog",
    "parse_catalog",
    "read_catalog_text",
    "check_schema",
    "schema_problems",
    "spark_schema_columns",
    "write_catalog",
    "valid_spark_type",
    "SPARK_TYPES",
    "LEVELS",
    "LEVEL_NONE",
    "LEVEL_MASKED",
    "LEVEL_FULL",
    "CLASSIFICATIONS",
    "MASK_KINDS",
    "ZONES",
]

LEVEL_NONE, LEVEL_MASKED, LEVEL_FULL = "none", "masked", "full"
LEVELS = (LEVEL_NONE, LEVEL_MASKED, LEVEL_FULL)  # in order of increasing access
CLASSIFICATIONS = ("public", "internal", "sensitive", "pii")
MASKED_CLASSES = frozenset({"sensitive", "pii"})
MASK_KINDS = ("hash", "redact", "null", "drop", "year_only", "sql")
ZONES = ("raw", "curated")

# Which Spark types each built-in mask accepts (simpleString prefixes); None means any type.
MASK_TYPES: dict[str, tuple[str, ...] | None] = {
    "hash": ("string", "int", "bigint", "smallint", "tinyint"),
    "redact": ("string",),
    "null": None,
    "drop": None,
    "year_only": ("date", "timestamp", "timestamp_ntz"),
    "sql": None,
}
GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
TOP_KEYS = frozenset({"version", "default_dataset", "grants", "datasets"})
DATASET_KEYS = frozenset(
    {"uri", "format", "zone", "owner", "description", "partitioning", "columns", "grants", "row_filters", "roles"}
)
COLUMN_KEYS = frozenset({"type", "classification", "mask", "description"})


@dataclass(frozen=True)
class Mask:
    kind: str  # one of MASK_KINDS
    sql: str = ""  # the Spark SQL expression when kind == "sql"

    def __str__(self) -> str:
        return f"sql: {self.sql}" if self.kind == "sql" else self.kind


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str = ""
    classification: str = "internal"
    mask: Mask | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    uri: str
    format: str
    owner: str
    description: str
    zone: str = "raw"
    partitioning: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    grants: dict[str, str] = field(default_factory=dict)  # per-dataset overrides: group -> level
    row_filters: dict[str, str] = field(default_factory=dict)  # group -> Spark SQL predicate
    roles: Roles = field(default_factory=Roles)  # modelling roles (workbench.data.roles), optional

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass
class Catalog:
    path: Path
    datasets: dict[str, Dataset] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    grants: dict[str, str] = field(default_factory=dict)  # group -> level for every dataset
    default_dataset: str = ""  # what a notebook's `dataset = ""` means ("": none declared)

    def get(self, name: str) -> Dataset:
        if name not in self.datasets:
            raise UnknownDataset(unknown_dataset_message(name, self.datasets, self.path))
        return self.datasets[name]

    def grants_for(self, dataset: Dataset) -> dict[str, str]:
        """group -> level for one dataset: the top-level grants with the dataset's own on top."""
        return {**self.grants, **dataset.grants}

    @property
    def groups(self) -> list[str]:
        names = set(self.grants)
        for ds in self.datasets.values():
            names.update(ds.grants)
        return sorted(names)


def unknown_dataset_message(name: str, known: Iterable[str], path: Path | str) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"No dataset named '{name}' in the catalog {path}.{hint} Known datasets: {', '.join(known)}."


# ---- loading and validation ------------------------------------------------------------------
# Spark type names (DataType.simpleString) a column's `type` may take; decimal(p,s), array<T>,
# map<K,V> and struct<name:T,...> are built from them.
SPARK_TYPES = (
    "string",
    "boolean",
    "tinyint",
    "smallint",
    "int",
    "bigint",
    "float",
    "double",
    "date",
    "timestamp",
    "timestamp_ntz",
    "binary",
)
_DECIMAL_RE = re.compile(r"^decimal\((\d+),(\d+)\)$")
_IDENT_RE = re.compile(r"^\(*\s*`?([A-Za-z_][A-Za-z0-9_]*)`?\s*\)*$")


class _Problems:
    """Collects every problem of one catalog file, so a check reports them all at once."""

    def __init__(self, path: Path):
        self.path = path
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(f"{self.path}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise CatalogInvalid(self.items)


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that records duplicate mapping keys (YAML silently keeps the last one)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates: list[tuple[str, int, int]] = []  # (key, first line, second line), 1-based

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *anchor` merges are explicit overrides, not duplicates
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key: construct_mapping reports it
                line = key_node.start_mark.line + 1
                if first is not None:
                    self.duplicates.append((str(key), first, line))
                else:
                    seen[key] = line
        return super().construct_mapping(node, deep)


def read_catalog_text(text: str, path: Path | str) -> tuple[Any, list[str]]:
    """Parse catalog YAML: (document, problems), a problem for each duplicate key naming both lines."""
    path = Path(path)
    loader = _StrictLoader(text)
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path} is not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    problems = [
        f"{path}: key '{key}' appears twice, at lines {first} and {second}; YAML would silently keep only the "
        "second (which can remove a mask or raise a grant). Keep one."
        for key, first, second in loader.duplicates
    ]
    return doc or {}, problems


def load_catalog(settings: Settings) -> Catalog:
    path = settings.path("catalog_path")
    if not path.exists():
        raise CatalogError(
            f"No catalog at {path}. Run `workbench lake init` to create the sample lake and its catalog, or set WORKBENCH_CATALOG_PATH."
        )
    raw, problems = read_catalog_text(path.read_text(), path)
    return parse_catalog(raw, path, settings.lake, problems=problems)


def parse_catalog(raw: Any, path: Path | str, lake: str, problems: Iterable[str] = ()) -> Catalog:
    """Validate a catalog document and build the Catalog.

    Raises CatalogInvalid (a CatalogError) listing every problem found, each naming file, dataset and field;
    `problems` are ones found earlier (duplicate keys) and are reported with the rest.
    """
    path = Path(path)
    found = _Problems(path)
    found.items.extend(problems)
    if not isinstance(raw, dict):
        found.add(f"the catalog must be a mapping with 'datasets' and 'grants', found a {type(raw).__name__}.")
        found.raise_if_any()
    _unknown_keys(found, "the catalog", raw, TOP_KEYS)
    grants = _grants(found, "top-level 'grants'", raw.get("grants"))
    datasets_raw = raw.get("datasets") or {}
    if not isinstance(datasets_raw, dict):
        found.add(f"'datasets' must be a mapping of dataset names, found a {type(datasets_raw).__name__}.")
        datasets_raw = {}
    datasets = {}
    for name, spec in datasets_raw.items():
        ds = _dataset(found, str(name), spec, lake, grants)
        if ds is not None:
            datasets[str(name)] = ds
    default = _default_dataset(found, raw.get("default_dataset"), datasets_raw)
    found.raise_if_any()
    return Catalog(path=path, datasets=datasets, raw=raw, grants=grants, default_dataset=default)


def _default_dataset(found: _Problems, value: Any, datasets: dict) -> str:
    """The top-level `default_dataset`: it must name a dataset of the catalog."""
    if value is None:
        return ""
    names = sorted(str(n) for n in datasets)
    if not isinstance(value, str) or not value:
        found.add(f"top-level 'default_dataset' must be the name of a dataset of the catalog ({', '.join(names)}).")
        return ""
    if value not in names:
        close = difflib.get_close_matches(value, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        found.add(
            f"top-level 'default_dataset' names '{value}', which is not a dataset of the catalog.{hint} "
            f"Known datasets: {', '.join(names)}."
        )
        return ""
    return value


def _unknown_keys(found: _Problems, where: str, spec: dict, known: frozenset[str]) -> None:
    for key in spec:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            found.add(f"{where} has an unknown field '{key}'.{hint} Known fields: {', '.join(sorted(known))}.")


def _grants(found: _Problems, where: str, spec: Any) -> dict[str, str]:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        found.add(f"{where} must map group names to a level ({', '.join(LEVELS)}), found a {type(spec).__name__}.")
        return {}
    out = {}
    for group, level in spec.items():
        group = str(group)
        if not GROUP_RE.match(group):
            found.add(f"{where}: group name '{group}' is invalid; use letters, digits, '.', '_' and '-'.")
            continue
        if level not in LEVELS:
            close = difflib.get_close_matches(str(level), LEVELS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            found.add(
                f"{where}: group '{group}' is granted an undefined level '{level}'; expected one of {', '.join(LEVELS)}.{hint}"
            )
            continue
        out[group] = level
    return out


def _dataset(found: _Problems, name: str, spec: Any, lake: str, top_grants: dict[str, str]) -> Dataset | None:
    where = f"dataset '{name}'"
    if not isinstance(spec, dict):
        found.add(f"{where} must be a mapping of fields (uri, owner, columns, ...), found a {type(spec).__name__}.")
        return None
    before = len(found.items)
    _unknown_keys(found, where, spec, DATASET_KEYS)

    def need(key: str) -> str:
        if not spec.get(key):
            found.add(f"{where} has no '{key}'. Add it.")
            return ""
        return str(spec[key])

    uri, owner = need("uri"), need("owner")
    zone = str(spec.get("zone", "raw"))
    if zone not in ZONES:
        found.add(f"{where}, field 'zone': expected one of {', '.join(ZONES)}, found '{zone}'.")
    columns_raw = spec.get("columns") or {}
    if not isinstance(columns_raw, dict):
        found.add(f"{where}, field 'columns' must map column names to their description.")
        columns_raw = {}
    columns = tuple(c for col, spec_c in columns_raw.items() if (c := _column(found, name, str(col), spec_c)))
    grants = _grants(found, f"{where}, field 'grants'", spec.get("grants"))
    row_filters = _row_filters(found, where, spec.get("row_filters"), {**top_grants, **grants})
    partitioning = spec.get("partitioning") or ()
    if isinstance(partitioning, str) or not all(isinstance(p, str) for p in partitioning):
        found.add(f"{where}, field 'partitioning' must be a list of column names.")
        partitioning = ()
    try:
        roles = parse_roles(found.path, name, spec.get("roles"), [c.name for c in columns])
    except CatalogError as exc:  # every role problem of the dataset, in one message; reported with the rest
        found.items.append(str(exc))
        roles = None
    if len(found.items) > before:
        return None
    return Dataset(
        name=name,
        uri=uri.replace("{lake}", lake),
        format=str(spec.get("format", "parquet")),
        owner=owner,
        description=str(spec.get("description", "")),
        zone=zone,
        partitioning=tuple(partitioning),
        columns=columns,
        grants=grants,
        row_filters=row_filters,
        roles=roles,
    )


def _row_filters(found: _Problems, where: str, spec: Any, grants: dict[str, str]) -> dict[str, str]:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        found.add(f"{where}, field 'row_filters' must map group names to a Spark SQL predicate.")
        return {}
    out = {}
    for group, predicate in spec.items():
        group = str(group)
        if grants.get(group, LEVEL_NONE) == LEVEL_NONE:
            found.add(
                f"{where}, field 'row_filters': group '{group}' has a row filter but no grant to this dataset. "
                f"Grant it a level ('masked' or 'full') in 'grants', or remove the filter."
            )
        elif not isinstance(predicate, str) or not predicate.strip():
            found.add(
                f"{where}, field 'row_filters': the filter of group '{group}' must be a non-empty Spark SQL predicate."
            )
        else:
            out[group] = predicate.strip()
    return out


def valid_spark_type(name: str) -> bool:
    """True for a Spark type name as `DataType.simpleString()` writes it (see SPARK_TYPES)."""
    name = name.strip()
    if name in SPARK_TYPES or _DECIMAL_RE.match(name):
        return True
    for prefix, arity in (("array<", 1), ("map<", 2), ("struct<", 0)):
        if name.startswith(prefix) and name.endswith(">"):
            parts = _split_top(name[len(prefix) : -1])
            if arity == 0:
                fields = [p.partition(":") for p in parts]
                return bool(parts) and all(f and sep and valid_spark_type(t) for f, sep, t in fields)
            return len(parts) == arity and all(valid_spark_type(p) for p in parts)
    return False


def _split_top(text: str) -> list[str]:
    """Split on the commas that are not inside <...> or (...)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "<("
        depth -= ch in ">)"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _column(found: _Problems, dataset: str, name: str, spec: Any) -> Column | None:
    where = f"dataset '{dataset}', column '{name}'"
    spec = spec or {}
    if not isinstance(spec, dict):
        found.add(f"{where} must be a mapping (type, classification, mask), found a {type(spec).__name__}.")
        return None
    before = len(found.items)
    _unknown_keys(found, where, spec, COLUMN_KEYS)
    ctype = str(spec.get("type", "string"))
    if not valid_spark_type(ctype):
        close = difflib.get_close_matches(ctype, SPARK_TYPES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        found.add(
            f"{where}, field 'type': '{ctype}' is not a Spark type name.{hint} Use one of {', '.join(SPARK_TYPES)}, "
            "decimal(p,s), array<T>, map<K,V> or struct<name:T,...> (as Spark's simpleString writes them)."
        )
    classification = str(spec.get("classification", "internal"))
    if classification not in CLASSIFICATIONS:
        found.add(
            f"{where}, field 'classification': expected one of {', '.join(CLASSIFICATIONS)}, found '{classification}'."
        )
    mask = _mask(found, where, name, spec.get("mask"))
    if classification in MASKED_CLASSES and mask is None and "mask" not in spec:
        found.add(
            f"{where} is classified '{classification}' but has no 'mask'. Add one of {', '.join(MASK_KINDS[:-1])} or {{sql: <expression>}}."
        )
    if classification in CLASSIFICATIONS and classification not in MASKED_CLASSES and mask is not None:
        found.add(
            f"{where} has a mask but is classified '{classification}'; masks apply to sensitive and pii columns. Classify it sensitive or pii, or remove the mask."
        )
    if mask is not None:
        accepted = MASK_TYPES[mask.kind]
        if accepted is not None and ctype not in accepted:
            found.add(
                f"{where}, field 'mask': '{mask.kind}' applies to columns of type {', '.join(accepted)}; this column is '{ctype}'. Use null, drop or a sql mask."
            )
    if len(found.items) > before:
        return None
    return Column(name, ctype, str(spec.get("description", "")), classification, mask)


def _mask(found: _Problems, where: str, column: str, spec: Any) -> Mask | None:
    if spec is None:
        return None
    if isinstance(spec, dict):
        if set(spec) != {"sql"} or not isinstance(spec["sql"], str) or not spec["sql"].strip():
            found.add(
                f"{where}, field 'mask': a custom mask is written {{sql: <Spark SQL expression>}}, found a mapping with keys {', '.join(map(str, spec))}."
            )
            return None
        sql = spec["sql"].strip()
        same = _IDENT_RE.match(sql)
        if same and same.group(1).lower() == column.lower():
            found.add(
                f"{where}, field 'mask': the sql mask is the column itself, so it releases the raw value. "
                "Write an expression that changes it (a truncation, a bucket, a hash), or use a built-in mask."
            )
            return None
        return Mask("sql", sql)
    if spec not in MASK_KINDS or spec == "sql":
        close = difflib.get_close_matches(str(spec), MASK_KINDS[:-1], n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        found.add(
            f"{where}, field 'mask': unknown mask '{spec}'; expected one of {', '.join(MASK_KINDS[:-1])} or {{sql: <expression>}}.{hint}"
        )
        return None
    return Mask(str(spec))


# ---- checking against the data ---------------------------------------------------------------
def schema_problems(catalog: Catalog, dataset: Dataset, schema) -> tuple[list[str], list[str]]:
    """(problems, unclassified): every catalog column that is not in the data or has another type, and
    the names of data columns the catalog does not describe (never released below `full`)."""
    types = {f.name: f.dataType.simpleString() for f in schema.fields}
    problems = []
    for col in dataset.columns:
        if col.name not in types:
            problems.append(
                f"{catalog.path}: dataset '{dataset.name}', column '{col.name}': not in the data at {dataset.uri}. "
                f"Columns in the data: {', '.join(types)}. Fix the name or remove the column."
            )
        elif types[col.name] != col.type:
            problems.append(
                f"{catalog.path}: dataset '{dataset.name}', column '{col.name}', field 'type': the catalog says "
                f"'{col.type}', the data has '{types[col.name]}'. Correct the catalog."
            )
    return problems, [name for name in types if dataset.column(name) is None]


def check_schema(catalog: Catalog, dataset: Dataset, schema) -> list[str]:
    """Compare the catalog's columns with a Spark schema of the data.

    Raises CatalogInvalid naming every catalog column that is not in the data or has another type.
    Returns the names of data columns the catalog does not describe (unclassified: never released
    at the masked level).
    """
    problems, unclassified = schema_problems(catalog, dataset, schema)
    if problems:
        raise CatalogInvalid(problems)
    return unclassified


# ---- writing a catalog ------------------------------------------------------------------------
def spark_schema_columns(df) -> dict[str, dict[str, str]]:
    """The `columns` mapping of a catalog entry for a DataFrame: every column `internal`, with its Spark type."""
    return {f.name: {"type": f.dataType.simpleString()} for f in df.schema.fields}


def write_catalog(settings: Settings, document: dict[str, Any]) -> Path:
    """Validate a catalog document and write it (atomically) to the `catalog_path` setting."""
    path = settings.path("catalog_path")
    parse_catalog(document, path, settings.lake)
    atomic_write_text(path, yaml.safe_dump(document, sort_keys=False))
    return path
