"""The per-stage timings of a suggestion (`Done.extra["stages_ms"]`, docs/protocol.md)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shellfish.config import Settings
from shellfish.engine.base import GenerationConfig
from shellfish.events import Done, Event, Token
from shellfish.request import TaskRequest
from shellfish.suggest import run_suggest
from shellfish.suggest.timing import STAGES, StageClock
from tests.test_suggest import CallScriptedRunner, ScriptedRunner, world  # noqa: F401


class TimedRunner(ScriptedRunner):
    """Sleeps like a model (prefill then per-token decode) and reports it as the engine does."""

    def __init__(self, texts: list[str], prefill_s: float = 0.03, step_s: float = 0.01) -> None:
        super().__init__(texts)
        self.prefill_s, self.step_s = prefill_s, step_s

    def generate(
        self, prompt: str, config: GenerationConfig, *, cancel: threading.Event | None = None
    ) -> Iterator[Event]:
        self.prompts.append(prompt)
        start = time.perf_counter()
        time.sleep(self.prefill_s)
        prefill_ms = (time.perf_counter() - start) * 1000
        first_ms = 0.0
        text = self.texts[min(len(self.prompts), len(self.texts)) - 1]
        for i, word in enumerate(text.split(" ")):
            if i:
                time.sleep(self.step_s)
            else:
                first_ms = (time.perf_counter() - start) * 1000
            yield Token(word + " ", index=0)
        yield Done(
            texts=[text],
            model="timed",
            prefill_ms=prefill_ms,
            first_token_ms=first_ms,
            total_ms=(time.perf_counter() - start) * 1000,
        )


def _done(runner: ScriptedRunner, paths: object, mode: str, text: str) -> Done:
    request = TaskRequest(task="suggest", text=text, context={"shell": "bash", "os": "Linux"})
    events = list(run_suggest(request, runner, settings=Settings(), paths=paths, mode=mode))  # type: ignore[arg-type]
    assert isinstance(events[-1], Done)
    return events[-1]


def _check_contract(done: Done) -> dict[str, float]:
    stages = done.extra["stages_ms"]
    assert stages, "no stage timings"
    assert all(isinstance(v, float) and v >= 0 for v in stages.values()), stages
    assert sum(stages.values()) <= done.total_ms + 1e-6, (stages, done.total_ms)
    assert set(stages) <= set(STAGES)
    return stages


def test_zero_shot_stages_split_the_model_call(tmp_path: Path) -> None:
    runner = TimedRunner(["ls -la here now"], prefill_s=0.05, step_s=0.02)
    done = _done(runner, tmp_path, "zero-shot", "list files")
    stages = _check_contract(done)
    assert list(stages)[:5] == ["retrieval", "prompt", "prefill", "decode", "engine_other"]
    # the runner slept 50 ms in prefill and 3 x 20 ms between tokens
    assert 45 <= stages["prefill"] <= 1000
    assert 55 <= stages["decode"] <= 1000
    assert "checks" not in stages  # zero-shot runs no checks


def test_full_mode_times_checks_and_the_rewrite(world: Path) -> None:  # noqa: F811
    # the retrieved "frob -a ." wins, so the model is asked again (the adapt stage)
    runner = CallScriptedRunner(["nosuchprog_zz -a", " -a ~/notes"])
    done = _done(runner, world, "full", "frobnicate the hidden files in notes")
    stages = _check_contract(done)
    assert {"retrieval", "prompt", "candidates", "checks", "rank", "adapt"} <= set(stages)
    # a runner without timings leaves the whole model call in engine_other
    assert stages["prefill"] == 0 and stages["decode"] == 0


def test_clock_clamps_runner_figures_to_the_wall_time() -> None:
    clock = StageClock()
    # a runner claiming more time than passed (clock skew, a cached answer) cannot make the
    # stages add up to more than the wall time
    clock.lap_generation(Done(texts=[], prefill_ms=5e6, first_token_ms=5e6, total_ms=9e6))
    stages = clock.rounded()
    assert stages["prefill"] < 1000 and stages["decode"] == 0 and stages["engine_other"] == 0
    clock.lap_generation(None)
    clock.lap("checks")
    clock.lap("checks")
    assert list(clock.rounded()) == ["prefill", "decode", "engine_other", "checks"]


@pytest.mark.parametrize("value", [0.04, 1.26, 999.99])
def test_rounding_never_grows_a_stage(value: float) -> None:
    clock = StageClock()
    clock.ms["decode"] = value
    assert clock.rounded()["decode"] <= value


def test_time_queued_for_a_busy_model_is_left_out_of_the_laps() -> None:
    waited = [0.0]
    clock = StageClock(waited=lambda: waited[0])
    time.sleep(0.03)
    waited[0] = 25.0  # 25 of those ~30 ms were spent queued (as the pool would count them)
    assert clock.lap("prefill") <= 30.0 - 25.0 + 20.0  # the rest, plus scheduling slack
    waited[0] = 1000.0  # more reported waiting than elapsed: clamped at 0, never negative
    assert clock.lap("decode") == 0.0
