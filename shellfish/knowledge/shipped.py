"""The knowledge sources shipped inside the package (see shellfish/data/knowledge/README.md).

The NL2Bash *train* pairs (MIT) and the tldr pages (CC BY 4.0) are package data, so the index
that `shellfish setup` builds holds request -> command examples before the user adds anything.
A tldr archive the user pulled (`shellfish knowledge pull tldr`) takes the place of the shipped
one; pairs the user names (`knowledge build --pairs`) come in addition to the shipped pairs.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "knowledge"
PAIRS = (DATA / "nl2bash-train.nl", DATA / "nl2bash-train.cm")
TLDR = DATA / "tldr-pages.zip"


def shipped_pairs() -> tuple[Path, Path] | None:
    """The shipped request / command files, or None when the package was built without them."""
    return PAIRS if all(p.is_file() for p in PAIRS) else None


def shipped_tldr() -> Path | None:
    """The shipped tldr archive, or None when the package was built without it."""
    return TLDR if TLDR.is_file() else None
