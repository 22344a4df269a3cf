"""`workbench serve`: a registered model behind HTTP."""

from __future__ import annotations

import argparse

from ..config import load_settings

DESCRIPTION = """\
Serve models:/NAME@ALIAS over HTTP (Starlette on uvicorn): POST /predict (JSON records) and
POST /invocations (MLflow's dataframe_split / dataframe_records), /healthz, /readyz, /metrics,
/openapi.json and /docs. Requests are validated against the model before it sees them, gathered
into micro-batches, answered within serving_timeout_ms (else by the fallback, marked
"fallback": true) and logged to parquet under predictions_dir. Aliases are polled and a moved
alias is swapped in once its new version passed a smoke test. Stops gracefully on Ctrl-C/SIGTERM.

Examples:
  workbench serve --model flights-late
  workbench serve --model flights-late --shadow challenger
  workbench serve --model flights-late --split challenger=10 --port 5051 --workers 2
  workbench serve --model flights-late --bandit thompson --arms champion,challenger --min-share 0.05

Experiments: --feedback (or --bandit) records the variant of every answer and accepts outcomes on
POST /feedback ({"request_id": ..., "reward": 1}, or a list); --bandit moves traffic toward the arm
that is winning and stops at --stop-at (see docs/how-to/bandits.md).
"""


EXAMPLES = [("workbench serve --model flights-late", "serve models:/flights-late@champion over HTTP")]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a registered model over HTTP (validation, A/B, shadow, fallback, logging)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", metavar="NAME", help="registered model name (default: the model_name setting)")
    p.add_argument("--alias", default="champion", help="alias answering requests (default: champion)")
    p.add_argument("--shadow", metavar="ALIAS", help="alias that gets a copy of every request; logged, never returned")
    p.add_argument(
        "--split",
        metavar="ALIAS=PERCENT",
        action="append",
        default=[],
        help="send PERCENT of entities (by a stable hash of entity_id) to ALIAS; repeatable (A/B, canary)",
    )
    p.add_argument(
        "--fallback",
        metavar="CHAIN",
        help="'previous', 'constant:VALUE', 'none' or a chain 'previous,constant:0.2' "
        "(default: the serving_fallback setting)",
    )
    g = p.add_argument_group("experiments (outcome feedback and bandit allocation)")
    g.add_argument("--feedback", action="store_true", help="accept POST /feedback for the served variants")
    g.add_argument(
        "--bandit", choices=("thompson", "epsilon-greedy"), help="allocate traffic between --arms by outcome"
    )
    g.add_argument("--arms", metavar="A,B[,...]", help="aliases the bandit allocates between (the primary included)")
    g.add_argument("--min-share", type=float, default=0.05, help="least traffic share of any arm (default 0.05)")
    g.add_argument("--epsilon", type=float, default=0.1, help="epsilon-greedy: the share explored (default 0.1)")
    g.add_argument("--reward", choices=("binary", "numeric"), default="binary", help="kind of reward (default binary)")
    g.add_argument("--stop-at", type=float, default=0.95, help="P(best) at which an arm wins (default 0.95; 0: never)")
    g.add_argument("--min-outcomes", type=int, default=200, help="outcomes before the stop rule may fire (default 200)")
    g.add_argument("--promote-winner", action="store_true", help="move the primary alias to the winner when it stops")
    g.add_argument("--sticky-ttl", type=float, default=86400.0, help="seconds an entity keeps its arm (default 86400)")
    p.add_argument("--timeout-ms", type=int, help="per-request time budget (default: serving_timeout_ms)")
    p.add_argument("--no-log", action="store_true", help="do not write the prediction log")
    p.add_argument("--host", help="bind address (default: serving_host)")
    p.add_argument("--port", type=int, help="port (default: serving_port)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1; each loads the models)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from ..serving.app import serve
    from ..serving.options import ServeOptions
    from ..serving.routing import parse_split

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    if not (args.model or settings.model_name):
        from ..errors import ServingError

        raise ServingError(
            "No model to serve: pass --model NAME (a model trained on dataset D is named D-<target name> by "
            "default), or set the model_name setting (WORKBENCH_MODEL_NAME)."
        )
    options = ServeOptions.from_settings(
        settings,
        args.model,
        alias=args.alias,
        shadow=args.shadow,
        split=parse_split(args.split),
        fallback=args.fallback,
        timeout=args.timeout_ms / 1000.0 if args.timeout_ms else None,
        log_predictions=not args.no_log,
        feedback=args.feedback,
        bandit=args.bandit,
        arms=[a.strip() for a in (args.arms or "").split(",") if a.strip()],
        min_share=args.min_share,
        epsilon=args.epsilon,
        reward=args.reward,
        stop_at=args.stop_at,
        min_outcomes=args.min_outcomes,
        promote_winner=args.promote_winner,
        sticky_ttl=args.sticky_ttl,
    )
    print(
        f"Serving models:/{options.model_name}@{options.alias} on http://{args.host or settings.serving_host}:"
        f"{args.port or settings.serving_port} (docs at /docs)",
        flush=True,
    )
    serve(settings, options, host=args.host, port=args.port, workers=args.workers, log_level=args.log_level)
    return 0
