"""`shellfish bench`: the harness on a tiny model, broken peers, reproducible inputs, reports.

Fake engines for the failure cases live at the bottom of this module; workers import them
from here (the tests dir is put on the worker's PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from generated_models import needs_extra

from shellfish.bench import report
from shellfish.bench.engines import BUILTIN, check_names, engine_class
from shellfish.bench.engines.base import BenchEngine, EngineUnavailable
from shellfish.bench.harness import run_bench, run_engine
from shellfish.bench.inputs import input_ids
from shellfish.bench.models import BenchModel, describe, find_model
from shellfish.bench.results import (
    BenchResult,
    EngineResult,
    agreement,
    load_result,
    mean_agreement,
)
from shellfish.bench.spec import Plan, Point, parse_int_list
from shellfish.cli import main
from shellfish.errors import ModelNotFound, UsageError

HERE = Path(__file__).resolve().parent
GPT2_TOKENIZER = HERE.parent.parent / "shared" / "tokenizers" / "gpt2" / "tokenizer.json"
TINY_PLAN = Plan(
    lengths=(1, 4),
    contexts=(8,),
    repeats=2,
    warmup=1,
    timeout_s=120,
    quality_tokens=6,
    quality_prompts=2,
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _fake_model(tmp_path: Path) -> BenchModel:
    return BenchModel(
        name="fake", family="causal", root=str(tmp_path), vocab_size=500, max_positions=64
    )


# --- plan, inputs, results ------------------------------------------------------------------


def test_plan_points_are_fixed_and_respect_the_window() -> None:
    plan = Plan(lengths=(1, 16, 1000), contexts=(16, 128))
    points = plan.points()
    assert points == plan.points()  # same order every time
    assert points[0] == Point(16, 1)
    assert Point(16, 1000) in points and Point(128, 16) in points and Point(128, 1) in points
    assert len(points) == len(set(points))
    windowed = plan.points(max_positions=1000)
    assert Point(16, 1000) not in windowed and Point(128, 16) in windowed
    assert plan.repeats_for(Point(16, 1000)) == 1 and plan.repeats_for(Point(16, 16)) == 3


@pytest.mark.parametrize("text", ["1,x", "", "a", "1;2"])
def test_bad_integer_lists_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_int_list(text, "--lengths")


@pytest.mark.parametrize(
    "plan",
    [Plan(lengths=(0,)), Plan(contexts=()), Plan(repeats=0), Plan(warmup=-1), Plan(timeout_s=0)],
)
def test_bad_plans_are_usage_errors(plan: Plan) -> None:
    with pytest.raises(UsageError):
        plan.validate()


def test_random_inputs_are_reproducible() -> None:
    a = input_ids(64, vocab_size=1000, seed=3)
    assert a == input_ids(64, vocab_size=1000, seed=3)
    assert a != input_ids(64, vocab_size=1000, seed=4)
    assert len(a) == 64 and all(100 <= i < 1000 for i in a)


def test_text_inputs_are_reproducible() -> None:
    if not GPT2_TOKENIZER.is_file():
        pytest.skip("../shared/tokenizers/gpt2 is not present")
    a = input_ids(300, vocab_size=50257, seed=0, tokenizer=str(GPT2_TOKENIZER))
    assert a == input_ids(300, vocab_size=50257, seed=0, tokenizer=str(GPT2_TOKENIZER))
    assert len(a) == 300 and a != input_ids(
        300, vocab_size=50257, seed=1, tokenizer=str(GPT2_TOKENIZER)
    )


def test_derived_metrics_and_ratios() -> None:
    def points(ttft: float, total16: float) -> dict[str, dict[str, object]]:
        return {
            "c8-n1": {"context": 8, "new_tokens": 1, "times_ms": [ttft], "median_ms": ttft},
            "c8-n16": {"context": 8, "new_tokens": 16, "times_ms": [total16], "median_ms": total16},
        }

    ours = EngineResult("shellfish", points=points(10.0, 40.0), precision="fp32")
    peer = EngineResult("transformers", points=points(20.0, 110.0), precision="fp32")
    result = BenchResult(model={"name": "m"}, plan=Plan().to_dict(), engines=[ours, peer])
    assert ours.decode_ms_per_token(8, 16) == pytest.approx(2.0)
    assert ours.tokens_per_s(8, 16) == pytest.approx(500.0)
    assert peer.decode_ms_per_token(8, 16) == pytest.approx(6.0)
    assert result.ratio(peer, 6.0, 2.0) == pytest.approx(3.0)
    assert result.ratio(ours, 2.0, 2.0) is None
    header, rows = report.summary_rows(result)
    assert rows[1][header.index("x decode")] == "3.00x"
    assert rows[1][header.index("x TTFT")] == "2.00x"


def test_rounds_take_turns_and_pool_every_run(monkeypatch, tmp_path: Path) -> None:
    """--rounds: A B A B ..., each point's median over all rounds' runs; a failed peer is not
    run again, and its reason says in which round it failed."""
    from shellfish.bench import harness

    calls: list[str] = []
    times = {
        "shellfish": iter([[10.0, 12.0], [30.0, 31.0], [11.0, 13.0]]),
        "transformers": iter([]),
    }

    def fake_run_engine(name: str, model, plan, **kwargs) -> EngineResult:
        calls.append(name)
        if name == "ct2-int8":
            return EngineResult(name, status="error", reason="load: boom")
        ts = next(times[name], [20.0, 20.0])
        return EngineResult(
            name,
            load_ms=100.0 * len(calls),
            peak_rss_mb=float(len(calls)),
            wall_s=1.0,
            load_avg=[0.5, 0.7],
            points={
                "c8-n1": {"context": 8, "new_tokens": 1, "times_ms": ts, "median_ms": sum(ts) / 2}
            },
        )

    monkeypatch.setattr(harness, "run_engine", fake_run_engine)
    plan = Plan(lengths=(1,), contexts=(8,), repeats=2, rounds=3)
    result = harness.run_bench(
        _fake_model(tmp_path), ["shellfish", "ct2-int8", "transformers"], plan
    )
    assert calls == ["shellfish", "ct2-int8", "transformers"] + ["shellfish", "transformers"] * 2
    ours, broken, slow = result.engines
    assert ours.points["c8-n1"]["times_ms"] == [10.0, 12.0, 30.0, 31.0, 11.0, 13.0]
    assert ours.median(8, 1) == pytest.approx(12.5)  # the pooled median, not a round's
    assert ours.points["c8-n1"]["round_medians_ms"] == [11.0, 30.5, 12.0]
    assert ours.load_ms == 400.0 and ours.peak_rss_mb == 6.0 and ours.wall_s == 3.0
    assert broken.status == "error" and broken.reason == "round 1 of 3: load: boom"
    assert slow.ok and len(slow.points["c8-n1"]["times_ms"]) == 6
    assert "in each of 3 rounds" in report.machine_line(result)
    missing = EngineResult("ct2-int8", status="unavailable", reason="not installed")
    assert harness.merge_rounds([missing], 3).reason == "not installed"  # the same every round
    with pytest.raises(UsageError, match="--rounds"):
        Plan(rounds=0).validate()


def test_ratios_show_the_spread_of_the_rounds() -> None:
    def points(first: list[float], total: list[float]) -> dict[str, dict[str, object]]:
        def rec(n: int, values: list[float]) -> dict[str, object]:
            median = sorted(values)[len(values) // 2]
            return {"context": 8, "new_tokens": n, "times_ms": values, "median_ms": median,
                    "round_medians_ms": values}  # fmt: skip

        return {"c8-n1": rec(1, first), "c8-n16": rec(16, total)}

    ours = EngineResult("shellfish-int4", points=points([10, 10, 10], [40, 55, 40]))
    peer = EngineResult("ort-genai-int4", points=points([10, 10, 10], [37, 55, 43]))
    plan = Plan(lengths=(1, 16), contexts=(8,), rounds=3).to_dict()
    result = BenchResult(model={"name": "m"}, plan=plan, engines=[ours, peer])
    assert ours.round_decode_ms(8, 16) == [2.0, 3.0, 2.0]
    header, rows = report.ratios_rows(result)
    # pooled medians: (43 - 10) / (40 - 10); rounds: 27/30, 45/45, 33/30
    assert rows[0][header.index("decode")] == "1.10x (0.90-1.10)"
    assert "the lowest and highest of the 3 rounds' own ratios" in report.ratios_caption(result)
    single = BenchResult(model={"name": "m"}, plan=Plan().to_dict(), engines=[ours, peer])
    assert "rounds" not in report.ratios_caption(single)


def test_a_bench_where_nothing_ran_shows_only_why() -> None:
    """No empty tables or captions quoting "None generated tokens": the reasons, alone."""
    gone = [
        EngineResult("shellfish-int4", status="unavailable", reason="no int4 ONNX model"),
        EngineResult("ort-genai-int4", status="unavailable", reason="no int4 ONNX model"),
    ]
    result = BenchResult(model={"name": "m"}, plan=Plan().to_dict(), engines=gone)
    assert [str(t.title) for t in report.rich_tables(result)] == ["m: not measured"]
    text = report.markdown(result)
    assert "No engine ran." in text and "None" not in text and "| ort-genai-int4 |" in text


def test_agreement_counts_up_to_the_first_divergence() -> None:
    assert agreement([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert agreement([1, 2, 3, 4], [1, 9, 3, 4]) == 0.25
    assert agreement([1, 2], None) is None
    assert mean_agreement([[1, 2], [3, 4]], [[1, 2], [5, 4]]) == (0.5, 0.5)
    assert mean_agreement([[1, 2]], [[1, 2], [3]]) is None


def test_result_json_round_trip(tmp_path: Path) -> None:
    result = BenchResult(
        model={"name": "m"},
        plan=Plan().to_dict(),
        engines=[EngineResult("x", status="unavailable", reason="nope")],
    )
    path = result.save(tmp_path / "r.json")
    again = load_result(path)
    assert again.engines[0].reason == "nope" and again.model == {"name": "m"}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError):
        load_result(tmp_path / "bad.json")


def test_unknown_engine_and_model_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown engine"):
        check_names(["shellfish", "warp-drive"])
    with pytest.raises(ModelNotFound):
        find_model("no-such-model", {"SHELLFISH_BENCH_MODELS": str(tmp_path)})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound):
        describe(tmp_path / "empty")


def test_every_builtin_engine_imports_without_its_peer() -> None:
    """Engine modules import nothing heavy at import time: a missing peer cannot break them."""
    for name in BUILTIN:
        cls = engine_class(name)
        assert issubclass(cls, BenchEngine) and cls.name == name


# --- broken peers: reported, never crash ----------------------------------------------------


@pytest.mark.parametrize(
    ("target", "status", "reason"),
    [
        ("test_bench:MissingEngine", "unavailable", "warp is not installed"),
        ("test_bench:RaisingEngine", "error", "load: OSError: weights are corrupt"),
        ("test_bench:CrashingEngine", "error", "worker exited with status 3"),
        ("test_bench:ShortEngine", "error", "generated 1 tokens where"),
        ("no_such_module_anywhere:Engine", "unavailable", "does not import"),
    ],
)
def test_broken_peer_is_reported_not_raised(
    tmp_path: Path, target: str, status: str, reason: str
) -> None:
    result = run_engine("fake", _fake_model(tmp_path), TINY_PLAN, environ=_env(), target=target)
    assert result.status == status, result.reason
    assert reason in result.reason
    assert not result.points or status == "error"


def test_chatty_engine_output_does_not_corrupt_results(tmp_path: Path) -> None:
    result = run_engine(
        "fake", _fake_model(tmp_path), TINY_PLAN, environ=_env(), target="test_bench:ChattyEngine"
    )
    assert result.ok, result.reason
    assert set(result.points) == {"c8-n1", "c8-n4"}
    assert result.quality_ids == [list(range(6)), list(range(6))]
    assert result.load_ms is not None and result.peak_rss_mb and result.peak_rss_mb > 1


def test_hanging_peer_times_out_and_is_killed(tmp_path: Path) -> None:
    plan = Plan(lengths=(1,), contexts=(8,), repeats=1, warmup=0, timeout_s=3)
    started = time.monotonic()
    result = run_engine(
        "fake", _fake_model(tmp_path), plan, environ=_env(), target="test_bench:HangingEngine"
    )
    assert result.status == "timeout"
    assert time.monotonic() - started < 30


def test_missing_real_peer_is_reported(tmp_path: Path) -> None:
    """A model without the peer's format: the real engine says so (no fake numbers)."""
    model = _fake_model(tmp_path)  # no hf/, ct2/, gguf
    for name in ("transformers", "ct2-int8", "llama.cpp"):
        result = run_engine(name, model, TINY_PLAN, environ=_env())
        assert result.status == "unavailable", (name, result.reason)
        assert result.reason


