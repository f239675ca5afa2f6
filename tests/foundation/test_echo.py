"""servescope.echo: every echoed value is bounded, whatever its size or nesting, and says it was cut."""

from __future__ import annotations

import time

import pytest

from servescope.echo import ECHO_LIMIT_CHARS, MESSAGE_LIMIT_CHARS, cut, shown


def test_short_values_are_shown_whole() -> None:
    assert shown("tokens") == "'tokens'"
    assert shown([1, 100]) == "[1, 100]"
    assert shown(3.5) == "3.5" and shown(None) == "None" and shown(True) == "True"


@pytest.mark.parametrize("size", [16 * 1024, 1 << 20, 10 << 20])
def test_a_long_string_is_cut_with_its_length(size: int) -> None:
    text = shown("x" * size)
    assert text.startswith("'xxx") and text.endswith(f"...[cut: {size} chars in all]")
    assert len(text) < ECHO_LIMIT_CHARS + 40


def test_non_ascii_is_escaped_so_the_text_stays_ascii() -> None:
    assert shown("é中") == "'\\xe9\\u4e2d'"
    assert shown(b"\x00" * 1000).isascii() and len(shown(b"\x00" * 1000)) < ECHO_LIMIT_CHARS + 40


def test_an_alias_bomb_and_deep_nesting_render_in_bounded_time() -> None:
    bomb: list = ["lol"]
    for _ in range(40):  # 9**40 leaves if expanded
        bomb = [bomb] * 9
    deep: list = []
    node = deep
    for _ in range(100_000):
        node.append([])
        node = node[0]
    start_s = time.perf_counter()
    for value in (bomb, {"key": bomb}, deep, 10**10_000):
        assert len(shown(value)) <= ECHO_LIMIT_CHARS + 40
    assert time.perf_counter() - start_s < 0.5
    assert shown(10**10_000) == "<int of 33220 bits>"


def test_cut_bounds_a_whole_message() -> None:
    assert cut("short") == "short"
    long = cut("m" * 100_000)
    assert long.endswith("...[cut: 100000 chars in all]") and len(long) < MESSAGE_LIMIT_CHARS + 40
