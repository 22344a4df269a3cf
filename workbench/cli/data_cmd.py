"""`workbench data`: what you may read, the read audit, catalog checks, and publishing governed views."""

from __future__ import annotations

import argparse
import json

from ..config import load_settings

EXAMPLES = [
    ("workbench data list", "the datasets you may read, and at what level"),
    ("workbench data audit --user ada", "who read what, when"),
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="governed data: what you may read, the audit log, publishing governed views",
        description="Governed access to the lake's datasets (masks, row filters, grants) and the audit of every read.",
    )
    p.set_defaults(deprecated_verbs={"catalog": "list"})  # `data catalog`, the old spelling, for one release
    data = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    ls = data.add_parser(
        "list",
        help="list the datasets you may read and at what level",
        description="List the datasets the current identity may read, the level (masked or full), the row "
        "filter that applies, and how each sensitive column is masked.",
    )
    ls.add_argument("--all", action="store_true", help="also list datasets you have no access to")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_catalog)

    aud = data.add_parser(
        "audit",
        help="query the read audit log",
        description="Print audit records (one per load, allowed or denied), oldest first.",
    )
    aud.add_argument("--user", help="only this user")
    aud.add_argument("--dataset", help="only this dataset")
    aud.add_argument(
        "--since",
        type=_since,
        help="only records at or after T: a duration (30m, 2h, 7d) or an ISO date/time (UTC unless an offset is given)",
    )
    aud.add_argument("--outcome", choices=("allowed", "denied", "unknown-dataset", "error"), help="only this outcome")
    aud.add_argument("--json", action="store_true", help="print JSON lines")
    aud.add_argument(
        "--verify",
        action="store_true",
        help="check the hash chain of the whole log: names every record that was edited, removed, inserted or reordered",
    )
    aud.set_defaults(func=run_audit)

    chk = data.add_parser(
        "check",
        help="validate the catalog against the data",
        description="Load the catalog (format, levels, masks, grants) and compare each dataset's columns "
        "and types with the data; check every row filter and sql mask compiles.",
    )
    chk.set_defaults(func=run_check)

    add = data.add_parser(
        "add",
        help="register a parquet folder in the catalog (schema inferred)",
        description="Read the parquet folder at PATH, infer its schema with Spark type names and its partition "
        "columns, and append a validated entry NAME to the catalog. Every column starts 'internal': "
        "classify the pii and sensitive ones (a warning lists columns that look like identifiers), and "
        "add modelling roles if models will be trained on it.",
    )
    add.add_argument("name", help="catalog name of the new dataset")
    add.add_argument("path", help="parquet folder (a local path or any Hadoop-filesystem URI)")
    add.add_argument("--owner", default="data-stewards", help="owning group (default: data-stewards)")
    add.add_argument("--description", default="", help="one sentence about the data")
    add.set_defaults(func=run_add)

    pub = data.add_parser(
        "publish",
        help="materialise governed views (masked, per row-filter group) into the governed zone",
        description="Write each dataset's governed views into the governed zone (setting governed_dir), "
        "swapped in atomically. With permissions (default in the production profile) also "
        "set owner, group, mode and ACLs so the raw zone is readable only by the service "
        "account and groups with full access. Run it as the data service account or root.",
    )
    pub.add_argument("datasets", nargs="*", help="datasets to publish (default: all)")
    perm = pub.add_mutually_exclusive_group()
    perm.add_argument(
        "--permissions", dest="permissions", action="store_true", default=None, help="set filesystem permissions"
    )
    perm.add_argument("--no-permissions", dest="permissions", action="store_false", help="only write the views")
    pub.set_defaults(func=run_publish)


