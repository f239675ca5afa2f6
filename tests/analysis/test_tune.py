"""`servescope tune`: usage errors name the option, the best settings become a config Triton can read,
and a real tune from batching off applies the top recommendation and checks its prediction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from cli.tune import NOT_THE_SERVER, parse_objective, parse_start
from cli.tune_result import best_config
from servescope.errors import UsageError
from servescope.protocol import model_config_pb2 as mc
from servescope.repository import list_models, read_config
from servescope.settings import ServeFlags


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--objective", "p99 under 50"], "--objective 'p99 under 50'"),
        (["--from", "batch=8"], "--from 'batch=8': expected KEY=VALUE"),
        (["--budget-min", "0"], "--budget-min 0: must be greater than 0"),
        (["--target", "127.0.0.1:1"], "--target and --metrics-url go together"),
    ],
)
def test_bad_options_are_one_line_naming_the_option(model_repository, tmp_path, capsys, argv, message):
    code = main(["tune", "--model-repository", str(model_repository), "--model", "sentiment_fp32",
                 "--output", str(tmp_path / "out"), *argv])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err


def test_an_unknown_model_and_a_used_output_are_refused(model_repository, tmp_path, capsys):
    assert main(["tune", "--model-repository", str(model_repository), "--model", "nope",
                 "--output", str(tmp_path / "a")]) == 2  # fmt: skip
    assert "--model 'nope': not in --model-repository" in capsys.readouterr().err
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("")
    assert main(["tune", "--model-repository", str(model_repository), "--model", "sentiment_fp32",
                 "--output", str(used)]) == 2  # fmt: skip
    assert "not empty; choose a new folder" in capsys.readouterr().err


def test_objective_and_start_settings_parse() -> None:
    assert parse_objective("p95 <= 20ms") == ("p95", 20.0)
    assert parse_start(["batching=false", "max_queue_delay_us=20000", "workers=2"]) == {
        "batching": False,
        "max_queue_delay_us": 20000,
        "workers": 2,
    }
    with pytest.raises(UsageError, match="KEY one of"):
        parse_start(["batching"])


def test_the_best_settings_become_the_repositorys_config_with_them_applied(model_repository) -> None:
    entry = next(e for e in list_models(model_repository) if e.name == "sentiment_fp32")
    tuned = best_config(
        entry.config, ServeFlags(batching=True, max_batch_size=16, max_queue_delay_us=700, instances=2)
    )
    assert tuned.max_batch_size == 16
    assert tuned.dynamic_batching.max_queue_delay_microseconds == 700
    assert all(size <= 16 for size in tuned.dynamic_batching.preferred_batch_size)
    assert [(g.count, g.kind) for g in tuned.instance_group] == [(2, mc.ModelInstanceGroup.KIND_CPU)]
    assert tuned.input == entry.config.input and tuned.platform == entry.config.platform
    off = best_config(entry.config, ServeFlags(batching=False))
    assert not off.HasField("dynamic_batching")
    assert entry.config.HasField("dynamic_batching")  # the repository's own config is left alone


@pytest.mark.slow
def test_a_tune_from_batching_off_enables_it_and_checks_the_prediction(
    model_repository, tmp_path, kit, capsys
):
    out = tmp_path / "tune"
    code = main(["tune", "--model-repository", str(model_repository), "--model", "sentiment_fp32",
                 "--from", "batching=false", "--concurrency", "16", "--step-duration-s", "2",
                 "--warmup-s", "0.5", "--budget-min", "4", "--output", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = json.loads((out / "tune.json").read_text())
    first = result["iterations"][0]
    assert first["settings"] == {"batching": False}
    assert "Stopped: " in printed and "Serve it with: servescope serve" in printed
    assert (out / "best" / "serve.sh").read_text().startswith("servescope serve ")
    assert (out / "compare" / "compare.json").is_file()
    best = result["iterations"][result["best_index"]]
    config = read_config(out / "best" / "config.pbtxt")
    assert config.HasField("dynamic_batching") == best["settings"]["batching"]
    if first["verdict"] in NOT_THE_SERVER:
        # Other processes held the CPU: the verdict is then the machine's, and tune stops and says so.
        assert "not the server" in result["stopped_because"] and len(result["iterations"]) == 1
        assert kit.contended(Path(first["campaign"])) or first["verdict"] == "generator-bound"
        pytest.skip(f"the machine was contended ({first['verdict']}): the planted start cannot be seen")
    # Batching off at 16 users queues: the top change enables it, with a throughput prediction.
    assert first["change"] is not None, first
    assert first["change"]["setting"] == "batching" and first["change"]["value"] is True, first
    assert len(result["iterations"]) >= 2
    second = result["iterations"][1]
    assert second["settings"]["batching"] is True
    assert first["prediction"]["figure"].endswith("_per_s") and first["measured"] is not None
    assert first["measured"] > first["prediction"]["current"]  # batching paid
    assert first["prediction_error"] == pytest.approx(first["measured"] / first["prediction"]["expected"] - 1)
    assert f"predicted {first['prediction']['figure']}" in printed
