"""Reports without a kernel: publish(), collecting what was published, the run report, the index site."""

from __future__ import annotations

import base64
import re
import threading
import urllib.request

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

import workbench.reports as reports_api
from workbench.errors import ReportError
from workbench.reports import PUBLISH_MIMETYPE, build_index, collect, make_server, publish, render_report
from workbench.reports.site import trend_svg
from workbench.runs.record import RunRecord

from .notebook_factory import make_home

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()


def test_publish_outside_a_run_is_harmless_and_checks_its_input():
    assert publish(metric="auc", value=0.8, status="ok", model="m1") is None
    assert publish(status="alert") is None
    import numpy as np

    publish(metric="rows", value=np.int64(5))
    with pytest.raises(ReportError, match="ok, warn, alert"):
        publish(status="bad")
    with pytest.raises(ReportError, match="finite number"):
        publish(metric="auc", value=float("nan"))
    with pytest.raises(ReportError, match="needs metric="):
        publish(value=3.0)
    with pytest.raises(ReportError, match="string, number, boolean"):
        publish(table=[1, 2])
    with pytest.raises(ReportError, match="nothing to publish"):
        publish()
    with pytest.raises(ReportError, match="matplotlib figure"):
        publish(figure=object(), name="x")


def _output(item: dict, **extra) -> dict:
    return new_output("display_data", data={PUBLISH_MIMETYPE: item, "text/plain": "published", **extra})


def test_collect_keeps_the_last_value_the_worst_status_and_every_figure():
    nb = new_notebook(
        cells=[
            new_code_cell(
                "a",
                outputs=[
                    _output({"metric": "auc", "value": 0.7, "status": "ok"}),
                    _output({"status": "warn"}),
                    _output({"values": {"model": "m1"}}),
                ],
            ),
            new_markdown_cell("text"),
            new_code_cell(
                "b",
                outputs=[
                    _output({"metric": "auc", "value": 0.9}),
                    _output({"metric": "drift", "value": 0.3, "status": "alert"}),
                    _output({"figure": "roc"}, **{"image/png": PNG}),
                    _output({"figure": "roc"}, **{"image/png": PNG}),
                    _output({"figure": None}, **{"image/svg+xml": "<svg/>"}),
                ],
            ),
        ]
    )
    published, files = collect(nb)
    assert published["metrics"] == {"auc": 0.9, "drift": 0.3}
    assert published["status"] == "alert" and published["metric_status"] == {"auc": "ok", "drift": "alert"}
    assert published["values"] == {"model": "m1"}
    assert [f["name"] for f in published["figures"]] == ["roc", "roc-2", "figure-3"]
    assert [(name, fmt) for name, fmt, _ in files] == [
        ("roc.png", "image/png"),
        ("roc-2.png", "image/png"),
        ("figure-3.svg", "image/svg+xml"),
    ]


def _executed_notebook():
    params = new_code_cell("n = 3  # how many", execution_count=1)
    params.metadata["tags"] = ["parameters"]
    failing = new_code_cell(
        "value = lookup['missing']  # hidden-code-marker",
        execution_count=3,
        outputs=[
            new_output(
                "error",
                ename="KeyError",
                evalue="'missing'",
                traceback=["\x1b[0;31mKeyError\x1b[0m   Traceback", "\x1b[0;31mKeyError\x1b[0m: 'missing'"],
            )
        ],
    )
    return new_notebook(
        cells=[
            new_markdown_cell("# A report"),
            params,
            new_code_cell(
                "print('ok')",
                execution_count=2,
                outputs=[
                    new_output("stream", name="stdout", text="visible-output-marker\n"),
                    new_output("stream", name="stderr", text="log4j chatter\n"),
                ],
            ),
            failing,
        ],
        metadata={"language_info": {"name": "python"}},
    )


def test_the_report_hides_code_shows_parameters_and_puts_the_failure_first(tmp_path):
    from workbench.jobs.notebooks import Parameter

    nb = _executed_notebook()
    record = RunRecord(
        run_id="20250101T000000Z-abcdef",
        notebook="01_demo",
        status="failed",
        parameters={"n": 7},
        started="2025-01-01T00:00:00.000Z",
        duration_s=4.2,
        folder=tmp_path,
        error={
            "cell_index": 3,
            "execution_count": 3,
            "ename": "KeyError",
            "evalue": "'missing'",
            "source": nb.cells[3].source,
            "traceback": ["KeyError   Traceback", "KeyError: 'missing'"],
        },
    )
    html = render_report(nb, record, {"n": Parameter("n", "int", "3", "how many"), "m": Parameter("m", "str", '"a"')})
    assert "visible-output-marker" in html and "log4j chatter" not in html
    assert "print('ok')" not in html  # code cells are hidden ...
    error_box = html.index('id="workbench-error"')
    assert error_box < html.index("visible-output-marker")  # ... except the failing one, shown first
    assert "hidden-code-marker" in html[error_box : html.index("visible-output-marker")]
    assert "KeyError: 'missing'" in html[error_box:]
    header = html[html.index('class="wb-header"') : error_box]
    assert "<td>n</td><td><code>7</code>" in header and "<td>m</td>" in header and "failed" in header
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"?(https?:)?//", html), "nothing loaded from the network"