def _since(text: str):
    from ..data.audit import parse_since
    from ..errors import ConfigError

    try:
        return parse_since(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_catalog(args: argparse.Namespace) -> int:
    from ..data.access import catalog
    from ..identity import current_identity

    settings = load_settings()
    entries = catalog(settings, include_denied=args.all)
    if args.json:
        import dataclasses

        print(json.dumps([dataclasses.asdict(e) for e in entries], indent=2))
        return 0
    me = current_identity(settings)
    print(f"{me.user} (groups: {', '.join(me.groups) or 'none'}; identity: {me.source})")
    for e in entries:
        masked = [f"{c.name}={c.mask}" for c in e.columns if c.mask]
        extra = (f"  rows: {e.row_filter}" if e.row_filter else "") + (
            f"  masks: {', '.join(masked)}" if masked else ""
        )
        print(f"  {e.name:<12} {e.level:<7} owner {e.owner}{extra}")
    if not entries:
        print("  (no datasets: ask a dataset owner for a grant)")
    return 0


def run_audit(args: argparse.Namespace) -> int:
    from ..data.audit import query, verify

    settings = load_settings()
    if args.verify:
        result = verify(settings)
        for problem in result.problems:
            print(f"TAMPERED {_safe(problem)}")
        if not result.ok:
            print(
                f"{result.folder}: {len(result.problems)} problem(s) in {result.records} record(s); the log was changed"
            )
            return 65  # EX_DATAERR
        last = f"; newest seq {result.last[0]} hash {result.last[1]}" if result.last else ""
        print(f"{result.folder}: intact, {result.records} record(s) in {result.files} day file(s){last}")
        return 0
    result = query(settings, user=args.user, dataset=args.dataset, since=args.since, outcome=args.outcome)
    for r in result.records:
        if args.json:
            print(json.dumps(r))  # JSON escapes every control character
        else:
            print(audit_line(r))
    if result.skipped_lines:
        print(
            f"warning: {result.skipped_lines} line(s) of the audit log are not JSON (a write cut short) and were skipped"
        )
    return 0


def audit_line(r: dict) -> str:
    """One record as one line of text; every field escaped, so no value can start a line or colour the terminal."""
    cols = ",".join(map(str, r["columns"])) if r.get("columns") else "*"
    groups = ",".join(map(str, r["groups"])) if r.get("groups") else "-"
    fields = [
        f"{_safe(r.get('time'))[:19]} ",
        f"{_safe(r.get('outcome')):<8}",
        f"{_safe(r.get('user')):<14}",
        f"{_safe(r.get('dataset')):<10}",
        f"level={_safe(r.get('level'))}",
        f"view={_safe(r.get('view'))}",
        f"columns={_safe(cols)}",
        f"where={_safe(r.get('where'))}",
        f"purpose={_safe(r.get('purpose'))}",
        f"groups={_safe(groups)}",
        f"source={_safe(r.get('source'))}",
    ]
    if r.get("reason"):
        fields.append(f"reason={_safe(r['reason'])}")
    if r.get("refers") is not None:
        fields.append(f"refers={_safe(r['refers'])}")
    if r.get("seq") is not None:
        fields.append(f"seq={_safe(r['seq'])}")
    return " ".join(fields)


def _safe(value) -> str:
    """The value with control characters (newline, escape, ...) and backslashes shown as escapes."""
    if value is None or value == "":
        return "-"
    text = str(value)
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or 0x7F <= code < 0xA0 or ch in "\u2028\u2029":
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def run_check(args: argparse.Namespace) -> int:
    from ..data.checks import check_catalog
    from ..errors import CatalogError

    settings = load_settings()
    report = check_catalog(settings)
    by_dataset: dict[str, list] = {}
    for finding in report.findings:
        by_dataset.setdefault(finding.dataset, []).append(finding)
    for finding in by_dataset.get("", []):
        print(f"{finding.severity}: {finding.message}")
    for name in report.datasets:
        found = by_dataset.get(name, [])
        errors = sum(f.severity == "error" for f in found)
        unclassified = report.unclassified.get(name)
        note = f" (not in the catalog, withheld below full: {', '.join(unclassified)})" if unclassified else ""
        print(f"  {name:<12} {'ok' if not errors else f'{errors} error(s)'}{note}")
        for finding in found:
            print(f"    {finding.severity}: {finding.message}")
    if not report.ok:
        print(f"{report.path}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
        return CatalogError.exit_code
    print(f"{report.path}: valid" + (f", {len(report.warnings)} warning(s)" if report.warnings else ""))
    return 0


def run_add(args: argparse.Namespace) -> int:
    import sys

    from ..data.register import add_dataset, describe
    from ..spark import get_spark

    settings = load_settings()
    spark = get_spark("workbench-data-add", settings)
    entry, candidates = describe(spark, args.path, args.owner, args.description)
    path = add_dataset(settings, args.name, args.path, args.owner, entry=entry)
    print(f"{path}: added '{args.name}' ({len(entry['columns'])} columns, every one 'internal')")
    if candidates:
        print(
            f"warning: column(s) {', '.join(candidates)} look like identifiers: classify them (classification: pii, "
            f"mask: hash) in {path} before granting 'masked' access.",
            file=sys.stderr,
        )
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from ..data.publish import publish

    settings = load_settings()
    views = publish(settings, datasets=args.datasets or None, permissions=args.permissions)
    for v in views:
        for warning in v.warnings:
            print(f"warning: {warning}")
    print(
        f"published {len(views)} view(s) to {settings.governed_uri}"
        + (" with permissions" if views and views[0].permissions else "")
    )
    return 0
