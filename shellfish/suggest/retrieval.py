"""Retrieval: what the local knowledge index knows about a request.

The index (tldr pages, the user's redacted history, a configured NL->command pairs file, local
`--help` / man pages) is loaded once per process and reloaded when rebuilt. One search gives
the prompt's examples and option lines and the neighbours that join the vote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shellfish.suggest.candidates import Candidate
from shellfish.suggest.ranking import request_similarity

if TYPE_CHECKING:
    from shellfish.knowledge.index import Hit, KnowledgeIndex
    from shellfish.paths import Paths
    from shellfish.request import TaskRequest

NO_INDEX = "no knowledge index - run `shellfish knowledge build` for better suggestions"


@dataclass
class Retrieved:
    """What one search found; empty when there is no index (zero-shot, or none built)."""

    index: KnowledgeIndex | None = None
    hits: list[Hit] = field(default_factory=list)
    examples: list[tuple[str, str]] = field(default_factory=list)  # (request, command)
    option_lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # why retrieval could not help


def retrieve(
    request: TaskRequest, paths: Paths, *, examples: int, option_lines: int, hits: int
) -> Retrieved:
    """Search the index for `request`: up to `hits` hits, the prompt's examples and options."""
    from shellfish.errors import ShellfishError

    found = Retrieved()
    try:
        found.index = load_index(paths)
    except ShellfishError as exc:  # a broken index must not break suggestions
        found.warnings.append(f"knowledge index unusable: {exc}")
    if found.index is None:
        found.warnings.append(NO_INDEX)
        return found
    try:
        found.hits = found.index.search(request.text, k=hits)
        if option_lines:
            docs = [h.doc for h in found.hits]
            found.option_lines = found.index.option_lines(request.text, docs, option_lines)
    except ShellfishError as exc:  # a line of the index broken since it was built
        found.warnings.append(f"knowledge index unusable: {exc}")
        found.hits, found.option_lines = [], []
        return found
    found.examples = [(h.doc.text, h.doc.command) for h in found.hits if h.doc.command]
    found.examples = found.examples[:examples]
    found.examples.reverse()  # nearest example last, right before the request
    return found


def neighbour_candidates(hits: list[Hit], request: TaskRequest, limit: int) -> list[Candidate]:
    """The nearest retrieved commands (pairs, history) as candidates with a vote each.

    A neighbour votes by its BM25 score relative to the best one, squared, over 1 + its rank.
    """
    neighbours = [h for h in hits if h.doc.command and h.doc.kind in ("pair", "history")]
    top = max((h.score for h in neighbours), default=0.0) or 1.0
    return [
        Candidate(
            command=h.doc.command,
            source="retrieved",
            rank=i,
            similarity=request_similarity(request.text, h.doc.text),
            weight=(h.score / top) ** 2 / (1 + i),
        )
        for i, h in enumerate(neighbours[:limit])
    ]


_INDEX_CACHE: dict[str, tuple[float, KnowledgeIndex | None]] = {}


def load_index(paths: Paths) -> KnowledgeIndex | None:
    """The knowledge index under paths.knowledge (cached per process, reloaded when rebuilt)."""
    from shellfish.knowledge.index import KnowledgeIndex, index_mtime

    root = paths.knowledge
    stamp = index_mtime(root)
    key = str(root)
    cached = _INDEX_CACHE.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    index = KnowledgeIndex.load(root) if stamp else None
    _INDEX_CACHE[key] = (stamp, index)
    return index
