"""Policy: which grant a caller reads through, and the masks and row filter that grant implies.

Pure decisions (`effective_grant`, `view_name`) are apart from the Spark expressions that carry
them out (`govern`). Masks are Spark SQL expressions, never Python UDFs, so they run inside the
JVM at scan speed, and every masked column keeps its name and type (except `drop`, which removes it).

A caller in several groups reads through ONE grant: the highest level; between equal levels an
unfiltered grant before a filtered one; then the first group name. Grants do not combine, so a
caller never sees rows of one grant with the masks of another.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import CatalogError
from .catalog import LEVEL_FULL, LEVEL_MASKED, LEVEL_NONE, LEVELS, Catalog, Column, Dataset, check_schema
from .keys import HashKey

if TYPE_CHECKING:
    from pyspark.sql import Column as SparkColumn
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

__all__ = [
    "Grant",
    "effective_grant",
    "view_name",
    "readers_of",
    "govern",
    "mask_expression",
    "hash_expression",
    "fence",
    "views_of",
    "REDACTED",
    "VIEW_MASKED",
    "VIEW_RAW",
]

REDACTED = "[redacted]"
VIEW_MASKED = "masked"
VIEW_RAW = "raw"
_RANK = {level: i for i, level in enumerate(LEVELS)}


@dataclass(frozen=True)
class Grant:
    """The grant a read goes through: its level, the group that gives it, and that group's row filter."""

    level: str
    group: str
    row_filter: str | None = None

    @property
    def view(self) -> str:
        return view_name(self.level, self.group if self.row_filter else None)


def view_name(level: str, filter_group: str | None) -> str:
    """Name of the governed view a grant reads: `raw` (full, unfiltered), `masked`, or `filtered-<group>`."""
    if filter_group:
        return f"filtered-{filter_group}"
    return VIEW_RAW if level == LEVEL_FULL else VIEW_MASKED


def effective_grant(catalog: Catalog, dataset: Dataset, groups: Iterable[str]) -> Grant | None:
    """The one grant `groups` read `dataset` through, or None when no group has access."""
    grants = catalog.grants_for(dataset)
    candidates = [
        Grant(grants[g], g, dataset.row_filters.get(g)) for g in set(groups) if grants.get(g, LEVEL_NONE) != LEVEL_NONE
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda c: (-_RANK[c.level], c.row_filter is not None, c.group))


def readers_of(catalog: Catalog, dataset: Dataset, view: str) -> list[str]:
    """Groups that read `view` of `dataset` (sorted); unfiltered full groups read every view."""
    grants = catalog.grants_for(dataset)
    full = {g for g, level in grants.items() if level == LEVEL_FULL and g not in dataset.row_filters}
    if view == VIEW_RAW:
        return sorted(full)
    if view == VIEW_MASKED:
        return sorted(
            full | {g for g, level in grants.items() if level == LEVEL_MASKED and g not in dataset.row_filters}
        )
    group = view.removeprefix("filtered-")
    return sorted(full | {group})


def views_of(catalog: Catalog, dataset: Dataset) -> list[Grant]:
    """The governed views `publish` writes for a dataset: `masked`, and one per row-filtered group."""
    grants = catalog.grants_for(dataset)
    views = [Grant(LEVEL_MASKED, "", None)]
    for group, predicate in sorted(dataset.row_filters.items()):
        views.append(Grant(grants[group], group, predicate))
    return views


# ---- Spark ----------------------------------------------------------------------------------
GOVERNED_ALIAS = "governed"  # the subquery alias that fences a governed view off from the raw plan below it
_INT_LIMITS = {"bigint": 2**63 - 1, "int": 2**31 - 1, "smallint": 2**15 - 1, "tinyint": 2**7 - 1}


def _as_key(key: HashKey | str) -> HashKey:
    return key if isinstance(key, HashKey) else HashKey(str(key).encode(), False, "salt")


def hash_expression(col: SparkColumn, type_name: str, key: HashKey | str) -> SparkColumn:
    """The pseudonym of a string or integer column: HMAC-SHA256 (production key) or salted SHA-256
    (development), as 64 lowercase hex digits for strings, folded into the column's own range for integers."""
    from pyspark.sql import functions as F

    key = _as_key(key)
    text = col.cast("string")
    if key.hmac:
        digest = _hmac_sha256_hex(key.secret, text.cast("binary"))
    else:
        digest = F.sha2(F.concat(F.lit(key.secret.decode()), text), 256)
    if type_name == "string":
        return digest
    if key.hmac:  # 60 bits of the MAC as a number, folded into the column's range
        number = F.conv(F.substring(digest, 1, 15), 16, 10).cast("bigint")
    else:  # a salted 64-bit hash (unchanged, so development pseudonyms stay stable)
        number = F.xxhash64(F.lit(key.secret.decode()), col)
    return F.when(col.isNull(), F.lit(None)).otherwise(F.pmod(number, F.lit(_INT_LIMITS[type_name])))


