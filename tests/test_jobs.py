"""The notebook runner with real papermill and a real kernel: parameters, statuses, reports, kills."""

from __future__ import annotations

import ast
import json
import signal
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import nbformat
import pytest

import workbench.jobs as jobs_api
from workbench.errors import NotebookError, NotebookExecutionError, ParameterError
from workbench.jobs import check_parameters, find_run, inspect_parameters, load_runs, resolve_notebook, run_notebook
from workbench.jobs.notebooks import ParameterWarning
from workbench.runs.record import RunRecord

from .notebook_factory import REPO, cli, make_home, start_workbench, workbench, write_notebook

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("jobs-home")
    make_home(folder)
    return folder


@pytest.fixture(scope="module")
def settings(home):
    return make_home(home).with_overrides(spark_master="local[1]")


def run_dirs(home: Path, notebook: str = "10_check") -> set[Path]:
    folder = home / "reports" / "runs" / notebook
    return set(folder.iterdir()) if folder.is_dir() else set()


# ---- parameters, without a kernel --------------------------------------------------------------
def test_parameters_are_read_as_the_types_the_notebook_declares(settings):
    declared = inspect_parameters(resolve_notebook("10_check", settings))
    assert {p.name: p.type for p in declared.values()} == {
        "n": "int",
        "ratio": "float",
        "label": "str",
        "flag": "bool",
        "items": "list",
        "sleep": "float",
    }
    values = check_parameters(
        "10_check", declared, {"n": "4", "ratio": "2", "flag": "yes", "items": "a, b", "label": "7"}
    )
    assert values == {"n": 4, "ratio": 2.0, "flag": True, "items": ["a", "b"], "label": "7"}
    assert check_parameters("10_check", declared, {"items": "[1, 2]", "n": 5, "ratio": 1})["items"] == [1, 2]
    with pytest.raises(ParameterError) as err:
        check_parameters("10_check", declared, {"n": "four", "flag": 1, "nn": 3})
    message = str(err.value)
    assert "'n' expects int" in message and "'flag' expects bool" in message and "unknown parameter 'nn'" in message
    assert "did you mean 'n'" in message
    assert "Accepted parameters: n (int, default 3)" in message and 'label (str, default "x")' in message


def test_notebook_without_a_parameters_cell_is_refused_with_how_to_add_one(settings):
    with pytest.raises(ParameterError, match="no cell tagged 'parameters'.*tag that cell `parameters`"):
        run_notebook("11_bare", {}, settings)


def test_unknown_parameter_is_refused_before_the_kernel_starts(settings, home):
    before = run_dirs(home)
    # A kernel that does not exist would fail at start; the parameter check comes first.
    with pytest.raises(ParameterError, match="unknown parameter 'sample_row'.*Accepted parameters"):
        run_notebook("check", {"sample_row": 5}, settings, kernel="no-such-kernel")
    assert run_dirs(home) == before


def test_notebooks_are_found_by_short_name_and_unknown_names_listed(settings):
    assert resolve_notebook("check", settings).name == "10_check.ipynb"
    assert resolve_notebook("10_check.ipynb", settings).name == "10_check.ipynb"
    with pytest.raises(NotebookError, match="Did you mean 'check'.*Available notebooks: 10_check, 11_bare"):
        resolve_notebook("chekc", settings)


def test_bad_parameters_exit_64_from_the_cli(home):
    out = workbench(home, "run", "check", "-p", "n", "many", "-p", "colour", "red")
    assert out.returncode == 64
    assert "'n' expects int" in out.stderr and "unknown parameter 'colour'" in out.stderr
    assert "Accepted parameters" in out.stderr


