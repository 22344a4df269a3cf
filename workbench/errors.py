"""The workbench's exception tree: every error a user can meet derives from WorkbenchError.

    WorkbenchError
    ├── ConfigError              an invalid setting (names the key, the source, what is expected)
    ├── SetupError               a missing prerequisite (Java, a package, a lake not initialised)
    ├── LakeError                a dataset missing or unreadable in the lake
    ├── CatalogError             the catalog file is invalid (file, dataset, field)
    │   ├── UnknownDataset       a dataset name not in the catalog (lists close names)
    │   └── CatalogInvalid       the catalog breaks its rules (carries every problem found, one per line)
    ├── AccessDenied             the caller has no grant for a dataset (or the filesystem refused the read)
    │   └── PredicateRefused     a where= predicate names a column outside the caller's view, a table or a file
    ├── AuditError               a read could not be recorded in the audit log (so no data is returned)
    │   └── GovernanceUnavailable  the governance service (decisions, audit writer) is not answering
    ├── IdentityError            inside a hub server, the hub could not confirm who is asking
    ├── ValidationError          a batch does not match a schema (carries the anomalies)
    ├── NotebookError            a notebook cannot be run as asked
    │   ├── ParameterError       unknown parameter, bad value, or no `parameters` cell
    │   └── NotebookExecutionError  a cell failed (carries the cell index and the error)
    ├── JobsFileError            jobs.yaml is invalid (lists every problem found)
    ├── ReportError              a published item or the reports site is invalid
    ├── TrainingError            a model cannot be trained as asked (target, features, feature function, data)
    ├── RegistryError            a model, version or alias is missing in the registry
    ├── GateError                the evaluation gate cannot decide
    ├── DriftError               drift cannot be computed on the given windows
    ├── ExplainError             an explanation cannot be computed for the given model or rows
    ├── ServingError             the serving wrapper cannot start or load its model
    │   └── RequestRejected      a request to the serving wrapper is invalid (error code, HTTP status, problems)
    └── ExperimentError          an A/B analysis cannot be done on the given rows (variant missing, no outcomes)

Messages say what is wrong and what to do; they never include data values.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base of every error the workbench raises on purpose. `exit_code` is what the CLI exits with."""

    exit_code: int = 1


class ConfigError(WorkbenchError):
    """A setting has an invalid value."""

    exit_code = 78  # EX_CONFIG


class SetupError(WorkbenchError):
    """Something the workbench needs is not installed or not initialised."""

    exit_code = 69  # EX_UNAVAILABLE


class LakeError(WorkbenchError):
    """A dataset is missing or unreadable in the lake."""


class CatalogError(WorkbenchError):
    """The catalog file is invalid."""

    exit_code = 78


class UnknownDataset(CatalogError):
    """A dataset name that the catalog does not know."""

    exit_code = 1


class CatalogInvalid(CatalogError):
    """The catalog breaks its rules; `problems` lists every one found (each names file, dataset, field)."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class AccessDenied(WorkbenchError):
    """The caller has no grant that allows this read."""

    exit_code = 77  # EX_NOPERM


class PredicateRefused(AccessDenied):
    """A `where=` predicate reaches outside the governed view: a column the caller's level does not
    release (or the catalog does not describe), another table, or a file."""


class AuditError(WorkbenchError):
    """The audit log could not be written: reads fail closed rather than go unrecorded."""

    exit_code = 74  # EX_IOERR


class GovernanceUnavailable(AuditError):
    """The governance service did not answer (or is not the service account's): governed reads fail closed."""


class IdentityError(WorkbenchError):
    """Inside a hub-spawned server, the hub did not confirm the user (unreachable, or the token was refused)."""

    exit_code = 77  # EX_NOPERM


class ValidationError(WorkbenchError):
    """A batch does not match its schema; `anomalies` lists each problem."""

    def __init__(self, message: str, anomalies: list | None = None):
        super().__init__(message)
        self.anomalies = list(anomalies or [])


class NotebookError(WorkbenchError):
    """A notebook cannot be run as asked."""


class ParameterError(NotebookError):
    """A parameter is unknown, of the wrong type, or the notebook has no `parameters` cell."""

    exit_code = 64  # EX_USAGE


class NotebookExecutionError(NotebookError):
    """A cell raised while the notebook ran headlessly (or the run was stopped: timeout, dead kernel).

    `record` is the run's RunRecord when the run got that far (its folder holds the rendered traceback).
    """

    def __init__(self, message: str, cell_index: int | None = None, ename: str = "", evalue: str = "", record=None):
        super().__init__(message)
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.record = record


class JobsFileError(WorkbenchError):
    """jobs.yaml is invalid."""

    exit_code = 78


class ReportError(WorkbenchError):
    """A published item is invalid (unknown status, non-numeric metric) or the reports site cannot be built."""


class TrainingError(WorkbenchError):
    """A model cannot be trained as asked: unknown target or features, a bad feature function, no rows."""


class RegistryError(WorkbenchError):
    """A model, version or alias is missing in the registry."""


class GateError(WorkbenchError):
    """The evaluation gate cannot decide."""


class DriftError(WorkbenchError):
    """Drift cannot be computed on the given windows."""


class ExplainError(WorkbenchError):
    """An explanation cannot be computed for the given model or rows."""


class ServingError(WorkbenchError):
    """The serving wrapper cannot start or load its model."""


class RequestRejected(ServingError):
    """A request to the serving wrapper is invalid: `code` (e.g. SCHEMA_MISMATCH), `status` (HTTP) and
    `problems` (one dict per problem: code, field, expected, found, rows; never the values sent)."""

    def __init__(self, code: str, message: str, problems: list[dict] | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.problems = list(problems or [])
        self.status = status


class ExperimentError(WorkbenchError):
    """An A/B analysis cannot be done on the given rows (a variant missing, no outcomes joined)."""


__all__ = [name for name, obj in list(globals().items()) if isinstance(obj, type) and issubclass(obj, WorkbenchError)]
