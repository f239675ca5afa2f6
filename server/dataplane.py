"""The data plane: the served models, inference through their batchers, readiness and statistics.

Protocol-neutral (KServe's dataplane.py is the model): it takes and returns the types of messages.py,
raises the domain errors of errors.py and never chooses a status code or touches protobuf. Every
request is counted once in servescope_requests_total with the status code name it ends with.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from server.batcher import BatchSettings
from server.errors import ModelNotFound, Unavailable, status_of
from server.messages import IndexEntry, InferRequest, InferResponse, ModelMetadata, ServerMetadata
from server.metrics import ServerMetrics
from server.model import ModelRunner
from server.served import ModelStats, ServedModel
from servescope import metrics as contract
from servescope.echo import shown
from servescope.protocol import model_config_pb2 as mc

SERVER_NAME = "servescope"
EXTENSIONS = ("model_configuration", "statistics")
UNKNOWN_MODEL_LABEL = "_unknown"

# Requests refused before compute, by the status they end with: the reason label they are counted under.
_REJECT_REASON = {"RESOURCE_EXHAUSTED": "queue_full", "INVALID_ARGUMENT": "invalid"}


class DataPlane:
    """Every served model, and the server's readiness."""

    def __init__(
        self,
        metrics: ServerMetrics,
        clock: Callable[[], float] = time.perf_counter,
        *,
        workers: int = 1,
        whole_server: Callable[[list[ModelStats]], list[ModelStats]] | None = None,
    ) -> None:
        """Args:
        workers: worker processes of the server (reported in each model's ModelConfig).
        whole_server: turns this process's statistics into the whole server's (several workers).
        """
        self.metrics = metrics
        self.workers = workers
        self.whole_server = whole_server
        self.models: dict[str, ServedModel] = {}
        self.loading: set[str] = set()  # models named for loading that are not loaded yet
        self.ready = False
        self.draining = False
        self._clock = clock
        self._idle = asyncio.Event()
        self._idle.set()
        self._inflight = 0

    def add_model(self, runner: ModelRunner, settings: BatchSettings) -> ServedModel:
        served = ServedModel(runner, settings, self.metrics, self.workers)
        self.models[served.name] = served
        self.loading.discard(served.name)
        return served

    def model(self, name: str, version: str = "") -> ServedModel:
        """The served model of that name and version ("" is the served one); raises ModelNotFound."""
        served = self.models.get(name)
        if served is None:
            if name in self.loading:
                raise Unavailable(f"model {name!r} is still loading")
            raise ModelNotFound(f"model {shown(name)} not found (serving {shown(sorted(self.models))})")
        if version and version != served.version:
            raise ModelNotFound(
                f"model {name!r} has no version {shown(version)} (serving version {served.version!r})"
            )
        return served

    def _count_unserved(self, name: str, exc: Exception) -> None:
        # An unknown name is counted under one label, so bogus names cannot grow the metric's series;
        # a model that is still loading has a known, bounded name.
        label = name if isinstance(exc, Unavailable) else UNKNOWN_MODEL_LABEL
        self.metrics[contract.REQUESTS].labels(model=label, code=status_of(exc)).inc()

    async def infer(self, request: InferRequest, time_remaining_s: float | None) -> InferResponse:
        """Check, queue, batch and answer one request."""
        start_s = self._clock()
        try:
            served = self.model(request.model_name, request.model_version)
        except (ModelNotFound, Unavailable) as exc:
            self._count_unserved(request.model_name, exc)
            raise
        if self.draining or not self.ready:
            served.reject("draining")
            served.count(Unavailable.status)
            state = "draining" if self.draining else "not ready yet"
            raise Unavailable(f"model {served.name!r}: server is {state}, request refused")
        deadline_s = None if time_remaining_s is None else start_s + time_remaining_s
        served.inflight.inc()
        self._inflight += 1
        self._idle.clear()
        try:
            decoded = served.codec.decode(request)
            decoded_s = self._clock()
            stamps = request.stamps
            if stamps is not None:
                stamps.stamp("decoded")
            outcome = await served.batcher.submit(decoded.inputs, deadline_s, request.timeout_us)
            if stamps is not None:
                stamps.batch(outcome)
                stamps.stamp("resumed")
            encode_start_s = self._clock()
            outputs = served.codec.encode(outcome.outputs, decoded.output_indices)
            end_s = self._clock()
            if stamps is not None:
                stamps.stamp("encoded")
        except asyncio.CancelledError:
            expired = deadline_s is not None and self._clock() >= deadline_s
            served.observe_failure(self._clock() - start_s, "DEADLINE_EXCEEDED" if expired else "CANCELLED")
            raise
        except Exception as exc:
            status = status_of(exc)
            served.observe_failure(self._clock() - start_s, status)
            reason = _REJECT_REASON.get(status)
            if reason is not None:
                served.reject(reason)
            raise
        finally:
            served.inflight.dec()
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
        served.observe_success(
            end_s - start_s,
            outcome.queue_s,
            outcome.compute_s,
            decoded_s - start_s,
            end_s - encode_start_s,
            decoded.batch_size,
        )
        return InferResponse(served.name, served.version, request.id, outputs, request.stamps)

    async def drain(self, grace_s: float) -> bool:
        """Refuse new requests and wait up to grace_s for the accepted ones; True when all finished."""
        self.draining = True
        self.ready = False
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        for served in self.models.values():
            await served.batcher.close()
        loop = asyncio.get_running_loop()
        for served in self.models.values():
            await loop.run_in_executor(None, served.runner.close)

    # Control plane ------------------------------------------------------------------------------------

    def model_ready(self, name: str, version: str = "") -> bool:
        if name in self.loading:
            return False
        self.model(name, version)
        return self.ready

    def server_metadata(self, version: str) -> ServerMetadata:
        return ServerMetadata(SERVER_NAME, version, EXTENSIONS)

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        return self.model(name, version).metadata()

    def model_config(self, name: str, version: str = "") -> mc.ModelConfig:
        return self.model(name, version).config()

    def statistics(self, name: str = "", version: str = "") -> list[ModelStats]:
        chosen = [self.model(name, version)] if name else [self.models[n] for n in sorted(self.models)]
        own = [served.stats for served in chosen]
        return self.whole_server(own) if self.whole_server is not None else own

    def repository_index(self, ready_only: bool) -> list[IndexEntry]:
        if ready_only and not self.ready:
            return []
        state = "READY" if self.ready else "UNAVAILABLE"
        reason = "" if self.ready else ("draining" if self.draining else "loading")
        entries = [IndexEntry(name, self.models[name].version, state, reason) for name in sorted(self.models)]
        entries += [IndexEntry(name, "", "LOADING", "loading") for name in sorted(self.loading)]
        return entries
