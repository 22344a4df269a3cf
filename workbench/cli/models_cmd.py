"""`workbench models`: list, show, promote and roll back registered model versions."""

from __future__ import annotations

import argparse
import json

from ..config import load_settings

EXAMPLES = [("workbench models list", "registered model versions with aliases, metrics and lineage")]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list, show, promote and roll back registered models",
        description="The MLflow model registry, by aliases: 'champion' is what serving loads, "
        "'challenger' is the latest candidate. Every alias move is recorded.",
    )
    models = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    ls = models.add_parser(
        "list",
        help="versions of a model with aliases, metrics and lineage",
        description="List every version of NAME (default: the model_name setting; with neither, every "
        "registered model), newest first.",
    )
    ls.add_argument("name", nargs="?", help="registered model name (default: the model_name setting, else all)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)

    show = models.add_parser(
        "show",
        help="one version: metrics, parameters, lineage, alias history",
        description="Show version REF (a number or an alias such as champion) of NAME.",
    )
    show.add_argument("name", help="registered model name")
    show.add_argument("ref", nargs="?", default="champion", help="version number or alias (default: champion)")
    show.set_defaults(func=run_show)

    promote = models.add_parser(
        "promote",
        help="point an alias (default champion) at a version",
        description="Move ALIAS (default champion) to VERSION (a number or an alias such as challenger). "
        "Recorded with who, when and why.",
    )
    promote.add_argument("name", help="registered model name")
    promote.add_argument("version", help="version number or alias to promote")
    promote.add_argument("--alias", default="champion", help="alias to move (default: champion)")
    promote.add_argument("--reason", default="promoted by hand", help="why (kept in the history)")
    promote.set_defaults(func=run_promote)

    rollback = models.add_parser(
        "rollback",
        help="move an alias back to its previous version",
        description="Move ALIAS (default champion) back to the version it held before its "
        "latest move. Recorded as a rollback.",
    )
    rollback.add_argument("name", help="registered model name")
    rollback.add_argument("--alias", default="champion", help="alias to roll back (default: champion)")
    rollback.add_argument("--reason", default="rolled back by hand", help="why (kept in the history)")
    rollback.set_defaults(func=run_rollback)


def run_list(args: argparse.Namespace) -> int:
    from ..registry import list_models, list_versions

    settings = load_settings()
    names = [args.name or settings.model_name] if (args.name or settings.model_name) else list_models(settings)
    tables = {name: [v.as_row() for v in list_versions(name, settings)] for name in names}
    if args.json:
        print(json.dumps(tables[names[0]] if len(names) == 1 else tables, indent=2, default=str))
        return 0
    if not names:
        print("No registered models yet: train one (workbench run 02_train -p dataset NAME).")
    for name, rows in tables.items():
        print(f"{name}: {len(rows)} version(s)")
        keys = ["version", "aliases", "created", "roc_auc", "rmse", "train_where", "model", "git_commit"]
        keys = [k for k in keys if any(k in r for r in rows)]
        print("  ".join(f"{k:<12}" for k in keys))
        for r in rows:
            print("  ".join(f"{str(r.get(k, '')):<12}" for k in keys))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from ..registry import get_version, history

    settings = load_settings()
    v = get_version(args.name, args.ref, settings)
    print(f"{v.name} version {v.version}  aliases: {', '.join(v.aliases) or '-'}  run: {v.run_id}")
    print(f"source: {v.source}")
    for title, values in (("metrics", v.metrics), ("parameters", v.params), ("tags", v.tags)):
        if values:
            print(f"{title}:")
            for k, val in sorted(values.items()):
                print(
                    f"  {k:<28} {val:.4f}"
                    if isinstance(val, float) and not val.is_integer()
                    else f"  {k:<28} {val:g}"
                    if isinstance(val, float)
                    else f"  {k:<28} {val}"
                )
    events = history(args.name, "champion", settings)
    if events:
        print("champion history (oldest first):")
        for e in events:
            print(
                f"  {e['at']}  {e['action']:<9} v{e['version']} (was {e['previous'] or '-'})  by {e['user']}: {e['reason']}"
            )
    return 0


def run_promote(args: argparse.Namespace) -> int:
    from ..registry import promote

    v = promote(args.name, args.version, alias=args.alias, reason=args.reason, settings=load_settings())
    print(f"{v.name}@{args.alias} -> version {v.version}")
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from ..registry import rollback

    v = rollback(args.name, alias=args.alias, reason=args.reason, settings=load_settings())
    print(f"{v.name}@{args.alias} rolled back -> version {v.version}")
    return 0