# --- the harness on a real tiny model -------------------------------------------------------


@pytest.fixture
def tiny_bench_model(causal_models: Path, tmp_path: Path) -> BenchModel:
    root = tmp_path / "tiny-gpt2"
    root.mkdir()
    (root / "onnx").symlink_to(causal_models / "gpt2")
    (root / "hf").symlink_to(causal_models / "gpt2-hf")
    return describe(root)


def test_shellfish_engine_on_a_tiny_model(tiny_bench_model: BenchModel) -> None:
    assert tiny_bench_model.onnx and tiny_bench_model.vocab_size > 0
    result = run_bench(tiny_bench_model, ["shellfish", "ct2-int8"], TINY_PLAN, environ=_env())
    ours, ct2 = result.engines
    assert ours.ok, ours.reason
    assert ours.precision == "fp32" and ours.load_ms and ours.load_ms > 0
    assert set(ours.points) == {"c8-n1", "c8-n4"}
    assert all(len(p["times_ms"]) == 2 for p in ours.points.values())
    assert ours.decode_ms_per_token(8, 4) is not None
    assert ours.quality_ids is not None and [len(q) for q in ours.quality_ids] == [6, 6]
    assert ours.quality_ids[0] != ours.quality_ids[1]  # two different fixed prompts
    assert ct2.status == "unavailable"  # no CT2 conversion of the tiny model: reported
    text = report.markdown(result)
    assert "| shellfish | fp32 |" in text and "ct2-int8 | unavailable" in text


