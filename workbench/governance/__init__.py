"""The governance service: the one party that decides who is asking, what they may read, and writes
the audit log, so none of it is up to the process being governed.

    reader (kernel, job, CLI)                 governance service (data service account)
      data.load("flights")  ── Unix socket ──▶  peer uid (SO_PEERCRED) -> account -> groups (users file)
                                               catalog grant -> decision -> audit record (hash-chained)
      reads the view the answer names  ◀──────  level, view, row filter (or denied, recorded)

- `workbench.data.decision`: the decision and its audit record, shared by the service and the local profile.
- `service.py`: the socket server (`python -m workbench.governance serve`, or the hub service `governance`).
- `reads.py`: production's vended read folders, one per allowed read of a governed view (hard links).
- `workbench.governance_client`: the reader's side, below identity, the audit and the decision: one
  connection per process, fails closed when the service is away.

In the local profile there is no service unless `governance_socket` is set: the same decision code
runs in the reader's process and writes a store the single user owns (identity `local-unverified`).
"""

from ..data.decision import Decision, decide_read
from ..governance_client import ServiceClient, require_service, service_client

__all__ = ["Decision", "decide_read", "ServiceClient", "service_client", "require_service"]
