"""Offline: would a retrieved command beat the tuned model's answer when their requests match?

    python benchmarks/retrieved_switch.py EVAL.jsonl [--split 304]

The opposite question to `retrieval_rule.py`. EVAL.jsonl is a `shellfish eval --config full
--output` file of a model whose descriptor says `retrieved_may_win = false` (the tuned
default): its first command is nearly always the model's own answer. For each rule "take the
retrieved command whose request is most similar when that similarity is >= S and the model's
certainty is < C", the first command is recomputed and scored with the strict NLC2CMD
(`shellfish.eval.metric`), on the pairs before `--split` and on the rest separately, so a rule
chosen on one half is checked on the other. Exact for the switch itself; a real run would also
skip the rewrite (`_adapt`) of such requests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shellfish.eval.metric import nlc2cmd_score  # noqa: E402

SIMILARITIES = (0.6, 0.7, 0.8, 0.9)
CERTAINTIES = (0.5, 0.7, 0.9, 1.01)  # 1.01: whatever the model's certainty


def item(row: dict[str, Any]) -> dict[str, Any]:
    candidates = row["candidates"]
    model = next((c for c in candidates if c["source"] == "model"), None)
    retrieved = [c for c in candidates if c["source"] == "retrieved"]
    top = max(retrieved, key=lambda c: c.get("similarity") or 0.0) if retrieved else None
    return {
        "first": row["score"],
        "certainty": (model or {}).get("certainty") or 0.0,
        "similarity": (top or {}).get("similarity"),
        "retrieved": nlc2cmd_score(top["command"], row["reference"]) if top else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_jsonl", type=Path)
    parser.add_argument("--split", type=int, default=304)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.eval_jsonl.read_text().splitlines() if line]
    items = [item(row) for row in rows]
    halves = {
        f"pairs 0-{args.split - 1}": items[: args.split],
        f"pairs {args.split}-{len(items) - 1}": items[args.split :],
    }
    for name, part in halves.items():
        print(f"{name}: as run {statistics.mean(i['first'] for i in part):+.3f}")
        for s in SIMILARITIES:
            for c in CERTAINTIES:

                def switch(i: dict[str, Any], s: float = s, c: float = c) -> bool:
                    return (
                        i["similarity"] is not None and i["similarity"] >= s and i["certainty"] < c
                    )

                scores = [i["retrieved"] if switch(i) else i["first"] for i in part]
                n = sum(switch(i) for i in part)
                print(
                    f"  similarity >= {s}, certainty < {c}: "
                    f"{statistics.mean(scores):+.3f} ({n} switched)"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