@pytest.mark.slow
def test_shellfish_and_transformers_agree_on_greedy_tokens(tiny_bench_model: BenchModel) -> None:
    """Same inputs reach every engine: greedy fp32 tokens match the reference exactly."""
    result = run_bench(tiny_bench_model, ["shellfish", "transformers"], TINY_PLAN, environ=_env())
    ours, ref = result.engines
    assert ours.ok and ref.ok, (ours.reason, ref.reason)
    assert ours.quality_ids == ref.quality_ids


def test_cli_bench_writes_tables_json_and_plots(
    tiny_bench_model: BenchModel, make_env, tmp_path: Path
) -> None:
    needs_extra("matplotlib", "bench")
    env = make_env(PYTHONPATH=_env()["PYTHONPATH"])
    out = tmp_path / "out"
    code = main(
        [
            "bench",
            "--model",
            tiny_bench_model.root,
            "--engines",
            "shellfish,llama.cpp",
            "--lengths",
            "1,4",
            "--contexts",
            "8",
            "--repeats",
            "1",
            "--out",
            str(out),
            "--plot",
        ],
        env,
    )
    assert code == 0, env.stderr.getvalue()
    stdout = env.stdout.getvalue()
    assert "summary" in stdout and "shellfish" in stdout and "not measured" in stdout
    data = json.loads((out / "tiny-gpt2.json").read_text())
    assert [e["engine"] for e in data["engines"]] == ["shellfish", "llama.cpp"]
    assert (out / "tiny-gpt2.md").is_file() and (out / "tiny-gpt2.png").stat().st_size > 1000