# ---- real runs ----------------------------------------------------------------------------------
def test_a_run_injects_typed_parameters_and_renders_a_report_without_code(settings, home):
    record = run_notebook("check", {"n": "4", "items": "a,b", "flag": "false"}, settings)
    assert record.status == "succeeded" and record.exit_code == 0
    saved = json.loads((record.folder / "run.json").read_text())
    assert saved["parameters"] == {"n": 4, "items": ["a", "b"], "flag": False}
    assert saved["status"] == "succeeded" and saved["ended"] and saved["duration_s"] > 0
    assert saved["published"]["metrics"] == {"n_squared": 16.0}
    # The kernel saw the same settings as the caller (an override, passed through the environment).
    assert saved["published"]["values"]["kernel_spark_master"] == "local[1]"
    assert record.folder.parent == home / "reports" / "runs" / "10_check"

    executed = nbformat.read(str(record.executed_notebook), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "n = 4" in injected[0].source
    assert not list(record.folder.glob("*.partial.ipynb")) and not list(record.folder.glob(".*.tmp"))

    html = record.report_path.read_text()
    assert "visible-output-marker" in html and "hidden-code-marker" not in html
    header = html[html.index('class="wb-header"') : html.index("visible-output-marker")]
    assert "<td>items</td><td><code>['a', 'b']</code>" in header and "<td>sleep</td>" in header  # given and default
    assert "<script src=" not in html  # renders with the network off
    index = (home / "reports" / "index.html").read_text()
    assert record.run_id in index


def test_a_failing_cell_gives_status_failed_and_the_traceback_first(settings):
    record = run_notebook("check", {"label": "boom"}, settings)
    assert record.status == "failed" and record.exit_code == 1
    assert record.error["ename"] == "ValueError" and "label asked for a failure" in record.error["evalue"]
    html = record.report_path.read_text()
    error_box = html.index('id="workbench-error"')
    assert error_box < html.index("visible-output-marker")  # before the notebook's own outputs
    assert "label asked for a failure" in html[error_box : html.index("visible-output-marker")]
    assert "raise ValueError" in html[error_box:]  # the failing cell's code is shown
    with pytest.raises(NotebookExecutionError) as err:
        record.raise_for_status()
    assert err.value.ename == "ValueError" and err.value.cell_index == record.error["cell_index"]
    assert err.value.record is record


def test_timeout_stops_a_cell_and_fails_the_run(settings):
    record = run_notebook("check", {"sleep": 60}, settings, timeout=2)
    assert record.status == "failed"
    assert record.error["ename"] == "CellTimeoutError" and "2 s" in record.error["message"]
    assert "time.sleep" in record.error["source"]
    assert record.duration_s < 60
    assert 'id="workbench-error"' in record.report_path.read_text()


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - the stdlib's name
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_published_alert_exits_2_and_calls_the_webhook(home):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        out = workbench(
            home,
            "run",
            "check",
            "-p",
            "flag",
            "true",
            "--quiet",
            WORKBENCH_WEBHOOK_URL=f"http://127.0.0.1:{server.server_address[1]}/hook",
        )
    finally:
        server.shutdown()
    assert out.returncode == 2, out.stderr
    run_id = out.stdout.strip()
    record = RunRecord.load(home / "reports" / "runs" / "10_check" / run_id)
    assert record.status == "succeeded" and record.published_status == "alert"
    assert [h["run_id"] for h in _Hook.received] == [run_id]
    assert _Hook.received[0]["published_status"] == "alert"


@pytest.fixture
def receiver():
    """A webhook receiver on 127.0.0.1 that answers with the codes queued in `server.codes`, then 204."""

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.server.requests.append((self.path, self.headers["Content-Type"], json.loads(body)))
            self.send_response(self.server.codes.pop(0) if self.server.codes else 204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    server.requests, server.codes = [], []
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook?token=secret-token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def documented_payload_fields() -> list[str]:
    """The field names listed in workbench.alerts' docstring (the page the docs include)."""
    import re

    import workbench.alerts

    doc = workbench.alerts.__doc__
    table = doc[doc.index("The payload is") : doc.index("`alert_payload(")]
    return re.findall(r"^    ([a-z_]+) +\S", table, flags=re.MULTILINE)


def test_a_run_alert_is_the_documented_payload_and_is_retried_after_a_500(home, receiver):
    receiver.codes = [500]
    out = workbench(home, "run", "check", "-p", "flag", "true", "--quiet", WORKBENCH_WEBHOOK_URL=receiver.url)
    assert out.returncode == 2, out.stderr
    run_id = out.stdout.strip()
    assert len(receiver.requests) == 2  # the 500, then the retry that got 204
    (path, content_type, first), (_, _, second) = receiver.requests
    assert first == second and path == "/hook?token=secret-token" and content_type == "application/json"
    fields = documented_payload_fields()
    assert len(fields) >= 15 and sorted(first) == sorted(fields)
    assert first["event"] == "workbench.alert" and first["version"] == 1 and first["status"] == "alert"
    assert first["source"] == first["notebook"] == "10_check" and first["run_id"] == run_id
    assert first["published_status"] == "alert" and first["run_status"] == "succeeded"
    assert first["metrics"] == {"n_squared": 9} and first["summary"] == "n_squared=9 at alert"
    assert first["text"].startswith("[ALERT] 10_check: n_squared=9 at alert (file://")
    assert first["report"] == f"runs/10_check/{run_id}/report.html"
    assert (home / "reports" / first["report"]).is_file() and first["report_url"].endswith(first["report"])
    record = RunRecord.load(home / "reports" / "runs" / "10_check" / run_id)
    assert record.alert == {"delivered": True, "status_code": 204, "attempts": 2, "error": ""}


def test_an_alert_that_cannot_be_delivered_does_not_fail_the_run_but_is_reported(home):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook?token=secret-token"
    out = workbench(home, "run", "check", "-p", "flag", "true", WORKBENCH_WEBHOOK_URL=url)
    assert out.returncode == 2, out.stderr  # the alert's exit status, not a failed run
    assert "alert not delivered: the webhook could not be reached" in out.stderr
    assert "NOT delivered" in out.stdout and "secret-token" not in out.stdout + out.stderr
    run_id = out.stdout.split()[1].rstrip(":")
    record = RunRecord.load(home / "reports" / "runs" / "10_check" / run_id)
    assert record.status == "succeeded" and record.published_status == "alert"
    assert record.alert["delivered"] is False and record.alert["attempts"] == 3
    assert "could not be reached" in record.alert["error"] and record.alert["status_code"] is None
    assert "NOT delivered" in workbench(home, "runs", "show", run_id).stdout


def _wait_until_sleeping(home: Path, before: set[Path], proc) -> Path:
    """The new run's folder, once the notebook is inside its `time.sleep` cell."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for folder in run_dirs(home) - before:
            for partial in folder.glob("*.partial.ipynb"):
                try:
                    nb = nbformat.read(str(partial), as_version=4)
                except Exception:
                    continue
                if any(
                    c.source == "time.sleep(sleep)" and c.metadata.get("papermill", {}).get("status") == "running"
                    for c in nb.cells
                ):
                    return folder
        time.sleep(0.3)
    raise AssertionError("the run never reached its sleeping cell")


def test_a_run_killed_with_sigkill_leaves_no_succeeded_record_and_no_html(home, settings):
    before = run_dirs(home)
    proc = start_workbench(home, "run", "check", "-p", "sleep", "120", "--quiet")
    try:
        folder = _wait_until_sleeping(home, before, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    assert json.loads((folder / "run.json").read_text())["status"] == "running"
    assert not list(folder.glob("*.html")) and not list(folder.glob(".*html*"))
    record = find_run(settings, folder.name)  # history notices the runner is gone
    assert record.status == "interrupted" and record.error["ename"] == "RunnerDied"
    assert json.loads((folder / "run.json").read_text())["status"] == "interrupted"


def test_ctrl_c_stops_the_run_cleanly(home):
    psutil = pytest.importorskip("psutil")
    before = run_dirs(home)
    proc = start_workbench(home, "run", "check", "-p", "sleep", "120", "--quiet")
    try:
        folder = _wait_until_sleeping(home, before, proc)
        kernels = psutil.Process(proc.pid).children(recursive=True)
        assert kernels, "the kernel runs as a child of the runner"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    record = RunRecord.load(folder)
    assert record.status == "interrupted" and record.error["ename"] == "KeyboardInterrupt"
    assert "time.sleep" in record.error["source"]
    assert "interrupted" in (folder / "report.html").read_text()
    gone, alive = psutil.wait_procs(kernels, timeout=15)
    assert not alive, "the kernel was shut down"


def test_two_concurrent_runs_of_one_notebook_write_separate_folders(home):
    before = run_dirs(home)
    procs = [start_workbench(home, "run", "check", "-p", "n", str(n), "--quiet") for n in (5, 6)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    ids = {o[0].strip() for o in outs}
    new = run_dirs(home) - before
    assert {f.name for f in new} == ids and len(ids) == 2
    for folder in new:
        record = RunRecord.load(folder)
        assert record.status == "succeeded" and (folder / "report.html").is_file()
    index = (home / "reports" / "index.html").read_text()
    assert all(run_id in index for run_id in ids)


# ---- history ------------------------------------------------------------------------------------
def _fake_run(settings, notebook: str, run_id: str, status: str, **fields) -> RunRecord:
    """A finished run's record, written as the runner writes it (no kernel needed)."""
    folder = settings.path("reports_dir") / "runs" / notebook / run_id
    folder.mkdir(parents=True)
    started = f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T{run_id[9:11]}:{run_id[11:13]}:{run_id[13:15]}.000Z"
    record = RunRecord(
        run_id=run_id,
        notebook=notebook,
        status=status,
        started=started,
        ended=started,
        duration_s=3.5,
        folder=folder,
        **fields,
    )
    record.save()
    return record


def test_runs_lists_newest_first_filters_and_shows_one(tmp_path, monkeypatch, capsys):
    settings = make_home(tmp_path)
    _fake_run(settings, "01_explore", "20250101T060000Z-aaaaa1", "succeeded", parameters={"dataset": "flights"})
    _fake_run(
        settings,
        "01_explore",
        "20250102T060000Z-bbbbb2",
        "failed",
        error={"ename": "KeyError", "evalue": "'x'", "cell_index": 3, "execution_count": 2},
    )
    _fake_run(
        settings,
        "04_drift",
        "20250103T060000Z-ccccc3",
        "succeeded",
        published={"status": "alert", "metrics": {"drift_share": 0.31}},
    )
    assert [r.run_id[-6:] for r in load_runs(settings)] == ["ccccc3", "bbbbb2", "aaaaa1"]
    assert [r.run_id[-6:] for r in load_runs(settings, notebook="explore")] == ["bbbbb2", "aaaaa1"]

    code, out, _ = cli(tmp_path, "runs", "list", "explore", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0
    lines = out.splitlines()
    assert "20250102T060000Z-bbbbb2" in lines[1] and "failed" in lines[1]
    assert 'dataset="flights"' in lines[2] and "04_drift" not in out
    code, out, _ = cli(tmp_path, "runs", "show", "20250103", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and "drift_share = 0.31" in out and "alert" in out
    with pytest.raises(NotebookError, match="matches 3 runs"):
        find_run(settings, "2025")
    code, out, _ = cli(tmp_path, "runs", "show", "20250102", "--json", monkeypatch=monkeypatch, capsys=capsys)
    assert json.loads(out)["error"]["ename"] == "KeyError"


# ---- the API and the notebooks in the repository -------------------------------------------------
def test_public_api():
    assert set(jobs_api.__all__) >= {"run_notebook", "RunRecord", "load_runs", "find_run"}
    for name in jobs_api.__all__:
        assert hasattr(jobs_api, name)


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_repository_notebooks_follow_the_house_rules(path):
    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[0].cell_type == "markdown", "first a markdown cell saying purpose, inputs, outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    for line in tagged[0].source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            value = line.split("=", 1)[1].split("#", 1)[0]
            ast.literal_eval(value.strip())  # a literal default
            assert "#" in line, f"every parameter has a comment: {line}"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "stored with outputs cleared"
            tree = ast.parse("\n".join(l for l in cell.source.splitlines() if not l.lstrip().startswith(("%", "!"))))
            assert not [
                n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
            ], "no def/class in notebooks: move the code into the package"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParameterWarning)  # every variable of the cell is a parameter papermill reads
        assert inspect_parameters(path)


def test_a_parameter_papermill_drops_is_named_in_a_warning(tmp_path):
    path = write_notebook(
        tmp_path, "filters", 'where = "month = 1"  # a second = makes papermill drop this line\nn = 3', []
    )
    with pytest.warns(ParameterWarning, match=r"'where'.*IN \(1\)"):
        declared = inspect_parameters(path)
    assert list(declared) == ["n"]


def test_git_state_is_one_helper_for_runs_and_training(tmp_path):
    import subprocess

    from workbench.runs.provenance import git_state

    assert git_state(tmp_path) == (None, None) and git_state(tmp_path).or_unknown() == ("unknown", False)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "tracked.txt").write_text("one\n")
    (tmp_path / "untracked.txt").write_text("not added\n")
    subprocess.run([*git, "add", "tracked.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert git_state(tmp_path) == (head, False)  # untracked files do not make it dirty
    (tmp_path / "tracked.txt").write_text("two\n")
    assert git_state(tmp_path) == (head, True) and git_state(tmp_path).or_unknown() == (head, True)
