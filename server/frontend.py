"""The seam between the front ends (gRPC, KServe v2 REST, metrics HTTP) and the rest of a worker.

A front end is one listening edge: `start()` listens and returns its port, `drain(left_s)` runs its own
last drain phase once the accepted calls have finished, `stop()` stops listening and closes its
connections; server/app.py iterates them and knows nothing of any transport. Every front end is built
over one `FrontDoor`, which holds the cross-cutting policy every entry passes through:

- admission (server/admission.py): every inference entry (a unary gRPC call, each request read from a
  stream, a REST infer call) is admitted against the worker's in-flight cap or refused at once, before
  its body is read or parsed;
- the error map (server/errors.py): `door.refusal(exc)` gives the one status (gRPC code name, HTTP status
  and client message) an exception ends with, whichever front end answers;
- restricted endpoint groups (server/restricted.py): `door.restricted(name)` says which of a front end's
  endpoint groups need a key, checked before admission and before the request is read.

A new front end takes the door in its constructor and calls `admit()` / `done()` around each inference
entry and `refusal()` for each error; docs/architecture.md ("A new front end") lists the files it touches.
No protocol here: this module imports neither gRPC nor aiohttp.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from server.admission import Admission
from server.dataplane import DataPlane
from server.errors import client_message, http_status_of, status_of
from server.restricted import Restrictions


@dataclass(frozen=True)
class Refusal:
    """How one failed call is answered, on any front end."""

    status: str  # the gRPC status code name
    http_status: int
    message: str


@dataclass
class FrontDoor:
    """What every front end of one worker shares: the data plane, liveness, and the policy at the seam."""

    core: DataPlane
    admission: Admission
    live: Callable[[], bool]
    # Restricted endpoint groups (restricted.py) of each front end, by its name ("gRPC", "REST").
    restrictions: dict[str, Restrictions] = field(default_factory=dict)

    def restricted(self, front_end: str) -> Restrictions:
        """The restricted groups of one front end (none: an empty, false Restrictions)."""
        return self.restrictions.get(front_end) or Restrictions()

    def admit(self) -> bool:
        """Count one inference entry in, or shed it (False, counted, nothing logged) over the cap."""
        return self.admission.admit()

    def done(self, count: int = 1) -> None:
        self.admission.done(count)

    def refusal(self, exc: BaseException) -> Refusal:
        """The status an exception raised while serving ends with (a real fault: INTERNAL, logged)."""
        return Refusal(status_of(exc), http_status_of(exc), client_message(exc))


class FrontEnd(ABC):
    """One listening edge of a worker (see the module docstring)."""

    name: str = "front end"

    @abstractmethod
    async def start(self) -> int:
        """Listen; returns the bound port. Raises OSError naming the address when it cannot."""

    async def drain(self, left_s: Callable[[], float]) -> None:  # noqa: B027 (most front ends need none)
        """The front end's own last drain phase, once the accepted calls finished (left_s: grace left)."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop listening and close the connections; safe to call twice, or after a failed start."""
