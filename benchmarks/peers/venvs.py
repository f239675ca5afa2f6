"""The peers' own virtual environments, created on first use in benchmarks/peers/.venvs/ (ignored by git).

Triton (nvidia-pytriton), MLServer and servescope pin conflicting versions, so each peer gets its own
environment, built with the interpreter that runs this harness from <peer>/requirements.txt. A stamp
file holds a hash of the requirements; a changed file reinstalls.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
PEERS = ("triton", "mlserver", "tools")
STAMP = ".requirements-sha256"

log = logging.getLogger("peers.venvs")


def requirements_file(peer: str) -> Path:
    return HERE / peer / "requirements.txt"


def venv_dir(peer: str) -> Path:
    return VENVS / peer


def venv_python(peer: str) -> Path:
    return venv_dir(peer) / "bin" / "python"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_current(peer: str) -> bool:
    stamp = venv_dir(peer) / STAMP
    return (
        venv_python(peer).exists()
        and stamp.is_file()
        and stamp.read_text().strip() == _digest(requirements_file(peer))
    )


def ensure(peer: str) -> Path:
    """Return the peer's Python, creating or updating its environment first if needed (minutes)."""
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; expected one of {PEERS}")
    if is_current(peer):
        return venv_python(peer)
    target = venv_dir(peer)
    requirements = requirements_file(peer)
    log.warning("creating the %s environment in %s (a few minutes, once)", peer, target)
    VENVS.mkdir(parents=True, exist_ok=True)
    # The harness may itself run in a venv: build from the interpreter it was made from.
    base = Path(getattr(sys, "_base_executable", sys.executable))
    subprocess.run([str(base), "-m", "venv", "--clear", str(target)], check=True)
    pip = [str(venv_python(peer)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    (target / STAMP).write_text(_digest(requirements) + "\n")
    return venv_python(peer)


def package_versions(peer: str, names: list[str]) -> dict[str, str]:
    """Installed versions of the named packages in a peer environment ("" where absent)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = ''\n"
        "print(json.dumps(out))\n"
    )
    import json

    done = subprocess.run(
        [str(venv_python(peer)), "-c", code, *names], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout)


def triton_environment() -> dict[str, str]:
    """Environment for PyTriton: its Python-backend stub must load the libpython of the interpreter
    whose standard library it uses, not the system one (docs/peers.md, Gotchas), so put the base
    interpreter's lib/ first on LD_LIBRARY_PATH when it holds a shared libpython."""
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlibrary = sysconfig.get_config_var("LDLIBRARY") or ""
    if libdir and ldlibrary.endswith(".so") and (Path(libdir) / ldlibrary).exists():
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH")) if p)
    return env
