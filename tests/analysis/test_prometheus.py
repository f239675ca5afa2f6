"""--prometheus-url: server-side figures from PromQL range queries, against a small fake Prometheus on
127.0.0.1 port 0 that speaks the query API's JSON."""

from __future__ import annotations

import json
import threading
import urllib.parse
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from analysis import analyze
from analysis.reader import load_campaign
from cli.main import main

# What the fake Prometheus answers, by metric name: a number, or {label value: number} for `sum by`.
SERIES = {
    "servescope_request_duration_seconds_count": 1000.0,
    "servescope_request_duration_seconds_sum": 6.5,
    "servescope_inferences_total": 1000.0,
    "servescope_batches_total": 500.0,
    "servescope_queue_duration_seconds_count": 1000.0,
    "servescope_queue_duration_seconds_sum": 4.0,
    "servescope_compute_duration_seconds_count": 500.0,
    "servescope_compute_duration_seconds_sum": 1.0,
    "servescope_batch_size_sum": 1000.0,
    "servescope_batch_size_bucket": {"1.0": 0.0, "2.0": 500.0, "+Inf": 500.0},
    "servescope_requests_rejected_total": {"queue_full": 3.0},
    "servescope_requests_total": {"OK": 1000.0},
}


class FakePrometheus:
    def __init__(
        self, answer_error: bool = False, known_models: tuple[str, ...] = ("sentiment_fp32",)
    ) -> None:
        self.queries: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                params = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
                owner.queries.append({"path": url.path, **params})
                if answer_error:
                    body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
                    self._send(400, body)
                    return
                self._send(
                    200,
                    {"status": "success", "data": {"resultType": "matrix", "result": owner.result(params)}},
                )

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.known_models = known_models
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def result(self, params: dict[str, str]) -> list[dict]:
        query, end = params["query"], params["end"]
        if not any(f'model="{m}"' in query for m in self.known_models):
            return []
        metric = query.split("increase(", 1)[1].split("{", 1)[0]
        value = SERIES[metric]
        if isinstance(value, dict):
            label = query.split("sum by (", 1)[1].split(")", 1)[0]
            return [{"metric": {label: k}, "values": [[float(end), str(v)]]} for k, v in value.items()]
        return [{"metric": {}, "values": [[float(end), str(value)]]}]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakePrometheus:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def one_step(handmade, kit):
    # The campaign's own scrape says 1 ms queueing and batches of 1; Prometheus will say otherwise.
    return handmade([kit.Shape(users=4, queue_s=0.001, compute_s=0.001, batch_mean=1, delay_us=0)])


def test_server_figures_come_from_prometheus_range_queries(one_step):
    with FakePrometheus() as prometheus:
        summary = analyze(load_campaign(one_step), prometheus_url=prometheus.url)
    row = summary.steps[0]
    assert row.batch_size_mean == pytest.approx(2.0)
    assert row.decomposition.queueing_s == pytest.approx(0.004)
    assert row.decomposition.compute_s == pytest.approx(0.002)
    assert any("1 of 1 steps from Prometheus" in note for note in summary.notes)
    # One range query per series, at the end of the measured window, over exactly that window:
    # started 14:00:00 UTC + 2 s warm-up + three windows of 10/3 s = 14:00:12, over 10 s.
    end = datetime.fromisoformat("2026-11-29T14:00:12+00:00").timestamp()
    queries = {q["query"]: q for q in prometheus.queries}
    q = queries['sum(increase(servescope_queue_duration_seconds_sum{model="sentiment_fp32"}[10000ms]))']
    assert q["path"] == "/api/v1/query_range"
    assert float(q["start"]) == pytest.approx(end) and float(q["end"]) == pytest.approx(end)
    assert 'sum by (le) (increase(servescope_batch_size_bucket{model="sentiment_fp32"}[10000ms]))' in queries
    # One query per figure: the per-model ones above, and the three per-worker ones (no model selector).
    assert len(prometheus.queries) == len(SERIES) + 3


def test_prometheus_without_the_series_keeps_the_campaign_scrape(one_step):
    with FakePrometheus(known_models=("other_model",)) as prometheus:
        summary = analyze(load_campaign(one_step), prometheus_url=prometheus.url)
    assert summary.steps[0].decomposition.queueing_s == pytest.approx(0.001)
    assert any("Prometheus has no servescope series for sentiment_fp32" in note for note in summary.notes)


def test_prometheus_query_error_is_one_clear_line(capsys, one_step):
    with FakePrometheus(answer_error=True) as prometheus:
        code = main(["analyze", str(one_step), "--prometheus-url", prometheus.url])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith(f"servescope analyze: error: {prometheus.url}: HTTP 400 for query 'sum(increase(")
    assert "parse error at char 3" in err


def test_unreachable_prometheus_is_one_clear_line(capsys, one_step):
    with FakePrometheus() as prometheus:
        url = prometheus.url  # the port is closed once the context ends
    code = main(["analyze", str(one_step), "--prometheus-url", url])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith(f"servescope analyze: error: {url}: cannot reach Prometheus (")


def test_prometheus_url_must_be_http(capsys, one_step):
    code = main(["analyze", str(one_step), "--prometheus-url", "localhost:9090"])
    assert code == 2
    assert "--prometheus-url 'localhost:9090' must start with http:// or https://" in capsys.readouterr().err
