"""Server-side deltas from a Prometheus server instead of the campaign's own /metrics scrapes.

For every step, one PromQL range query per figure, evaluated at the end of the step's measured window:
increase() over the window of the samples servescope.metrics maps to each ServerDeltas field (servescope's
own metrics, or Triton's nv_* ones), so a counter reset (a restarted server) is handled the way
Prometheus handles it. The measured window of a step is the last duration_s seconds of the windows that
follow the warm-up (step_window). Only the standard library (urllib) is used.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

from servescope import metrics
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


def _selector(model: str, labels: tuple[tuple[str, str], ...] = ()) -> str:
    def quoted(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"')

    pairs = [(metrics.MODEL_LABEL, model), *labels]
    return "{" + ",".join(f'{name}="{quoted(value)}"' for name, value in pairs) + "}"


def fetch_server_deltas(client: PrometheusClient, step: StepRecord) -> ServerDeltas | None:
    """The step's ServerDeltas from Prometheus; None when Prometheus holds no series of it for the step.

    Each field is read as servescope.metrics.DELTA_SOURCES says, for the source whose series exist.
    """
    start, end = step_window(step)
    window_s = end - start
    window = f"{max(round(window_s * 1000), 1)}ms"

    answers: dict[str, list[tuple[dict[str, str], float]]] = {}  # a query asked twice is answered once

    def increase(
        sample: str, labels: tuple[tuple[str, str], ...] = (), by: str | None = None, per_model: bool = True
    ) -> list:
        grouping = f"sum by ({by}) " if by else "sum"
        selector = _selector(step.model, labels) if per_model else ""
        promql = f"{grouping}(increase({sample}{selector}[{window}]))"
        if promql not in answers:
            answers[promql] = client.query_at(promql, end, window_s)
        return answers[promql]

    def evaluate(spec: metrics.Source) -> Any:
        if isinstance(spec, metrics.Total):
            total = 0.0
            for term in spec.terms:
                rows = increase(term.sample, term.labels)
                total += term.scale * (rows[0][1] if rows else 0.0)
            return total
        if isinstance(spec, metrics.ByLabel):
            rows = increase(spec.sample, by=spec.label, per_model=spec.per_model)
            values = {labels.get(spec.label, ""): value for labels, value in rows}
            if spec.rename:
                values = {new: values[old] for old, new in spec.rename if old in values}
            if spec.buckets:
                return {metrics.bound_key(key): value for key, value in values.items()}
            return values
        if isinstance(spec, metrics.Keyed):
            out = {key: evaluate(total) for key, total in spec.entries}
            return {key: value for key, value in out.items() if value}
        return {}

    for fields in metrics.DELTA_SOURCES.values():
        probe = fields["requests"]
        assert isinstance(probe, metrics.Total)
        if not increase(probe.terms[0].sample):
            continue
        return ServerDeltas(**{name: evaluate(spec) for name, spec in fields.items()}, source="prometheus")
    return None
