"""Campaign files: strict validation, messages naming key and value, overrides, the shipped files."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.campaign_config import CampaignConfigError, load_campaign_config, parse_campaign_config

CAMPAIGNS = Path(__file__).resolve().parents[2] / "loadtest" / "campaigns"
MINIMAL = {"models": ["m"], "load": {"concurrency": [1, 4]}}


def test_minimal_file_gets_defaults() -> None:
    config = parse_campaign_config(MINIMAL)
    assert config.models == ["m"]
    assert config.client_batch_sizes == [1]
    assert [level.label() for level in config.load_levels()] == ["1 users", "4 users"]
    assert config.servers[0].batching is True
    assert config.objective() == {"percentile": "p99", "latency_s": 0.05}
    assert config.window_s == pytest.approx(2.0)
    assert config.step_count() == 2
    assert config.raw["step"]["warmup_s"] == 2.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**MINIMAL, "modles": ["x"]}, "modles: ['x'] is not a known key"),
        ({"load": {"concurrency": [1]}}, "models: None is required"),
        ({**MINIMAL, "models": []}, "models: [] must be a non-empty list"),
        (
            {"models": ["m"], "load": {"concurrency": []}},
            "needs a non-empty load.concurrency or load.rates_rps",
        ),
        ({"models": ["m"], "load": {"concurrency": [1, "8"]}}, "load.concurrency[1]: '8' must be an integer"),
        ({"models": ["m"], "load": {"concurrency": [0]}}, "load.concurrency[0]: 0 must be at least 1"),
        ({"models": ["m"], "load": {"concurrency": [2, 2]}}, "load.concurrency: [2, 2] has duplicate values"),
        ({"models": ["m"], "load": {"rates_rps": [-5]}}, "load.rates_rps[0]: -5 must be greater than 0"),
        (
            {"models": ["m"], "load": {"concurrency": [1], "arrival": "burst"}},
            "load.arrival: 'burst' must be one of",
        ),
        ({**MINIMAL, "client_batch_sizes": [True]}, "client_batch_sizes[0]: True must be an integer"),
        ({**MINIMAL, "server": [{"batching": "yes"}]}, "server[0].batching: 'yes' must be true or false"),
        ({**MINIMAL, "server": [{"max_batch": 8}]}, "server[0].max_batch: 8 is not a known key"),
        ({**MINIMAL, "server": []}, "server: [] must be a non-empty list"),
        ({**MINIMAL, "step": {"duration_s": 0}}, "step.duration_s: 0 must be greater than 0"),
        (
            {**MINIMAL, "step": {"duration_s": 10, "max_duration_s": 5}},
            "step.max_duration_s: 5.0 must be at least",
        ),
        ({**MINIMAL, "step": {"window_s": 1}}, "step.window_s: 1 is not a known key"),
        ({**MINIMAL, "objective": {"percentile": "p98"}}, "objective.percentile: 'p98' must be one of"),
        ({**MINIMAL, "on_error": "ignore"}, "on_error: 'ignore' must be one of continue, stop"),
        ({**MINIMAL, "payload": "zeros"}, "payload: 'zeros' must be one of"),
        (["models"], ": ['models'] must be a mapping"),
    ],
)
def test_bad_campaigns_are_rejected_naming_key_and_value(data: object, message: str) -> None:
    with pytest.raises(CampaignConfigError) as info:
        parse_campaign_config(data, "bad.yaml")
    assert str(info.value).startswith("bad.yaml: ")
    assert message in str(info.value)


def test_overrides_merge_dotted_and_nested_keys() -> None:
    config = parse_campaign_config(
        MINIMAL, overrides={"step.duration_s": 1.5, "step": {"warmup_s": 0.5}, "models": ["a", "b"]}
    )
    assert config.duration_s == 1.5
    assert config.warmup_s == 0.5
    assert config.max_duration_s == 20.0
    assert config.models == ["a", "b"]
    with pytest.raises(CampaignConfigError, match=r"step.duration_s: 'fast' must be a number"):
        parse_campaign_config(MINIMAL, overrides={"step.duration_s": "fast"})


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CampaignConfigError, match="cannot read campaign file"):
        load_campaign_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a\n")
    with pytest.raises(CampaignConfigError, match=r"bad.yaml: not valid YAML"):
        load_campaign_config(bad)


@pytest.mark.parametrize("name", ["demo.yaml", "full.yaml"])
def test_shipped_campaign_files_are_valid(name: str) -> None:
    config = load_campaign_config(CAMPAIGNS / name)
    assert set(config.models) == {"sentiment_fp32", "sentiment_int8", "sentiment_fp16"}
    assert any(not s.batching for s in config.servers) and any(s.batching for s in config.servers)


def test_demo_campaign_is_a_few_minutes() -> None:
    config = load_campaign_config(CAMPAIGNS / "demo.yaml")
    # warm-up + measurement + ~2 s of Locust start and stop per step
    low = config.step_count() * (config.warmup_s + config.duration_s + 2.0)
    high = config.step_count() * (config.warmup_s + config.max_duration_s + 2.0)
    assert low >= 120 and high <= 330, (low, high)


def test_server_settings_become_serve_flags() -> None:
    from servescope.settings import serve_argv

    config = parse_campaign_config(
        {
            "models": ["m"],
            "load": {"concurrency": [1]},
            "server": [
                {"batching": True, "adaptive_delay": False, "max_queue_delay_us": 20000, "instances": 2},
                {"batching": False, "intra_op_threads": 2},
            ],
        }
    )
    fixed, off = config.servers
    args = serve_argv(["servescope"], "models", ["m"], fixed, ready_file="ready.json")
    assert args[:3] == ["servescope", "serve", "--model-repository"]
    assert "--no-adaptive-delay" in args and "--no-batching" not in args
    assert args[args.index("--max-queue-delay-us") + 1] == "20000"
    assert args[args.index("--instances") + 1] == "2"
    assert args[args.index("--ready-file") + 1] == "ready.json"
    assert fixed.label() == "batching on, delay 20000 us, fixed delay, 2 instance(s)"
    args = serve_argv(["servescope"], "models", ["m"], off)
    assert "--no-batching" in args and args[args.index("--intra-op-threads") + 1] == "2"
    with pytest.raises(CampaignConfigError, match=r"server\[0\]\.adaptive_delay"):
        parse_campaign_config(
            {"models": ["m"], "load": {"concurrency": [1]}, "server": [{"adaptive_delay": "no"}]}
        )


def test_ramp_runs_the_levels_of_one_mode_in_one_generator_run() -> None:
    config = parse_campaign_config({"models": ["m"], "load": {"concurrency": [2, 4], "ramp": True}})
    assert config.ramp is True and [level.users for level in config.load_levels()] == [2, 4]
    assert parse_campaign_config({"models": ["m"], "load": {"concurrency": [2]}}).ramp is False
    with pytest.raises(CampaignConfigError, match=r"load\.ramp: True needs one of load\.concurrency or"):
        parse_campaign_config({"models": ["m"], "load": {"concurrency": [2], "rates_rps": [5], "ramp": True}})
    with pytest.raises(CampaignConfigError, match=r"load\.ramp: 'yes' must be true or false"):
        parse_campaign_config({"models": ["m"], "load": {"concurrency": [2], "ramp": "yes"}})


def test_load_engine_is_chosen_by_name_and_an_unknown_one_is_refused() -> None:
    from loadtest.engine import UnknownEngine, engine

    assert parse_campaign_config({"models": ["m"], "load": {"concurrency": [1]}}).engine == "locust"
    config = parse_campaign_config({"models": ["m"], "load": {"concurrency": [1], "engine": "locust"}})
    assert config.engine == "locust" and engine(config.engine).name == "locust"
    config = parse_campaign_config({"models": ["m"], "load": {"concurrency": [1], "engine": "perf_analyzer"}})
    assert config.engine == "perf_analyzer" and engine(config.engine).name == "perf_analyzer"
    with pytest.raises(
        CampaignConfigError, match=r"load\.engine: 'jmeter' must be one of locust, perf_analyzer$"
    ):
        parse_campaign_config({"models": ["m"], "load": {"concurrency": [1], "engine": "jmeter"}})
    with pytest.raises(
        UnknownEngine,
        match=r"load\.engine: 'jmeter' is not a known load engine \(known: locust, perf_analyzer\)",
    ):
        engine("jmeter")