def test_trend_chart_has_one_point_per_run():
    svg = trend_svg([("r1", 0.1, "ok"), ("r2", 0.4, "alert"), ("r3", 0.2, None)])
    assert svg.startswith("<svg") and svg.count("<circle") == 3 and "<polyline" in svg
    assert "r2: 0.4 (alert)" in svg and "max 0.4" in svg
    assert trend_svg([]) == "" and trend_svg([("only", 5, None)]).count("<circle") == 1


def _record(settings, notebook, run_id, status, metrics=None, figures=False, **fields):
    folder = settings.path("reports_dir") / "runs" / notebook / run_id
    folder.mkdir(parents=True)
    published = {
        "status": fields.pop("published_status", None),
        "metrics": metrics or {},
        "metric_status": {},
        "figures": [],
        "values": {},
    }
    if figures:
        (folder / "figures").mkdir()
        (folder / "figures" / "roc.png").write_bytes(base64.b64decode(PNG))
        published["figures"] = [{"name": "roc", "file": "figures/roc.png"}]
    (folder / "report.html").write_text("<html>report</html>")
    started = f"2025-01-{run_id[6:8]}T06:00:00.000Z"
    record = RunRecord(
        run_id=run_id,
        notebook=notebook,
        status=status,
        started=started,
        ended=started,
        duration_s=2.0,
        published=published,
        files={"report": "report.html"},
        folder=folder,
        **fields,
    )
    record.save()
    return record


def test_the_index_lists_notebooks_runs_and_a_trend_chart_per_metric(tmp_path):
    settings = make_home(tmp_path).with_overrides(reports_hub_url="")  # no hub links: every link is a file
    for day, value in (("01", 0.1), ("02", 0.25), ("03", 0.4)):
        _record(
            settings,
            "04_drift",
            f"202501{day}T060000Z-00000{day[-1]}",
            "succeeded",
            {"drift_share": value, "rows": 100},
            figures=day == "03",
            published_status="alert" if value > 0.3 else "ok",
            parameters={"window": day},
        )
    _record(settings, "01_explore", "20250102T070000Z-eeeee1", "failed", error={"ename": "KeyError"})
    path = build_index(settings)
    assert path == tmp_path / "reports" / "index.html"
    html = path.read_text()
    assert html.count("<svg") == 2  # drift_share and rows
    assert "<title>20250103T060000Z-000003: 0.4</title>" in html  # a tooltip per point
    assert re.search(r'id="nb-04_drift">\s*<h3>04_drift\s*<span class="badge succeeded">', html)
    assert re.search(r'id="nb-01_explore">\s*<h3>01_explore\s*<span class="badge failed">', html)
    assert "window=&#34;03&#34;" in html  # parameters in the runs table
    links = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert links and all((path.parent / link).is_file() for link in links), "relative links to files that exist"
    assert "runs/04_drift/20250103T060000Z-000003/figures/roc.png" in links
    assert "http" not in "".join(links)
    assert html.index("20250103T060000Z-000003") < html.index("20250101T060000Z-000001")  # newest first


