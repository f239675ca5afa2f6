"""servescope/settings.py SETTINGS is the one definition of each server setting: every reader and writer
(server/cli.py's parser, its bound checks, the batcher's, ServeFlags.argv, recommendations' flags) agrees
with it, checked here through server/cli.py's real parser."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from analysis.recommendation import Change, server_change
from loadtest.campaign_config import CampaignConfigError, parse_campaign_config
from server.batcher import BatchSettings
from server.cli import add_arguments, auto_workers, options_from_args
from servescope import settings
from servescope.errors import UsageError
from servescope.settings import SETTINGS, ServeFlags, Setting

FIELDS = ServeFlags.keys()


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serve", exit_on_error=False)
    add_arguments(parser)
    return parser


def parse(tmp_path: Path, argv: list[str]):
    return options_from_args(parser().parse_args(["--model-repository", str(tmp_path), *argv]))


def samples(setting: Setting) -> list[Any]:
    """Values of a setting worth asking for: its bounds, its default and its words."""
    if setting.switch:
        return [False]
    if setting.choices:
        return list(setting.choices)
    values = [setting.low or 0, (setting.low or 0) + 3]
    if setting.high is not None:
        values.append(setting.high)
    return values + (["auto"] if setting.auto else [])


def expected(setting: Setting, value: Any, options: Any) -> Any:
    return auto_workers(options.device) if setting is settings.WORKERS and value == "auto" else value


def test_every_setting_has_its_parser_argument_under_its_own_name() -> None:
    actions = {flag: action for action in parser()._actions for flag in action.option_strings}
    for setting in SETTINGS:
        assert setting.flag in actions, setting.flag
        assert actions[setting.flag].dest == setting.name, setting.flag
        assert setting.flag.removeprefix("--").upper().replace("-", "_") in setting.env


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_parses_from_its_flag_and_its_environment(
    tmp_path: Path, setting: Setting, monkeypatch: pytest.MonkeyPatch
) -> None:
    for value in samples(setting):
        options = parse(tmp_path, setting.argv_for(value))
        assert getattr(options, setting.name) == expected(setting, value, options), (setting.flag, value)
        monkeypatch.setenv(setting.env, "true" if setting.switch else str(value))
        options = parse(tmp_path, [])
        assert getattr(options, setting.name) == expected(setting, value, options), (setting.env, value)
        monkeypatch.delenv(setting.env)


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.high is not None], ids=lambda s: s.name)
def test_a_value_above_a_bound_is_refused_by_the_cli_and_the_batcher_naming_it(
    tmp_path: Path, setting: Setting
) -> None:
    above = setting.high + 1
    with pytest.raises(UsageError, match=f"^{setting.flag} {above}: above the maximum {setting.high}$"):
        parse(tmp_path, setting.argv_for(above))
    with pytest.raises(ValueError, match=rf"^{setting.name} must be in {setting.low}\.\.{setting.high}"):
        setting.check(above)


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.low is not None], ids=lambda s: s.name)
def test_a_value_below_a_bound_is_refused_by_the_parser(tmp_path: Path, setting: Setting) -> None:
    below = str(setting.low - 1)
    why = "is not a positive integer" if setting.low == 1 else "is negative"
    with pytest.raises(argparse.ArgumentError, match=f"{below} {why}"):
        parse(tmp_path, [setting.flag, below])
    with pytest.raises(argparse.ArgumentError, match="'many' is not an integer"):
        parse(tmp_path, [setting.flag, "many"])


def test_the_batcher_checks_its_fields_by_the_settings_bounds() -> None:
    with pytest.raises(
        ValueError, match=f"max_concurrent_batches must be in 1..{settings.INSTANCES.high}, got 0"
    ):
        BatchSettings(max_batch_size=8, max_concurrent_batches=0)
    with pytest.raises(ValueError, match=r"max_queue_size must be >= 0 \(0: unbounded\), got -1"):
        BatchSettings(max_batch_size=8, max_queue_size=-1)
    high = settings.MAX_BATCH_SIZE.high
    assert BatchSettings(max_batch_size=high).max_batch_size == high


def test_every_serve_flags_field_is_a_setting() -> None:
    assert ServeFlags.keys() <= {s.name for s in SETTINGS}


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.name in FIELDS], ids=lambda s: s.name)
def test_serve_flags_argv_asks_for_every_value_of_every_field(tmp_path: Path, setting: Setting) -> None:
    for value in samples(setting):
        options = parse(tmp_path, ServeFlags(**{setting.name: value}).argv())
        assert getattr(options, setting.name) == expected(setting, value, options), (setting.name, value)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_a_server_change_prints_the_flag_that_makes_it(tmp_path: Path, setting: Setting) -> None:
    for value in samples(setting):
        change = server_change(setting, value, None)
        assert change.flag == setting.flag_for(value)
        options = parse(tmp_path, change.flag.split())
        for name, wanted in change.settings().items():
            assert getattr(options, name) == expected(settings.BY_NAME[name], wanted, options), change


def test_a_change_with_settings_that_go_with_it_prints_them_all(tmp_path: Path) -> None:
    change = server_change(settings.BATCHING, True, False, {"max_batch_size": 16, "max_queue_delay_us": 700})
    assert change.flag == f"{settings.MAX_BATCH_SIZE.flag} 16 {settings.MAX_QUEUE_DELAY_US.flag} 700"
    options = parse(tmp_path, change.flag.split())
    assert (options.batching, options.max_batch_size, options.max_queue_delay_us) == (True, 16, 700)


def test_a_server_change_of_no_setting_is_refused() -> None:
    with pytest.raises(KeyError, match="not a server setting: max_batch"):
        Change("max_batch", 4)
    assert Change("client_batch_size", 8, 1, "client", "--batch-size 8").flag == "--batch-size 8"


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.name in FIELDS], ids=lambda s: s.name)
def test_a_campaign_server_entry_takes_what_the_setting_allows(tmp_path: Path, setting: Setting) -> None:
    base = {"models": ["m"], "load": {"concurrency": [1]}}
    for value in samples(setting):
        config = parse_campaign_config({**base, "server": [{setting.name: value}]})
        options = parse(tmp_path, config.servers[0].argv())
        assert getattr(options, setting.name) == expected(setting, value, options), (setting.name, value)
    if setting.high is not None:
        with pytest.raises(CampaignConfigError, match=f"must be at most {setting.high}"):
            parse_campaign_config({**base, "server": [{setting.name: setting.high + 1}]})
