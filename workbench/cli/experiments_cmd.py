"""`workbench experiments`: outcomes of serving experiments (bulk ingest) and their allocation state."""

from __future__ import annotations

import argparse
import json

from ..config import load_settings

EXAMPLES = [
    (
        "workbench experiments ingest --model M --dataset D",
        "store outcomes known later, joined on request_id or entity_id",
    )
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiments",
        help="outcomes of serving experiments: bulk ingest, allocation state",
        description="Outcomes for `workbench serve --feedback/--bandit`, stored next to the prediction log.",
    )
    verbs = p.add_subparsers(dest="experiments_command", metavar="ACTION", required=True)
    ing = verbs.add_parser(
        "ingest",
        help="store rewards from a catalog dataset (read through the governed loader)",
        description="Join a catalog dataset to the served requests of MODEL on request_id (each row rewards that "
        "request) or entity_id (each row rewards the entity's latest request not yet rewarded), store the rewards "
        "and recompute the bandit's shares. Rows with unknown or already rewarded ids are counted and skipped.",
    )
    ing.add_argument("--model", metavar="NAME", help="served model name (default: the model_name setting)")
    ing.add_argument("--dataset", required=True, help="catalog dataset holding the outcomes")
    ing.add_argument("--on", choices=("request_id", "entity_id"), default="request_id", help="join key")
    ing.add_argument("--reward-column", default="reward", help="column with the reward (0/1 or a number)")
    ing.add_argument("--time-column", help="with --on entity_id: only requests served before this time are rewarded")
    ing.add_argument("--where", help="Spark SQL filter on the dataset (e.g. \"date = '2026-12-01'\")")
    ing.add_argument("--promote-winner", action="store_true", help="promote the winner if the stop rule fires")
    ing.set_defaults(func=run_ingest)
    show = verbs.add_parser("show", help="arms, shares, outcomes and P(best) of a model's experiment")
    show.add_argument("--model", metavar="NAME", help="served model name (default: the model_name setting)")
    show.set_defaults(func=run_show)


def _model(args, settings) -> str:
    if args.model or settings.model_name:
        return args.model or settings.model_name
    from ..errors import ServingError

    raise ServingError("No model named: pass --model NAME or set the model_name setting (WORKBENCH_MODEL_NAME).")


def run_ingest(args: argparse.Namespace) -> int:
    from ..serving.ingest import ingest

    settings = load_settings()
    result = ingest(
        settings,
        _model(args, settings),
        args.dataset,
        on=args.on,
        reward_column=args.reward_column,
        time_column=args.time_column,
        where=args.where,
        promote_winner=args.promote_winner,
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from ..serving.outcomes import OutcomeStore

    settings = load_settings()
    model = _model(args, settings)
    store = OutcomeStore.for_model(settings, model)
    try:
        state = store.state()
        arms = state.get("arms") or []
        stats = (
            {
                s.arm: {"pulls": s.pulls, "outcomes": s.n, "reward_mean": s.mean if s.n else None}
                for s in store.stats(arms)
            }
            if arms
            else {}
        )
        print(
            json.dumps(
                {"model": model, "store": str(store.path), **store.counts(), "state": state, "arms": stats},
                indent=2,
                default=str,
            )
        )
    finally:
        store.close()
    return 0