def test_serve_answers_with_the_index_and_the_reports(tmp_path):
    settings = make_home(tmp_path)
    _record(settings, "01_explore", "20250102T070000Z-eeeee1", "succeeded")
    server = make_server(settings, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(f"{base}/", timeout=10) as response:
            assert "Workbench reports" in response.read().decode()
        with urllib.request.urlopen(
            f"{base}/runs/01_explore/20250102T070000Z-eeeee1/report.html", timeout=10
        ) as response:
            assert response.read() == b"<html>report</html>"
    finally:
        server.shutdown()
        server.server_close()


def test_public_api():
    assert set(reports_api.__all__) >= {"publish", "build_index", "render_report"}
    for name in reports_api.__all__:
        assert hasattr(reports_api, name)


# ---- the index answers "is everything fine?" ------------------------------------------------------
def _job_run(settings, notebook, run_id, job, scheduled_for, step=None, metrics=None, values=None, **fields):
    record = _record(
        settings, notebook, run_id, "succeeded", metrics, job=job, step=step, scheduled_for=scheduled_for, **fields
    )
    record.published["values"] = dict(values or {})
    record.save()
    return record


def test_one_card_per_job_with_values_and_trend_from_that_job_only(tmp_path):
    settings = make_home(tmp_path)
    # Two drift jobs on the same notebook; the older job's run has the larger value.
    _job_run(
        settings,
        "04_drift",
        "20250101T070000Z-00000a",
        "drift-feb",
        "2025-01-01T07:00:00.000Z",
        metrics={"share": 0.5},
        published_status="alert",
    )
    _job_run(
        settings,
        "04_drift",
        "20250102T070000Z-00000b",
        "drift-mar",
        "2025-01-02T07:00:00.000Z",
        metrics={"share": 0.1},
        published_status="ok",
    )
    _job_run(
        settings,
        "04_drift",
        "20250103T070000Z-00000c",
        "drift-mar",
        "2025-01-03T07:00:00.000Z",
        metrics={"share": 0.2, "rows": 27902.0},
        published_status="warn",
    )
    # A chain: train then evaluate; the evaluation published the gate's decision.
    _job_run(
        settings,
        "02_train",
        "20250104T030000Z-00000d",
        "retrain",
        "2025-01-04T03:00:00.000Z",
        step="train",
        metrics={"auc": 0.71},
    )
    _job_run(
        settings,
        "05_evaluate",
        "20250104T031000Z-00000e",
        "retrain",
        "2025-01-04T03:00:00.000Z",
        step="evaluate",
        metrics={"challenger_auc": 0.7},
        values={"decision": "SHIP"},
        published_status="ok",
    )
    # Ad-hoc runs of one notebook on two datasets: two cards.
    _record(settings, "01_explore", "20250105T070000Z-00000f", "succeeded", {"rows": 10}, parameters={"dataset": "a"})
    _record(settings, "01_explore", "20250106T070000Z-00000g", "failed", parameters={"dataset": "b"})
    html = build_index(settings).read_text()

    def card(card_id):
        start = html.index(f'id="{card_id}"')
        return html[start : html.index('<div class="card"', start) if '<div class="card"' in html[start:] else None]

    mar = card("job-drift-mar")
    assert '<span class="badge warn">warn</span>' in mar and "alert" not in mar  # the latest run's status only
    assert (
        '<div class="value">0.2' in mar and "27,902" in mar and "27902.0" not in mar
    )  # latest values, integers as such
    assert mar.count("<circle") == 2  # share over drift-mar's 2 runs (one run of rows: no chart); none from drift-feb
    assert "20250101T070000Z-00000a" not in mar
    feb = card("job-drift-feb")
    assert '<div class="value">0.5' in feb and "<circle" not in feb  # one run: a value, no trend
    retrain = card("job-retrain")
    assert '<span class="verdict ship">SHIP</span>' in retrain and "auc" in retrain and "challenger_auc" in retrain
    assert 'id="nb-01_explore-a"' in html and 'id="nb-01_explore-b"' in html
    assert '<span class="badge failed">failed</span>' in card("nb-01_explore-b")
    assert "need attention" in html or "needs attention" in html  # the failed ad-hoc run and the alert
    # Times relative, the absolute UTC time on hover; run ids are not link text.
    assert re.search(
        r'<time datetime="2025-01-04T06:00:00.000Z" title="2025-01-04 06:00 UTC">\d+ [a-z]+ ago</time>', html
    )
    assert not re.search(r">\d{8}T\d{6}Z-[0-9a-f]+</a>", html)
    assert '<a class="hub" href="/hub/home">Hub</a>' in html and 'href="/hub/logout"' in html


def test_do_not_ship_is_shown_and_counts_as_attention(tmp_path):
    settings = make_home(tmp_path)
    _job_run(
        settings,
        "05_evaluate",
        "20250104T031000Z-00000e",
        "gate",
        "2025-01-04T03:00:00.000Z",
        values={"decision": "DO NOT SHIP"},
        published_status="alert",
    )
    html = build_index(settings).read_text()
    assert '<span class="verdict noship">DO NOT SHIP</span>' in html and "1 of 1 needs attention" in html


def test_relative_times_and_values_read_as_people_write_them():
    from datetime import UTC, datetime

    from workbench.reports.site import format_value, relative_time

    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert relative_time("2026-12-01T10:00:00.000Z", now) == "2 h ago"
    assert relative_time("2026-12-01T11:59:30.000Z", now) == "just now"
    assert relative_time("2026-11-28T12:00:00.000Z", now) == "3 d ago"
    assert format_value(27902.0) == "27,902" and format_value(0.712345) == "0.7123" and format_value("x") == "x"


def test_a_report_links_back_to_the_index_and_the_hub_and_says_when_in_words():
    record = RunRecord(
        run_id="20250101T000000Z-abcdef",
        notebook="01_demo",
        status="succeeded",
        started="2025-01-01T06:30:00.000Z",
        published={"status": "ok", "metrics": {"rows": 27902.0}, "metric_status": {}, "figures": [], "values": {}},
    )
    html = render_report(_executed_notebook(), record)
    nav = html[html.index('class="wb-nav"') : html.index('class="wb-header"')]
    assert 'href="../../../index.html"' in nav and 'href="/hub/home"' in nav and 'href="/hub/logout"' in nav
    assert ">2025-01-01 06:30 UTC</time>" in html and "<td>27,902</td>" in html
