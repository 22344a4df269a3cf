"""One read decision and its audit record: who is asking, the grant they read through, written down
before any data is handed out. The governance service runs it for its peers; the local profile runs
it in the reader's own process (with the identity that process claims)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..identity import Identity
from .catalog import Catalog
from .policy import Grant, effective_grant

__all__ = ["Decision", "decide", "decide_read", "follow_up"]

ALLOWED, DENIED, UNKNOWN = "allowed", "denied", "unknown-dataset"


@dataclass(frozen=True)
class Decision:
    identity: Identity
    dataset: str
    outcome: str  # allowed, denied or unknown-dataset
    grant: Grant | None
    seq: int | None  # the seq of its audit record
    location: str | None = None  # production: the folder vended for this read (workbench.governance.reads)

    def as_dict(self) -> dict[str, Any]:
        g = self.grant
        return {
            "identity": {
                "user": self.identity.user,
                "groups": list(self.identity.groups),
                "source": self.identity.source,
            },
            "dataset": self.dataset,
            "outcome": self.outcome,
            "grant": {"level": g.level, "group": g.group, "row_filter": g.row_filter} if g else None,
            "seq": self.seq,
            "location": self.location,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        i, g = d["identity"], d.get("grant")
        return cls(
            Identity(str(i["user"]), tuple(i["groups"]), str(i["source"])),
            str(d["dataset"]),
            str(d["outcome"]),
            Grant(g["level"], g["group"], g.get("row_filter")) if g else None,
            d.get("seq"),
            d.get("location"),
        )


def decide(
    catalog: Catalog,
    identity: Identity,
    dataset: str,
    columns: Sequence[str] | None,
    where: str | None,
    purpose: str | None,
    write: Callable[[dict[str, Any]], dict[str, Any]],
) -> Decision:
    """Decide a read of `dataset` by `identity` and record it with `write` (which returns the stored record)."""
    event: dict[str, Any] = dict(
        user=identity.user,
        groups=list(identity.groups),
        source=identity.source,
        dataset=dataset,
        columns=list(columns) if columns else None,
        where=where,
        purpose=purpose,
    )
    if dataset not in catalog.datasets:
        return Decision(identity, dataset, UNKNOWN, None, write({**event, "outcome": UNKNOWN})["seq"])
    grant = effective_grant(catalog, catalog.datasets[dataset], identity.groups)
    if grant is None:
        stored = write({**event, "level": "none", "outcome": DENIED, "reason": "no grant"})
        return Decision(identity, dataset, DENIED, None, stored["seq"])
    stored = write(
        {**event, "level": grant.level, "view": grant.view, "row_filter": grant.row_filter, "outcome": ALLOWED}
    )
    return Decision(identity, dataset, ALLOWED, grant, stored["seq"])


def decide_read(
    settings: Settings,
    dataset: str,
    columns: Sequence[str] | None,
    where: str | None,
    purpose: str | None,
    catalog: Catalog | None = None,
) -> Decision:
    """The decision for a read by this process: from the governance service when there is one (always in
    production), else made here with the identity this process claims (local profile)."""
    from ..governance_client import service_client
    from ..identity import claimed_identity
    from . import audit
    from .catalog import load_catalog

    client = service_client(settings)
    if client is not None:
        claimed = claimed_identity(settings) if settings.profile == "local" else None
        claim = (claimed.user, claimed.groups) if claimed else None
        return Decision.from_dict(client.decide(dataset, columns, where, purpose, claim))
    store = audit.local_store(settings)
    return decide(
        catalog or load_catalog(settings),
        claimed_identity(settings),
        dataset,
        columns,
        where,
        purpose,
        lambda fields: store.append(fields, profile=settings.profile),
    )


def follow_up(settings: Settings, decision: Decision, outcome: str, reason: str, **fields: Any) -> dict[str, Any]:
    """Record what became of an allowed decision (the filesystem refused the read, or it failed)."""
    from . import audit

    g = decision.grant
    i = decision.identity
    return audit.record(
        settings,
        user=i.user,
        groups=list(i.groups),
        source=i.source,
        dataset=decision.dataset,
        level=g.level if g else None,
        view=g.view if g else None,
        row_filter=g.row_filter if g else None,
        outcome=outcome,
        reason=reason,
        refers=decision.seq,
        **fields,
    )
