"""chrF of `shellfish translate` on newstest2014 en-de / en-fr (the first N lines of each).

Not a test: it runs the real default model in this process (no daemon), greedy, and scores
the answers with corpus-level chrF as sacrebleu computes it by default (character n-grams of
order 1-6, beta 2, whitespace removed, precision and recall averaged over the orders that
have n-grams, then the F-score). It also counts echoes: answers that repeat the English source.

    SHELLFISH_HOME=... python benchmarks/translation_chrf.py [--data DIR] [--limit 100]
        [--pairs en-de en-fr] [--out answers.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "eval" / "translation"
CHAR_ORDER = 6
BETA = 2.0


def _ngrams(text: str, n: int) -> Counter[str]:
    chars = "".join(text.split())  # sacrebleu's chrF ignores whitespace
    return Counter(chars[i : i + n] for i in range(len(chars) - n + 1))


def chrf_statistics(hypothesis: str, reference: str) -> list[int]:
    """Per order: (hypothesis n-grams, reference n-grams, matches), flattened."""
    stats = []
    for n in range(1, CHAR_ORDER + 1):
        hyp, ref = _ngrams(hypothesis, n), _ngrams(reference, n)
        stats += [sum(hyp.values()), sum(ref.values()), sum((hyp & ref).values())]
    return stats


def chrf_from_statistics(stats: list[int]) -> float:
    """sacrebleu's default chrF (no eps smoothing) from summed statistics, 0-100."""
    factor = BETA**2
    precision = recall = 0.0
    effective = 0
    for n in range(CHAR_ORDER):
        n_hyp, n_ref, n_match = stats[3 * n : 3 * n + 3]
        if n_hyp > 0 and n_ref > 0:
            precision += n_match / n_hyp
            recall += n_match / n_ref
            effective += 1
    if effective == 0:
        return 0.0
    precision, recall = precision / effective, recall / effective
    if precision + recall == 0:
        return 0.0
    return 100 * (1 + factor) * precision * recall / (factor * precision + recall)


def corpus_chrf(hypotheses: list[str], references: list[str]) -> float:
    total = [0] * (3 * CHAR_ORDER)
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        for i, value in enumerate(chrf_statistics(hypothesis, reference)):
            total[i] += value
    return chrf_from_statistics(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--pairs", nargs="+", default=["en-de", "en-fr"])
    parser.add_argument("--model", default=None, help="default: routed by task")
    parser.add_argument("--out", type=Path, help="write every answer here (JSON lines)")
    args = parser.parse_args()

    from shellfish.client.local import get_pool
    from shellfish.environment import Environment
    from shellfish.events import Done
    from shellfish.request import TaskRequest
    from shellfish.tasks import run_task

    environ = {**os.environ, "SHELLFISH_HISTORY_ENABLED": "false"}
    env = Environment(environ=environ)
    pool = get_pool(env)
    out = args.out.open("w", encoding="utf-8") if args.out else None
    print(f"load average at start: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    for pair in args.pairs:
        source, target = pair.split("-")
        stem = f"newstest2014-{pair}.200"
        sources = (args.data / f"{stem}.{source}").read_text("utf-8").splitlines()
        references = (args.data / f"{stem}.{target}").read_text("utf-8").splitlines()
        sources, references = sources[: args.limit], references[: args.limit]
        hypotheses: list[str] = []
        echoes = retries = 0
        start = time.perf_counter()
        for i, text in enumerate(sources):
            request = TaskRequest(
                task="translate",
                text=text,
                model=args.model,
                generation={"temperature": 0.0},
                options={"from": source, "to": target},
            )
            done = None
            for event in run_task(request, pool, env.settings, env.paths):
                if isinstance(event, Done):
                    done = event
            answer = done.text.strip() if done else ""
            hypotheses.append(answer)
            echo = answer.strip().lower() == text.strip().lower()
            echoes += echo
            retried = bool(done and done.extra.get("retried"))
            retries += retried
            if out:
                row = {"pair": pair, "i": i, "source": text, "answer": answer, "retried": retried}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
            if (i + 1) % 10 == 0:
                print(f"{pair}: {i + 1}/{len(sources)}", file=sys.stderr)
        elapsed = time.perf_counter() - start
        score = corpus_chrf(hypotheses, references)
        print(
            f"{pair} n={len(sources)} chrF={score:.1f} echoes={echoes} retried={retries} "
            f"({elapsed:.0f} s)"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
