"""Server-side deltas from a Prometheus server instead of the campaign's own /metrics scrapes.

For every step, one PromQL range query per series, evaluated at the end of the step's measured window:
increase() of the servescope_* counters and histogram sums/counts over the window, so a counter reset
(a restarted server) is handled the way Prometheus handles it. The measured window of a step is
the last duration_s seconds of the windows that follow the warm-up (step_window). Only the standard
library (urllib) is used.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime

from servescope.results import ServerDeltas, StepRecord


class PrometheusError(RuntimeError):
    """Prometheus could not be reached or answered with an error; the message says which query."""


def step_window(step: StepRecord) -> tuple[float, float]:
    """(start, end) of the interval the step's figures cover, as Unix seconds.

    The load tester starts the clock at the first answer (started_at), warms up for warmup_s, then
    measures in windows and keeps the last ones (duration_s in all): the interval ends after the last
    window and starts duration_s before that.
    """
    started = datetime.fromisoformat(step.started_at.replace("Z", "+00:00")).timestamp()
    measured_s = sum(w.duration_s for w in step.windows) or step.duration_s
    end = started + step.warmup_s + max(measured_s, step.duration_s)
    return end - step.duration_s, end


class PrometheusClient:
    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def query_at(self, promql: str, at_s: float, window_s: float) -> list[tuple[dict[str, str], float]]:
        """Run a range query over the single instant `at_s`; returns (labels, value) per series."""
        params = urllib.parse.urlencode(
            {
                "query": promql,
                "start": f"{at_s:.3f}",
                "end": f"{at_s:.3f}",
                "step": f"{max(window_s, 1.0):.3f}",
            }
        )
        url = f"{self.base_url}/api/v1/query_range?{params}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                body = json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise PrometheusError(f"{self.base_url}: HTTP {exc.code} for query {promql!r}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusError(f"{self.base_url}: cannot reach Prometheus ({reason})") from exc
        except json.JSONDecodeError as exc:
            raise PrometheusError(f"{self.base_url}: answer to {promql!r} is not JSON") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"{self.base_url}: query {promql!r} failed: {body.get('error', body)}")
        series = []
        for item in body.get("data", {}).get("result", []):
            values = item.get("values") or ([item["value"]] if "value" in item else [])
            if values:
                series.append((item.get("metric", {}), float(values[-1][1])))
        return series


def _selector(model: str) -> str:
    escaped = model.replace("\\", "\\\\").replace('"', '\\"')
    return f'{{model="{escaped}"}}'


def fetch_server_deltas(client: PrometheusClient, step: StepRecord) -> ServerDeltas | None:
    """The step's ServerDeltas from Prometheus; None when Prometheus holds no servescope series for it."""
    start, end = step_window(step)
    window_s = end - start
    window = f"{max(round(window_s * 1000), 1)}ms"
    sel = _selector(step.model)

    def total(metric: str) -> float | None:
        rows = client.query_at(f"sum(increase({metric}{sel}[{window}]))", end, window_s)
        return rows[0][1] if rows else None

    def by(metric: str, label: str) -> dict[str, float]:
        rows = client.query_at(f"sum by ({label}) (increase({metric}{sel}[{window}]))", end, window_s)
        return {labels.get(label, ""): value for labels, value in rows}

    requests = total("servescope_request_duration_seconds_count")
    if requests is None:
        return None
    buckets = by("servescope_batch_size_bucket", "le")
    return ServerDeltas(
        requests=requests,
        request_s_sum=total("servescope_request_duration_seconds_sum") or 0.0,
        inferences=total("servescope_inferences_total") or 0.0,
        batches=total("servescope_batches_total") or 0.0,
        queue_count=total("servescope_queue_duration_seconds_count") or 0.0,
        queue_s_sum=total("servescope_queue_duration_seconds_sum") or 0.0,
        compute_count=total("servescope_compute_duration_seconds_count") or 0.0,
        compute_s_sum=total("servescope_compute_duration_seconds_sum") or 0.0,
        batch_size_sum=total("servescope_batch_size_sum") or 0.0,
        batch_size_buckets={_bound(le): value for le, value in buckets.items()},
        rejected=by("servescope_requests_rejected_total", "reason"),
        requests_by_code=by("servescope_requests_total", "code"),
        source="prometheus",
    )


def _bound(le: str) -> str:
    """Prometheus writes bucket bounds as floats ("1.0"); the campaign records them as "1"."""
    try:
        value = float(le)
    except ValueError:
        return le
    return "+Inf" if value == float("inf") else f"{value:g}"
