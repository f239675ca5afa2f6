"""One worker process of a multi-worker server: a whole Server on the shared port, started by the
supervisor with multiprocessing's spawn (never a fork of a process that holds gRPC state).

The worker tells the supervisor through `events` when its models are loaded ("loaded"), when it serves
("ready") and why it could not start ("failed", with the error's kind and message); it turns ready only
once the supervisor opens `gate` (every worker loaded), so the server is ready when all of them are.
SIGTERM or SIGINT drains it as `servescope serve` does and exits 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
from typing import Any

GATE_POLL_S = 0.05

# Exit codes and error kinds, as the command line uses them.
USAGE, FAULT = 2, 1


def error_kind(exc: BaseException) -> int:
    from server.model import DeviceError
    from servescope.repository import RepositoryError

    if isinstance(exc, RepositoryError | ValueError) and not isinstance(exc, DeviceError):
        return USAGE
    return FAULT


def run_worker(options: Any, index: int, events: Any, gate: Any, log_level: str) -> None:
    """The worker's main (the spawn target). `options` is the server's ServerOptions for this worker."""
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    sys.exit(asyncio.run(_serve(dataclasses.replace(options, worker_index=index), index, events, gate)))


async def _serve(options: Any, index: int, events: Any, gate: Any) -> int:
    from server.app import Server

    pid = os.getpid()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def wait_for_the_others() -> None:
        events.put(("loaded", index, pid, None))
        while not gate.is_set():
            if stop.is_set():
                raise asyncio.CancelledError  # stopped before the server became ready
            await asyncio.sleep(GATE_POLL_S)

    server = Server(options, before_ready=wait_for_the_others)
    try:
        await server.start()
    except asyncio.CancelledError:
        return 0
    except Exception as exc:  # reported to the supervisor, which says it on the command line
        events.put(("failed", index, pid, (error_kind(exc), str(exc))))
        logging.getLogger(__name__).debug("worker %d failed to start", index, exc_info=exc)
        return error_kind(exc)
    events.put(("ready", index, pid, None))
    await stop.wait()
    drained = await server.stop()
    logging.getLogger(__name__).info(
        "stopped (%s)", "all accepted requests answered" if drained else "grace period expired"
    )
    return 0
