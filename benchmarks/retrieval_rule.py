"""Offline comparison of rules for when a retrieved command may beat the model's own answer.

    python benchmarks/retrieval_rule.py EVAL.jsonl [--tune 101-400]

EVAL.jsonl is a `shellfish eval --config full --output` file made *without* the rule (every
candidate is in it: the model's answer with its certainty, the retrieved commands with the
similarity of their requests to this one, and the validation problems). For each rule the
first command is recomputed: when a retrieved command won the vote and the rule finds no
evidence for it, the model's clean answer takes its place. Scores are the strict NLC2CMD
(`shellfish.eval.metric`) on the tuning pairs and on the rest (the check), with exact matches,
how many answers are verbatim retrieved commands, and how many answers the rule changed.

The model's answer does not depend on the rule, so this is exact for a rule that only ever
puts the model's answer back; a real run also skips the rewrite (`_adapt`) of such requests.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def _penalty(problems: list[str]) -> float:
    from shellfish.suggest.ranking import problem_penalty

    return problem_penalty(problems)


def rows(path: Path) -> list[Row]:
    """One row per request: the chosen command, the model's first answer and the evidence."""
    from shellfish.suggest.ranking import vote_group

    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        item = json.loads(line)
        cands = item["candidates"]
        if not cands:
            continue
        models = [c for c in cands if c["source"] == "model"]
        retrieved = [c for c in cands if c["source"] == "retrieved"]
        model = models[0] if models else None
        if len(models) == 2:  # a rewrite was added: it shares the best retrieved group
            best = max(retrieved, key=lambda c: c["score"]) if retrieved else None
            others = [
                m
                for m in models
                if best is None or vote_group(m["command"]) != vote_group(best["command"])
            ]
            model = others[0] if len(others) == 1 else models[0]
        first = cands[0]
        won = first["source"] == "retrieved" or (
            model is not None and first["command"] != model["command"]
        )
        group = vote_group(first["command"])
        agree = [c for c in retrieved if vote_group(c["command"]) == group]
        out.append(
            {
                "pair": i,
                "reference": item["reference"],
                "first": first["command"],
                "model": model["command"] if model else None,
                "model_clean": bool(model) and not model["problems"] and not model["danger"],
                "model_penalty": _penalty(model["problems"]) if model else 9.0,
                "certainty": model["certainty"] if model else None,
                "won": won,
                "similarity": max((c["similarity"] for c in agree), default=0.0),
                "agreeing": len(agree),
                "verbatim": first["source"] == "retrieved",
            }
        )
    return out


def score(
    data: list[Row], keep_retrieved: Callable[[Row], bool], pairs: Callable[[int], bool]
) -> Row:
    from shellfish.eval.metric import exact_match, nlc2cmd_score

    total = exact = verbatim = changed = n = 0.0
    for r in data:
        if not pairs(r["pair"]):
            continue
        n += 1
        command = r["first"]
        if r["won"] and r["model"] is not None and not keep_retrieved(r):
            command = r["model"]
            changed += 1
        elif r["verbatim"]:
            verbatim += 1
        total += nlc2cmd_score(command, r["reference"])
        exact += exact_match(command, r["reference"])
    return {
        "n": int(n),
        "nlc2cmd": round(total / max(1, n), 4),
        "exact": int(exact),
        "verbatim": int(verbatim),
        "changed": int(changed),
    }


def rules() -> dict[str, Callable[[Row], bool]]:
    """name -> does the retrieved winner keep its place?"""
    out: dict[str, Callable[[Row], bool]] = {
        "vote only (no rule)": lambda r: True,
        "model always": lambda r: False,
    }
    for t in (0.3, 0.4, 0.5, 0.6):
        out[f"similarity >= {t}"] = lambda r, t=t: r["similarity"] >= t
        out[f"similarity >= {t} or model answer not clean"] = lambda r, t=t: (
            r["similarity"] >= t or not r["model_clean"]
        )
    for c in (0.7, 0.8, 0.9):
        out[f"model certainty < {c}"] = lambda r, c=c: r["certainty"] is None or r["certainty"] < c
    for k in (2, 3):
        out[f">= {k} neighbours agree"] = lambda r, k=k: r["agreeing"] >= k
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("eval_output", type=Path)
    parser.add_argument("--tune", default="101-400", help="pairs the rule is chosen on (1-based)")
    args = parser.parse_args(argv)
    lo, hi = (int(x) for x in args.tune.split("-"))
    data = rows(args.eval_output)
    print(f"{'rule':48s} {'tune ' + args.tune:>34s} {'check (the other pairs)':>34s}")
    for name, rule in rules().items():
        t = score(data, rule, lambda i: lo <= i <= hi)
        c = score(data, rule, lambda i: not lo <= i <= hi)
        print(
            f"{name:48s} {t['nlc2cmd']:+.4f} ex {t['exact']:3d} verb {t['verbatim']:3d} "
            f"chg {t['changed']:3d}   {c['nlc2cmd']:+.4f} ex {c['exact']:3d} "
            f"verb {c['verbatim']:3d} chg {c['changed']:3d} (n {t['n']}/{c['n']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
