"""Compare two `shellfish eval --output` files request by request, and say why answers differ.

    python benchmarks/compare_predictions.py BEFORE.jsonl AFTER.jsonl [--old-code DIR] [--json]

Lists the requests whose first prediction differs and classifies each by what differs in its
candidates (a request can have several causes; the first that applies is its main cause):

- ``retrieval``: the retrieved candidates are not the same commands (index or search changed);
- ``model``: the model's own answer differs (prompt or decoding changed);
- ``vote groups``: a candidate's programs, as the vote groups them, changed. Needs
  ``--old-code``, a checkout of the code that wrote BEFORE: its ranking grouped candidates by
  ``shellfish.eval.metric.command_structure`` (``tasks/suggest.py:_programs``), the current
  code groups by ``shellfish.suggest.ranking.vote_group`` (the parser). Sub-causes: a
  wrapper (``sudo``, ``timeout``...) no longer votes, ``find``'s ``\\(`` no longer counts, a
  nested command (``-exec``, ``xargs``, ``$(...)``, ``<(...)``) now votes, other;
- ``validation``: the same command got different problems (e.g. flags of nested commands are
  now checked against their own program's documentation);
- ``danger check``: the same command got different dangers (each costs 0.05 of its score);
- ``none found``: the candidates, their problems and groups are the same: the rewrite of a
  retrieved winner (`_adapt`) or a tie broken differently.

Scores in the two files may come from different metrics; this compares predictions only and
rescores both with the current `shellfish.eval.metric.nlc2cmd_score`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_OLD_GROUPS = """
import json, sys
from shellfish.eval.metric import command_structure
commands = json.load(sys.stdin)
json.dump({c: [u for u, _f in command_structure(c)] for c in commands}, sys.stdout)
"""


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def old_groups(commands: set[str], old_code: Path) -> dict[str, tuple[str, ...]]:
    """The vote group of each command as the code in `old_code` computed it (a subprocess, so
    the two versions of `shellfish` never share an interpreter)."""
    env = {**os.environ, "PYTHONPATH": str(old_code)}
    proc = subprocess.run(
        [sys.executable, "-c", _OLD_GROUPS],
        input=json.dumps(sorted(commands)),
        capture_output=True,
        text=True,
        env=env,
        cwd=old_code,
        check=True,
    )
    return {c: tuple(g) for c, g in json.loads(proc.stdout).items()}


def _group_cause(command: str, old: tuple[str, ...], new: tuple[str, ...]) -> str:
    from shellfish.shell.syntax import WRAPPERS

    if any(p in WRAPPERS for p in old) and not any(p in WRAPPERS for p in new):
        return "a wrapper no longer votes"
    if "\\(" in command or any(p.startswith(("-", "\\(", "(")) for p in old):
        return "find's \\( no longer counts"
    if len(new) > len(old) or any(m in command for m in ("-exec", "<(", "$(", "`")):
        return "a nested command now votes"
    return "other grouping change"


def classify(
    before: dict[str, Any], after: dict[str, Any], groups: dict[str, tuple[str, ...]] | None
) -> list[str]:
    """The causes present in one request whose first prediction differs (main cause first)."""
    from shellfish.suggest.ranking import vote_group

    cb, ca = before["candidates"], after["candidates"]
    causes = []
    if {c["command"] for c in cb if c["source"] == "retrieved"} != {
        c["command"] for c in ca if c["source"] == "retrieved"
    }:
        causes.append("retrieval")
    # the model's first answer is the first model candidate that is not a rewrite; a rewrite
    # only exists when a retrieved command won, so compare the sets of model answers
    if not {c["command"] for c in cb if c["source"] == "model"} & {
        c["command"] for c in ca if c["source"] == "model"
    }:
        causes.append("model")
    if groups is not None:
        for c in {c["command"] for c in cb + ca}:
            old, new = groups[c], vote_group(c)
            if old != new:
                causes.append("vote groups: " + _group_cause(c, old, new))
    before_by_command = {c["command"]: c for c in cb}
    for key, cause in (("problems", "validation"), ("danger", "danger check")):
        for c in ca:
            old_c = before_by_command.get(c["command"])
            if old_c is not None and old_c.get(key) != c.get(key):
                causes.append(cause)
                break
    return list(dict.fromkeys(causes)) or ["none found"]


def main(argv: list[str] | None = None) -> int:
    from shellfish.eval.metric import nlc2cmd_score

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--old-code", type=Path, help="checkout of the code that wrote BEFORE")
    parser.add_argument("--json", action="store_true", help="one JSON object per difference")
    args = parser.parse_args(argv)
    before, after = load(args.before), load(args.after)
    n = min(len(before), len(after))
    for b, a in zip(before[:n], after[:n], strict=True):
        if b["request"] != a["request"]:
            parser.error(f"the files are not aligned: {b['request']!r} vs {a['request']!r}")
    groups = None
    if args.old_code:
        commands = {c["command"] for item in before[:n] + after[:n] for c in item["candidates"]}
        groups = old_groups(commands, args.old_code)
    main_causes: Counter[str] = Counter()
    any_causes: Counter[str] = Counter()
    delta = 0.0
    for i, (b, a) in enumerate(zip(before[:n], after[:n], strict=True), start=1):
        if b["prediction"] == a["prediction"]:
            continue
        causes = classify(b, a, groups)
        main_causes[causes[0]] += 1
        any_causes.update(causes)
        sb = nlc2cmd_score(b["prediction"], b["reference"])
        sa = nlc2cmd_score(a["prediction"], a["reference"])
        delta += sa - sb
        row = {
            "pair": i,
            "request": a["request"],
            "reference": a["reference"],
            "before": b["prediction"],
            "after": a["prediction"],
            "score_before": round(sb, 3),
            "score_after": round(sa, 3),
            "causes": causes,
        }
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(f"#{i} {a['request']}\n  before {b['prediction']!r} ({sb:+.2f})")
            print(f"  after  {a['prediction']!r} ({sa:+.2f})  [{'; '.join(causes)}]")
    differ = sum(main_causes.values())
    summary = {
        "pairs": n,
        "first_prediction_differs": differ,
        "main_cause": dict(main_causes.most_common()),
        "cause_present": dict(any_causes.most_common()),
        "score_change_sum": round(delta, 3),
        "score_change_mean_over_all_pairs": round(delta / max(1, n), 4),
    }
    print(json.dumps(summary, indent=None if args.json else 2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
