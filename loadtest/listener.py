"""Which process serves a target the campaign did not start: the one listening on its port, when that is
on this machine, and the process tree it belongs to.

- local: the target's host resolves to a loopback address (127.0.0.0/8, ::1, localhost), an unspecified
  one, or one of this machine's own interface addresses. Anything else is remote: only resolved and
  classified, never connected to.
- the listener: a TCP socket in LISTEN state on the target's port, bound to the target's address or to
  the wildcard, mapped to its process through /proc (psutil.net_connections). A socket of another
  user's process shows no pid without the permission to read its /proc entries: "not found", with why.
- the server: from each listener up to its top-most ancestor that is still the server, stopping below
  pid 1, a shell or launcher (SHELLS), and this driver and its own ancestors (a test or a harness that
  started both the server and the campaign). servescope's workers (each listens on the port with
  SO_REUSEPORT) lead to their supervisor; tritonserver to the PyTriton process that runs the model.
  Its CPU is the accounting's (loadtest/accounting.py) for that pid and all its children.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from servescope.echo import cut, shown
from servescope.results import SERVER_FOUND as FOUND
from servescope.results import SERVER_NOT_FOUND as NOT_FOUND
from servescope.results import SERVER_REMOTE as REMOTE
from servescope.results import SERVER_STARTED as STARTED

# Parents that launch servers without being part of one: the walk up the tree stops below them.
SHELLS = frozenset(
    {
        "bash", "sh", "dash", "zsh", "fish", "ksh", "tcsh", "csh", "tmux", "tmux: server", "screen",
        "sshd", "su", "sudo", "login", "init", "systemd", "tini", "dumb-init", "containerd-shim",
        "containerd-shim-runc-v2", "make", "nohup", "timeout", "env", "script", "setsid", "supervisord",
    }
)  # fmt: skip


@dataclass(frozen=True)
class ServerProcess:
    """Where the server of a run is, as far as this machine can see it."""

    where: str  # STARTED (by the campaign), FOUND (listening here), REMOTE or NOT_FOUND
    pid: int | None = None  # the top of the server's process tree (accounted with its children)
    pids: list[int] = field(default_factory=list)  # that tree when it was found
    note: str = ""  # what was found, or why nothing was


def started(pid: int) -> ServerProcess:
    """The server the campaign started itself."""
    return ServerProcess(STARTED, pid, _tree(pid), f"started by the campaign (pid {pid})")


def split_target(target: str) -> tuple[str, int]:
    """(host, port) of HOST:PORT, [V6]:PORT or a URL; ValueError naming the target otherwise."""
    netloc = urlsplit(target).netloc if "://" in target else target
    host, sep, port = netloc.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"target {shown(target)} is not HOST:PORT")
    return host.strip("[]"), int(port)


def locate(target: str) -> ServerProcess:
    """Find the process tree serving `target` on this machine; remote or not found with the reason."""
    try:
        host, port = split_target(target)
        addresses = _resolve(host, port)
    except ValueError as exc:
        return ServerProcess(NOT_FOUND, note=str(exc))
    except OSError as exc:
        return ServerProcess(NOT_FOUND, note=f"target {shown(target)} could not be resolved ({exc})")
    if not any(_is_local(address) for address in addresses):
        shown_addresses = ", ".join(sorted(map(str, addresses)))
        return ServerProcess(REMOTE, note=f"{host} ({shown_addresses}) is not an address of this machine")
    import psutil

    try:
        sockets = [c for c in psutil.net_connections(kind="tcp") if _listens(c, port, addresses)]
    except (psutil.Error, OSError) as exc:
        return ServerProcess(NOT_FOUND, note=f"the listening sockets could not be read ({exc})")
    pids = sorted({c.pid for c in sockets if c.pid})
    if not pids:
        if sockets:
            return ServerProcess(NOT_FOUND, note=f"port {port} is held by a process this user may not "
                                                 "inspect (its /proc entries are not readable)")  # fmt: skip
        return ServerProcess(NOT_FOUND, note=f"nothing listens on port {port} of {host} here")
    roots = sorted({_top(pid) for pid in pids})
    root = roots[0]
    tree = _tree(root)
    note = f"pid {root} ({_name(root)}) and {len(tree) - 1} child process(es), listening on port {port}"
    others = [r for r in roots[1:] if r not in tree]
    if others:
        note += f"; other processes on the port, not measured: {', '.join(map(str, others))}"
    return ServerProcess(FOUND, root, tree, note)


def _resolve(host: str, port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The host's addresses; a literal is parsed, a name looked up (never a connection)."""
    try:
        return {ipaddress.ip_address(host)}
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}


def _own_addresses() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    import psutil

    own = set()
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    own.add(ipaddress.ip_address(entry.address.split("%", 1)[0]))
                except ValueError:
                    continue
    return own


def _is_local(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if address.is_loopback or address.is_unspecified:
        return True
    mapped = getattr(address, "ipv4_mapped", None)
    return address in _own_addresses() or (mapped is not None and _is_local(mapped))


def _listens(conn: Any, port: int, addresses: set[Any]) -> bool:
    import psutil

    if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
        return False
    try:
        bound = ipaddress.ip_address(conn.laddr.ip.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(bound, "ipv4_mapped", None)
    return bound.is_unspecified or bound in addresses or mapped in addresses


def _driver_lineage() -> set[int]:
    """This process and its ancestors: never part of the server."""
    import psutil

    try:
        me = psutil.Process(os.getpid())
        return {me.pid, *(p.pid for p in me.parents())}
    except psutil.Error:
        return {os.getpid()}


def _top(pid: int) -> int:
    """The listener's top-most ancestor that is still the server (module docstring)."""
    import psutil

    stop = _driver_lineage()
    try:
        proc = psutil.Process(pid)
        while True:
            parent = proc.parent()
            if parent is None or parent.pid <= 1 or parent.pid in stop or parent.name() in SHELLS:
                return proc.pid
            proc = parent
    except psutil.Error:
        return pid


def _tree(pid: int) -> list[int]:
    import psutil

    try:
        proc = psutil.Process(pid)
        return [pid, *sorted(child.pid for child in proc.children(recursive=True))]
    except psutil.Error:
        return [pid]


def _name(pid: int) -> str:
    """The process's command line, cut (`python` alone would not say which server)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return cut(" ".join(proc.cmdline()) or proc.name(), 80)
    except psutil.Error:
        return "?"
