"""The Locust side of servescope: KServe v2 users over gRPC (unary or streaming) and REST, closed and open
loop, streaming per-request samples.

Run only as a Locust locustfile in its own process (`python -m locust -f loadtest/locustfile.py ...`),
never imported by the campaign driver: Locust monkey-patches the process with gevent. The driver
passes one JSON object with `--servescope-config` (Locust forwards it from a master to its workers):

    target, model, batch_size, payload ("auto"|"tokens"|"random"), seed, samples_dir, timeout_s,
    mode ("closed"|"open"), rate_rps (total, open loop), users (open loop: users sharing the rate),
    arrival ("constant"|"poisson"), max_inflight (open loop, per user), value_ranges ({input: [min, max]}),
    connections (gRPC connections per Locust process),
    ramp (optional list of {"until_s", "users", "rate_rps"}: the step shape, see shape_steps.py),
    protocol ("grpc"|"http"), streaming (gRPC: one ModelStreamInfer stream per user), tls_ca, tls_cert,
    tls_key, model_version, headers ({name: value}, gRPC metadata or HTTP headers),
    input_data (perf_analyzer JSON input file, see input_data.py)

The user classes combine a load mode (locust_users/loops.py: ClosedLoop, OpenLoop) with a transport's
user (locust_users/grpc.py: unary gRPC, or one ModelStreamInfer stream per user with `streaming`, the
client in grpc_stream.py; locust_users/http.py: KServe v2 REST on Locust's FastHttpUser, binary tensors):
ClosedLoopUser and OpenLoopUser over gRPC, HttpClosedLoopUser and HttpOpenLoopUser over REST.
loadtest/user_classes.py names them for the driver (locust_run.py).

Every request fires exactly one Locust request event (perf_counter timing, milliseconds) and appends
one record to samples-<host>-<pid>.bin in samples_dir (see samples.py); failures carry their gRPC
status code name in `exception=` (an HTTP status is recorded as the gRPC code the server gives for the
same failure, servescope.status; an in-band streaming error as UNKNOWN). status-<host>-<pid>.json
records the generator's own health: Locust's CPU warning, the highest CPU use it reported, and
open-loop arrivals sent late or dropped.
"""

from __future__ import annotations

# gRPC must cooperate with gevent before any channel exists, so before the users' modules load.
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import logging  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from locust import events  # noqa: E402

from loadtest.locust_users.grpc import GrpcUser  # noqa: E402
from loadtest.locust_users.http import HttpUser  # noqa: E402
from loadtest.locust_users.loops import ClosedLoop, OpenLoop  # noqa: E402
from loadtest.locust_users.process import PROCESS  # noqa: E402


class ClosedLoopUser(ClosedLoop, GrpcUser):
    """Closed loop over gRPC (unary, or streaming)."""


class OpenLoopUser(OpenLoop, GrpcUser):
    """Open loop over gRPC (unary, or streaming)."""


class HttpClosedLoopUser(ClosedLoop, HttpUser):
    """Closed loop over KServe v2 REST."""


class HttpOpenLoopUser(OpenLoop, HttpUser):
    """Open loop over KServe v2 REST."""


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    parser.add_argument(
        "--servescope-config", type=str, default="{}", help="servescope load configuration (JSON)"
    )


@events.cpu_warning.add_listener
def _on_cpu_warning(environment: Any, cpu_usage: float, **_kwargs: Any) -> None:
    PROCESS.status["cpu_warning"] = True
    PROCESS.status["cpu_warning_times"].append(time.time())


@events.usage_monitor.add_listener
def _on_usage(environment: Any, cpu_usage: float, memory_usage: int, **_kwargs: Any) -> None:
    PROCESS.status["max_cpu_percent"] = max(PROCESS.status["max_cpu_percent"], float(cpu_usage))


@events.test_stop.add_listener
def _on_test_stop(**_kwargs: Any) -> None:
    for stream in list(PROCESS.streams):
        stream.close()
    PROCESS.flush()
    dropped = PROCESS.status["dropped"]
    if dropped:
        logging.getLogger("servescope.locust").warning(
            "%d open-loop arrivals were dropped (in-flight cap reached) and not sent", dropped
        )


@events.quitting.add_listener
def _on_quitting(**_kwargs: Any) -> None:
    PROCESS.flush()