def test_cli_bench_that_measures_nothing_says_so(tiny_bench_model: BenchModel, make_env) -> None:
    env = make_env(PYTHONPATH=_env()["PYTHONPATH"])
    args = ["bench", "--model", tiny_bench_model.root, "--engines", "ct2-int8,llama.cpp"]
    assert main([*args, "--lengths", "1", "--contexts", "8", "--repeats", "1"], env) == 1
    assert "not measured" in env.stdout.getvalue() and "summary" not in env.stdout.getvalue()
    assert "no engine ran: nothing was measured" in env.stderr.getvalue()


def test_cli_bench_bad_flags(make_env) -> None:
    for argv in (
        ["bench", "--lengths", "1,x"],
        ["bench", "--engines", "nope"],
        ["bench", "--plot"],
        ["bench", "--model", "/no/such/model"],
    ):
        env = make_env()
        code = main(argv, env)
        assert code != 0
        err = env.stderr.getvalue()
        assert err.startswith("shellfish: error:") and len(err.strip().splitlines()) == 1


# --- fake engines (imported by worker processes) --------------------------------------------


class _Counting(BenchEngine):
    def load(self) -> None:
        pass

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        return list(range(new_tokens))


class MissingEngine(_Counting):
    def check(self) -> None:
        raise EngineUnavailable("warp is not installed", hint="pip install warp")


class RaisingEngine(_Counting):
    def load(self) -> None:
        raise OSError("weights are corrupt")


class CrashingEngine(_Counting):
    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        sys.stderr.write("segfault-like death\n")
        os._exit(3)


class ShortEngine(_Counting):
    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        return [0]


class ChattyEngine(_Counting):
    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        print("llama_model_loader: chatter on stdout {not json")
        os.write(1, b"raw fd-1 chatter\n")
        return list(range(new_tokens))


class HangingEngine(_Counting):
    def load(self) -> None:
        time.sleep(600)


def test_cold_warm_builds_the_daemon_latency_command(tmp_path: Path) -> None:
    from shellfish.bench import coldwarm

    model = BenchModel(
        name="m", family="causal", root=str(tmp_path), vocab_size=10, int4=str(tmp_path)
    )
    if coldwarm.daemon_latency_script() is None:
        with pytest.raises(UsageError, match="daemon_latency"):
            coldwarm.cold_warm_command(model, runs=2)
        return
    command = coldwarm.cold_warm_command(model, runs=2)
    assert command[1].endswith("daemon_latency.py")
    assert command[2:] == ["--model-dir", str(tmp_path), "--runs", "2", "--max-tokens", "16"]
    with pytest.raises(UsageError):
        coldwarm.cold_warm_command(BenchModel(name="x", family="causal", root="/", vocab_size=1), 2)
