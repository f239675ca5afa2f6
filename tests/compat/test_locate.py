"""Finding perf_analyzer: the venv's install, SERVESCOPE_PERF_ANALYZER, and one clear line when missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from loadtest.perf_analyzer import (
    ENV_BINARY,
    Located,
    PerfAnalyzerError,
    PerfAnalyzerMissing,
    default_folder,
    locate,
    version,
)


def test_the_installed_binary_runs_with_the_environment_locate_gives(perf_analyzer: Located) -> None:
    assert perf_analyzer.path == default_folder() / "perf_analyzer" or os.environ.get(ENV_BINARY)
    first = perf_analyzer.env["LD_LIBRARY_PATH"].split(os.pathsep)[0]
    assert first == str(perf_analyzer.path.resolve().parent)
    assert version(perf_analyzer).startswith("Perf Analyzer Version 2.48")


def test_missing_binary_names_the_path_and_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(PerfAnalyzerMissing) as caught:
        locate(environ={}, prefix=str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path / "lib" / "perf_analyzer" / "perf_analyzer") in message
    assert "make perf-analyzer" in message and ENV_BINARY in message


def test_the_environment_variable_names_a_users_own_binary(perf_analyzer: Located, tmp_path: Path) -> None:
    link = tmp_path / "my-perf-analyzer"
    link.symlink_to(perf_analyzer.path)
    located = locate(environ={ENV_BINARY: str(link), "LD_LIBRARY_PATH": "/opt/mine"}, prefix=str(tmp_path))
    assert located.path == link
    # the binary's real folder (its libraries) first, then what the caller had
    assert located.env["LD_LIBRARY_PATH"] == os.pathsep.join([str(perf_analyzer.path.parent), "/opt/mine"])
    assert version(located).startswith("Perf Analyzer Version")

    with pytest.raises(PerfAnalyzerMissing, match=f"{ENV_BINARY}=/no/such/binary: no executable file there"):
        locate(environ={ENV_BINARY: "/no/such/binary"})


def test_a_binary_without_its_libraries_is_an_error_with_its_output(
    perf_analyzer: Located, tmp_path: Path
) -> None:
    alone = tmp_path / "perf_analyzer"
    shutil.copy2(perf_analyzer.path, alone)  # the real binary, without libb64/libcudart beside it
    with pytest.raises(PerfAnalyzerError) as caught:
        version(locate(environ={ENV_BINARY: str(alone)}))
    assert "without a version line" in str(caught.value)
    assert "error while loading shared libraries" in caught.value.lines[-1]
    assert ".so" in caught.value.lines[-1]
