"""Re-run `shellfish eval` over recorded model answers: the pipeline is live, the model replays.

    SHELLFISH_HOME=... python benchmarks/replay_eval.py RECORDED.jsonl --output NEW.jsonl
        [--nl dev.nl --cm dev.cm] [--config full] [--limit N]

On this project's shared 2-core machine one real `shellfish eval` of the 609 dev pairs takes
one to two hours under load; most of it is the model's first answer, which does not depend on
retrieval, validation or ranking. This tool drives the real `shellfish.eval.run.evaluate` and
`run_suggest` (retrieval, checks, ranking, the rewrite of a retrieved winner) with a runner
that answers each request's *first* generation from RECORDED (an earlier `--output` file of
the same model, config and prompt) and sends every other generation (the `_adapt` rewrite, a
request whose recorded answers are ambiguous or missing) to the real model.

Contract, checked where possible: the prompt of the first generation must be the one RECORDED
was made with (same model, index, prompt code, no cwd in the context). Greedy decoding makes
the model's answer a function of the prompt, so the result equals a real run's, timings
excepted (they are not measured here: report timings from real runs only). The summary says
how many generations were replayed and how many ran on the model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_USER_TURN = "<|im_start|>user\n"
_END = "<|im_end|>"


class ReplayRunner:
    """A `Runner` that replays recorded first answers and delegates the rest to `real()`."""

    def __init__(
        self, recorded: dict[str, list[tuple[str, float | None] | None]], real: Any
    ) -> None:
        self._recorded = {k: list(v) for k, v in recorded.items()}
        self._real_factory = real
        self._real: Any = None
        self.replayed = 0
        self.generated = 0
        self._last: str | None = None  # the prompt of the last first generation

    @property
    def real(self) -> Any:
        if self._real is None:
            self._real = self._real_factory()
        return self._real

    @property
    def info(self) -> Any:
        return self.real.info

    @property
    def tokenizer(self) -> Any:  # render_prompt reads the chat template from it
        return getattr(self.real, "tokenizer", None)

    def generate(
        self, prompt: str, config: Any, *, cancel: threading.Event | None = None
    ) -> Iterator[Any]:
        from shellfish.events import Done
        from shellfish.suggest.prompts import ANSWER_PREFIX

        # a first generation ends with the answer prefix; a rewrite (`_adapt`) extends the
        # prompt of the first generation just before it
        rewrite = self._last is not None and prompt.startswith(self._last) and prompt != self._last
        answers = self._recorded.get(_last_user_turn(prompt)) if not rewrite else None
        answer = answers.pop(0) if answers else None
        if not rewrite:
            self._last = prompt
        if answer is not None and config.n == 1 and prompt.endswith(ANSWER_PREFIX):
            self.replayed += 1
            text, certainty = answer
            logprobs = [math.log(certainty)] if certainty else []
            yield Done(texts=[text], model="replay", extra={"mean_logprobs": logprobs})
            return
        self.generated += 1
        yield from self.real.generate(prompt, config, cancel=cancel)

    def count_tokens(self, text: str) -> int:
        return int(self.real.count_tokens(text))

    def close(self) -> None:
        if self._real is not None:
            self._real.close()


def _last_user_turn(prompt: str) -> str:
    start = prompt.rfind(_USER_TURN)
    if start < 0:
        return ""
    body = prompt[start + len(_USER_TURN) :]
    return body.split(_END, 1)[0]


def recorded_answers(path: Path) -> dict[str, list[tuple[str, float | None] | None]]:
    """request -> [(the model's first answer, its certainty)], one per occurrence in order.

    None for an occurrence whose answer is not known: two model candidates mean a rewrite was
    added, and which one came first is not recorded. A request that occurs twice gets two
    entries: the second run of the same prompt may decode differently (the prefix cache then
    holds the whole prompt).
    """
    out: dict[str, list[tuple[str, float | None] | None]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        models = [c for c in item["candidates"] if c["source"] == "model"]
        answer: tuple[str, float | None] | None = None
        if len(models) == 1:
            answer = (models[0]["command"], models[0]["certainty"])
        elif not models and not item["candidates"]:
            answer = ("", None)
        out.setdefault(item["request"], []).append(answer)
    return out


def main(argv: list[str] | None = None) -> int:
    from shellfish.environment import Environment
    from shellfish.eval.run import Report, evaluate, load_pairs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recorded", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--nl", type=Path, default=Path("../shared/eval/nl2bash/dev.nl"))
    parser.add_argument("--cm", type=Path)
    parser.add_argument("--config", default="full")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    env = Environment.from_process()
    pairs = load_pairs(args.nl, args.cm or args.nl.with_suffix(".cm"), args.limit)

    def real() -> Any:
        from shellfish.request import TaskRequest
        from shellfish.store.pool import ModelPool
        from shellfish.tasks import resolve_model_name

        name = resolve_model_name(TaskRequest(task="suggest", text="-"), env.settings, env.paths)
        return ModelPool(env.paths, env.settings).get(name)

    runner = ReplayRunner(recorded_answers(args.recorded), real)
    report = Report(config=args.config, model="replay")
    with args.output.open("w", encoding="utf-8") as out:
        for item in evaluate(
            pairs,
            runner,
            settings=env.settings,
            paths=env.paths,
            config=args.config,
            context={"shell": "bash"},
        ):
            report.items.append(item)
            out.write(json.dumps(item.__dict__, ensure_ascii=False) + "\n")
    runner.close()
    summary = report.summary()
    for key in ("median_s", "p90_s"):
        summary.pop(key)  # not measured: the model's first answers were replayed
    summary.update(replayed=runner.replayed, generated=runner.generated)
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
