"""Ranking: a vote over the programs of the candidates, penalties, and a confidence.

Every candidate votes for its sequence of programs (``find | xargs chmod`` -> find, xargs,
chmod) with its `weight`. Measured on NL2Bash dev (docs/quality.md), the vote beats both the
model alone and the nearest neighbour alone: a 0.5B model and BM25 are wrong in different
places.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shellfish.shell.syntax import programs

if TYPE_CHECKING:
    from shellfish.suggest.candidates import Candidate

# Below this confidence the answer carries a warning ("check it before running it"): on NL2Bash
# dev, answers under 0.7 scored below zero on average, answers from 0.8 up clearly above.
LOW_CONFIDENCE = 0.7
# A retrieved command carries another request's arguments (and often another request's
# intent): it may beat the model's own clean answer only when a retrieved command of its group
# was asked in words this similar to this request (`request_similarity`). Chosen on NL2Bash dev
# pairs 101-400 and checked on the rest (docs/quality.md, "When retrieval may win").
MIN_RETRIEVED_SIMILARITY = 0.5


def vote_group(command: str) -> tuple[str, ...]:
    """The programs of `command` in order (``find | xargs chmod`` -> find, xargs, chmod).

    As `shellfish.shell.syntax.programs` reads them: basenames, nested commands included,
    wrappers (``sudo``, ``timeout 5``) and compound-command headers (``for x in``) not.
    """
    return programs(command)


def rank_candidates(candidates: list[Candidate], *, retrieved_may_win: bool = True) -> None:
    """Score and sort in place by a vote over programs, then fill in each `confidence`.

    A candidate votes for its `vote_group` with its `weight`: the model's answer 1, a retrieved
    command by its BM25 score relative to the best hit (squared) over 1 + its rank. Its score is
    the share of the vote its programs got, minus its validation penalty; within one group the
    model's answer comes first (it carries this request's own arguments), then retrieved
    commands by rank. A retrieved winner without evidence gives way to the model's clean answer
    (`MIN_RETRIEVED_SIMILARITY`); with `retrieved_may_win` False (a model tuned on the retrieved
    pairs, whose own answer measured better) it always does.
    """
    groups = [vote_group(c.command) for c in candidates]
    votes: dict[tuple[str, ...], float] = {}
    certainty: dict[tuple[str, ...], float] = {}  # of the group's first model answer
    for c, group in zip(candidates, groups, strict=True):
        votes[group] = votes.get(group, 0.0) + c.weight
        if c.source == "model" and c.certainty is not None:
            certainty.setdefault(group, c.certainty)
    total = sum(votes.values()) or 1.0
    for c, group in zip(candidates, groups, strict=True):
        share = votes[group] / total
        penalty = problem_penalty(c.problems)
        # Within a group a fix's mechanical correction leads: it keeps the user's own words.
        bonus = {"model": 0.01, "rewrite": 0.02}.get(c.source, 0.0)
        c.score = share + bonus - 0.001 * c.rank - penalty
        c.score -= 0.05 * len(c.warnings)
        cert = certainty.get(group)
        confidence = share if cert is None else (share + cert) / 2
        c.confidence = max(0.0, min(1.0, confidence * (0.5 if penalty else 1.0)))
    group_of = {c.command: g for c, g in zip(candidates, groups, strict=True)}
    candidates.sort(key=lambda c: -c.score)
    _keep_model_without_evidence(
        candidates, group_of, MIN_RETRIEVED_SIMILARITY if retrieved_may_win else float("inf")
    )


def _keep_model_without_evidence(
    candidates: list[Candidate], groups: dict[str, tuple[str, ...]], needed: float
) -> None:
    """Put the model's clean answer first when a retrieved group won without evidence.

    Evidence: some retrieved command of the winning group has a request at least
    `MIN_RETRIEVED_SIMILARITY` similar to this one. The model's answer must be clean (no
    problems, no danger) to take the place; otherwise the vote stands.
    """
    if not candidates or candidates[0].source != "retrieved":
        return
    won = groups[candidates[0].command]
    evidence = max(
        (c.similarity for c in candidates if c.source == "retrieved" and groups[c.command] == won),
        default=0.0,
    )
    if evidence >= needed:
        return
    model = next(
        (c for c in candidates if c.source == "model" and not c.problems and not c.danger), None
    )
    if model is None:
        return
    model.score = candidates[0].score + 0.001
    candidates.remove(model)
    candidates.insert(0, model)


def rank_by_position(candidates: list[Candidate]) -> None:
    """Without a vote (zero-shot and retrieval modes): the model's order, its own certainty."""
    for c in candidates:
        c.score = 1.0 / (1 + c.rank)
        c.confidence = c.certainty if c.certainty is not None else 1.0


def problem_penalty(problems: list[str]) -> float:
    """How much the validation problems of a candidate count against it (vote shares are 0..1).

    A line that does not parse is wrong for everyone. A program missing here is weaker evidence
    (the user may install it), an undocumented flag weaker still (local docs are often
    incomplete): such a candidate loses to a clean one of similar support, not to a lone one.
    """
    penalty = 0.0
    for problem in problems:
        if "does not parse" in problem or "empty" in problem:
            penalty += 2.0
        elif "command not found" in problem:
            penalty += 0.3
        else:
            penalty += 0.05
    return min(penalty, 3.0)


def request_similarity(request: str, example: str) -> float:
    """Jaccard overlap of the (stemmed, stop-word free) words of two requests."""
    from shellfish.knowledge.bm25 import tokenize

    a, b = set(tokenize(request)), set(tokenize(example))
    return len(a & b) / len(a | b) if a and b else 0.0


def low_confidence_warning(best: Candidate) -> str | None:
    """The warning a low-confidence best answer carries (None when confident enough)."""
    if best.confidence < LOW_CONFIDENCE:
        return f"low confidence ({best.confidence:.2f}): check it before running it"
    return None
