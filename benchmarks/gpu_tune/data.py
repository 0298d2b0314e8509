"""Training data of the GPU tuning runs (docs/quality.md, "Tuning on a lent GPU").

    python benchmarks/gpu_tune/data.py DIR

writes DIR/mix.jsonl (every shipped pair rendered as `shellfish tune` renders it: the NL2Bash
train pairs twice - with their 3 nearest other pairs as examples, then with the 4th-6th
nearest - and the tldr examples once) and DIR/nl2bash.jsonl (the NL2Bash pairs once), in the
worker's prompt / completion format. Never the dev split.
"""

from __future__ import annotations

import sys
from pathlib import Path

from shellfish.engine.templates import render_chat
from shellfish.suggest.prompts import ANSWER_PREFIX
from shellfish.tune.data import Collected, read_shipped, render_examples, write_jsonl

EXAMPLES = 3


def main(out: Path) -> None:
    collected = Collected()
    read_shipped(collected)
    counts = collected.counts()
    if not counts.get("nl2bash") or not counts.get("tldr"):
        sys.exit("the shipped NL2Bash pairs and tldr pages are missing from this checkout")
    print(counts, "skipped", collected.skipped)

    def render(messages: list[dict[str, str]]) -> str:
        return render_chat("chatml", messages) + ANSWER_PREFIX

    first = render_examples(collected.pairs, render, EXAMPLES)
    second = render_examples(collected.pairs, render, EXAMPLES, skip=EXAMPLES)
    is_pair = [p.source == "nl2bash" for p in collected.pairs]
    nl2bash = [r for r, keep in zip(first, is_pair, strict=True) if keep]
    again = [r for r, keep in zip(second, is_pair, strict=True) if keep]
    other = [r for r, keep in zip(first, is_pair, strict=True) if not keep]
    for name, records in (("mix.jsonl", nl2bash + again + other), ("nl2bash.jsonl", nl2bash)):
        print(name, len(records), write_jsonl(records, out / name))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