def _hmac_sha256_hex(secret: bytes, message: SparkColumn) -> SparkColumn:
    """HMAC-SHA256 (RFC 2104) as lowercase hex, written with Spark's sha2: H((K^opad) || H((K^ipad) || m)).
    Spark's own `hmac` function builds a javax.crypto.Mac for every row, which made it about 3x slower than
    this on a million short strings; the result is the same (a test compares it with Python's hmac)."""
    from pyspark.sql import functions as F

    block = (hashlib.sha256(secret).digest() if len(secret) > 64 else secret).ljust(64, b"\0")
    ipad, opad = bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)
    inner = F.unhex(F.sha2(F.concat(F.lit(ipad), message), 256))
    return F.sha2(F.concat(F.lit(opad), inner), 256)


def mask_expression(column: Column, data_type, key: HashKey | str) -> SparkColumn | None:
    """The Spark expression that masks `column` (None for `drop`). Keeps the name and the Spark type.
    `key` is the hash key (`keys.hash_key(settings)`); a plain string is a development salt."""
    from pyspark.sql import functions as F

    col = F.col(f"`{column.name}`")
    kind = column.mask.kind if column.mask else None
    type_name = data_type.simpleString()
    if kind == "drop":
        return None
    if kind == "hash":
        out = hash_expression(col, type_name, key)
    elif kind == "redact":
        out = F.when(col.isNull(), F.lit(None)).otherwise(F.lit(REDACTED))
    elif kind == "null":
        out = F.lit(None)
    elif kind == "year_only":
        out = F.trunc(col, "year") if type_name == "date" else F.date_trunc("year", col)
    elif kind == "sql":
        out = F.expr(column.mask.sql)
    else:
        raise CatalogError(f"column '{column.name}' has no mask to apply")  # unreachable: validated on load
    return out.cast(data_type).alias(column.name)


def govern(df: DataFrame, catalog: Catalog, dataset: Dataset, grant: Grant, key: HashKey | str) -> DataFrame:
    """Apply `grant` to a DataFrame of the raw data: its row filter first (on raw values), then the
    masks. At the masked level, data columns the catalog does not describe are left out.
    Checks the catalog against the data's schema on the way (CatalogError naming the column).

    The result is fenced (`fence`): a predicate, sort or select on it resolves only against the
    governed columns, never against a raw column that the masks left out or replaced."""
    from pyspark.errors import AnalysisException, ParseException
    from pyspark.sql import functions as F

    unclassified = check_schema(catalog, dataset, df.schema)
    if grant.row_filter:
        try:
            df = df.where(F.expr(grant.row_filter))
            df.schema  # analyse now, so a bad predicate fails here with the catalog's name for it
        except (AnalysisException, ParseException) as exc:
            raise CatalogError(
                f"{catalog.path}: dataset '{dataset.name}', field 'row_filters', group '{grant.group}': the predicate "
                f"is not valid Spark SQL for this data ({exc.__class__.__name__}: {_first_line(exc)})."
            ) from exc
    if grant.level == LEVEL_FULL:
        return fence(df)
    if unclassified:
        log.warning(
            "dataset '%s': column(s) %s are not in the catalog and are left out below level 'full'. "
            "Ask the owner (%s) to classify them.",
            dataset.name,
            ", ".join(unclassified),
            dataset.owner,
        )
    selected = []
    for f in df.schema.fields:
        column = dataset.column(f.name)
        if column is None:
            continue  # unclassified: not released below full
        if column.mask is None:
            selected.append(F.col(f"`{f.name}`"))
            continue
        expr = mask_expression(column, f.dataType, key)
        if expr is None:
            continue
        if column.mask.kind == "sql":
            try:
                df.select(expr).schema
            except (AnalysisException, ParseException) as exc:
                raise CatalogError(
                    f"{catalog.path}: dataset '{dataset.name}', column '{f.name}', field 'mask': the sql mask is not "
                    f"valid Spark SQL for this data ({exc.__class__.__name__}: {_first_line(exc)})."
                ) from exc
        selected.append(expr)
    return fence(df.select(*selected))


def fence(df: DataFrame) -> DataFrame:
    """`df` behind a subquery alias. Spark resolves a name a Filter or Sort cannot find in its input by
    looking through the Projects below it (so `where("engine = ...")` on a view that dropped `engine`
    would filter on the raw column); a SubqueryAlias stops that search, so only the view's own
    columns, with their masked values, can be named on top of it."""
    return df.alias(GOVERNED_ALIAS)


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else exc.__class__.__name__
