"""The local knowledge index: build it, refresh it incrementally, load it, search it.

Layout under ``paths.knowledge``::

    programs.json     one ProgramRecord per program on PATH (options from man / --help)
    examples.jsonl    retrieval documents: tldr examples, history commands, request/command pairs
    examples.{npz,json}  BM25 arrays over the examples
    options.jsonl     one line per documented option: [program, "-r, --recursive  descend ..."]
    options.{npz,json}   BM25 arrays over the option lines
    meta.json         written last: sources, counts, build time (its mtime stamps the index)
    tldr.zip          the downloaded tldr archive (`shellfish knowledge pull tldr`)

Refreshing re-reads only programs whose binary (path, mtime, size) or man page changed; the
example documents are re-derived from their sources each time (cheap: a zip and text files).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shellfish.knowledge.bm25 import BM25, tokenize
from shellfish.knowledge.system import ProgramRecord, default_manpath, refresh_programs
from shellfish.knowledge.tldr import KnowledgeError

if TYPE_CHECKING:
    import numpy as np

FORMAT = 1
T = TypeVar("T")


@dataclass(frozen=True)
class Doc:
    id: str  # "tldr:tar:3", "pair:812", "history:5"
    kind: str  # tldr | pair | history
    program: str
    text: str  # the words that describe it (empty for history)
    command: str


@dataclass(frozen=True)
class Hit:
    doc: Doc
    score: float


@dataclass
class BuildOptions:
    """What to index. Empty / None fields take this machine's defaults."""

    path_value: str | None = None
    manpath: list[Path] | None = None
    history_files: list[Path] | None = None
    pairs: tuple[Path, Path] | None = None  # NL file, command file (aligned lines)
    tldr_zip: Path | None = None
    # the NL2Bash train pairs and tldr pages inside the package (shellfish/knowledge/shipped.py)
    shipped: bool = False
    platform: str = field(default_factory=lambda: platform.system().lower())
    run_help: bool = True
    help_timeout_s: float = 2.0
    workers: int = 4


@dataclass
class BuildReport:
    programs: int
    kept: int
    updated: int
    removed: int
    examples: dict[str, int]
    options: int
    seconds: float


def index_mtime(root: Path) -> float:
    """When the index under `root` was last written (0.0 when there is none)."""
    try:
        return (root / "meta.json").stat().st_mtime
    except OSError:
        return 0.0


def _load_programs(root: Path) -> dict[str, ProgramRecord]:
    path = root / "programs.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: ProgramRecord.from_dict(rec) for name, rec in data["programs"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # a corrupt cache is rebuilt from scratch


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise KnowledgeError(f"cannot read {path}: {exc.strerror}", hint="check the path") from exc


def _pair_docs(pairs: tuple[Path, Path], prefix: str = "pair") -> list[Doc]:
    nl, cm = _read_lines(pairs[0]), _read_lines(pairs[1])
    if len(nl) != len(cm):
        raise KnowledgeError(
            f"{pairs[0]} has {len(nl)} lines but {pairs[1]} has {len(cm)}",
            hint="the request and command files must be aligned line by line",
        )
    docs = []
    for i, (text, command) in enumerate(zip(nl, cm, strict=True)):
        if text.strip() and command.strip():
            doc = Doc(f"{prefix}:{i}", "pair", _program(command), text.strip(), command.strip())
            docs.append(doc)
    return docs


def _program(command: str) -> str:
    """The first program `command` runs (wrappers such as sudo skipped), "" when none."""
    from shellfish.shell.syntax import programs

    found = programs(command)
    return found[0] if found else ""


def _tldr_platforms(system: str) -> tuple[str, ...]:
    from shellfish.knowledge.tldr import PLATFORMS

    return PLATFORMS.get(system, ("common", "linux"))


def build_index(root: Path, options: BuildOptions | None = None) -> BuildReport:
    """Build or refresh the index under `root` (atomically per file; meta.json last)."""
    opts = options or BuildOptions()
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    previous_meta = _read_meta(root)
    path_value = opts.path_value if opts.path_value is not None else os.environ.get("PATH", "")
    manpath = opts.manpath if opts.manpath is not None else default_manpath()
    programs, counts = refresh_programs(
        _load_programs(root),
        path_value,
        manpath,
        run_help_text=opts.run_help,
        help_timeout_s=opts.help_timeout_s,
        workers=opts.workers,
    )
    docs: list[Doc] = []
    from shellfish.knowledge.shipped import shipped_pairs, shipped_tldr

    tldr_zip = opts.tldr_zip or (root / "tldr.zip")
    if not tldr_zip.exists() and opts.tldr_zip is None and opts.shipped:
        tldr_zip = shipped_tldr() or tldr_zip  # a pulled archive wins over the shipped one
    n_tldr = 0
    if tldr_zip.exists():
        from shellfish.knowledge.tldr import read_archive

        for i, ex in enumerate(read_archive(tldr_zip, _tldr_platforms(opts.platform))):
            docs.append(
                Doc(f"tldr:{ex.program}:{i}", "tldr", ex.program, ex.description, ex.command)
            )
            n_tldr += 1
    pairs = opts.pairs
    if pairs is None and previous_meta.get("pairs"):
        kept = [Path(p) for p in previous_meta["pairs"]]
        pairs = (kept[0], kept[1]) if all(p.exists() for p in kept) else None
    pair_docs: list[Doc] = []
    shipped = shipped_pairs() if opts.shipped else None
    if shipped is not None:
        pair_docs = _pair_docs(shipped, prefix="pair:nl2bash")
    if pairs is not None:
        # the user's own pairs come in addition; one already shipped is not indexed twice
        seen = {(d.text, d.command) for d in pair_docs}
        pair_docs += [d for d in _pair_docs(pairs) if (d.text, d.command) not in seen]
    docs.extend(pair_docs)
    n_pairs = len(pair_docs)
    from shellfish.knowledge.history import default_history_files, history_commands

    files = opts.history_files if opts.history_files is not None else default_history_files()
    history = history_commands(files)
    for i, command in enumerate(history):
        docs.append(Doc(f"history:{i}", "history", _program(command), "", command))

    examples = BM25().fit([_doc_tokens(d) for d in docs])
    option_rows = [
        [name, opt.line()] for name, rec in sorted(programs.items()) for opt in rec.option_objects()
    ]
    option_index = BM25().fit([tokenize(f"{p} {line}") for p, line in option_rows])

    _write_json(
        root / "programs.json",
        {
            "format": FORMAT,
            "programs": {n: r.to_dict() for n, r in sorted(programs.items())},
        },
    )
    _write_text(root / "examples.jsonl", "".join(json.dumps(asdict(d)) + "\n" for d in docs))
    _write_text(root / "options.jsonl", "".join(json.dumps(r) + "\n" for r in option_rows))
    examples.save(root / "examples")
    option_index.save(root / "options")
    report = BuildReport(
        programs=len(programs),
        kept=counts["kept"],
        updated=counts["updated"],
        removed=counts["removed"],
        examples={"tldr": n_tldr, "pair": n_pairs, "history": len(history)},
        options=len(option_rows),
        seconds=round(time.perf_counter() - started, 2),
    )
    _write_json(
        root / "meta.json",
        {
            "format": FORMAT,
            "built_at": time.time(),
            "pairs": [str(p) for p in pairs] if pairs else None,
            "tldr": str(tldr_zip) if tldr_zip.exists() else None,
            "shipped": opts.shipped,
            "history_files": [str(p) for p in files],
            "report": asdict(report),
        },
    )
    return report


def _doc_tokens(doc: Doc) -> list[str]:
    # The description counts most; the program name and command words help keyword queries
    # ("tar", "gzip") find the right page.
    return tokenize(doc.text) * 2 + tokenize(doc.program) + tokenize(doc.command)


def _write_json(path: Path, data: Any) -> None:
    _write_text(path, json.dumps(data))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _read_meta(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / "meta.json").read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


class LazyRecords(Generic[T]):
    """The lines of a JSON-lines file, each parsed the first time it is read.

    A suggestion reads the dozen examples its search found out of ~40,000; parsing every line
    at load took longer than the search (0.12 s of a cold `shellfish suggest`). The first and
    last lines are parsed at once, so a file that is garbage or cut short is told at load; a
    line broken in between is a KnowledgeError when it is read.
    """

    def __init__(self, path: Path, parse: Callable[[str], T]) -> None:
        self.path = path
        self._lines = _read_lines(path)
        self._parse = parse
        self._items: list[T | None] = [None] * len(self._lines)
        if self._lines:  # garbage, or a file cut short: told now
            _ = (self[0], self[-1])

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, i: int) -> T:
        item = self._items[i]
        if item is None:
            try:
                item = self._parse(self._lines[i])
            except (ValueError, TypeError, KeyError) as exc:
                raise KnowledgeError(
                    f"the knowledge index in {self.path.parent} is corrupt"
                    f" ({self.path.name}, line {i % len(self._lines) + 1}: {exc})",
                    hint="run `shellfish knowledge build`",
                ) from exc
            self._items[i] = item
        return item

    def __iter__(self) -> Iterator[T]:
        return (self[i] for i in range(len(self._lines)))


def _parse_doc(line: str) -> Doc:
    return Doc(**json.loads(line))


def _parse_row(line: str) -> list[str]:
    row = json.loads(line)
    if not isinstance(row, list):
        raise TypeError(f"expected a list, found {type(row).__name__}")
    return row


class KnowledgeIndex:
    """A loaded index: example search, option lines, program facts for validation."""

    def __init__(
        self,
        root: Path,
        docs: LazyRecords[Doc],
        examples: BM25,
        option_rows: LazyRecords[list[str]],
        options: BM25,
        programs: dict[str, ProgramRecord],
        meta: dict[str, Any],
    ) -> None:
        self.root = root
        self.docs = docs
        self.examples = examples
        self.option_rows = option_rows
        self.options = options
        self.programs = programs
        self.meta = meta
        self._option_programs: np.ndarray | None = None

    @classmethod
    def load(cls, root: Path) -> KnowledgeIndex:
        """Load the index under `root`; raises KnowledgeError when it is missing or corrupt."""
        if not (root / "meta.json").exists():
            raise KnowledgeError(
                f"no knowledge index in {root}", hint="run `shellfish knowledge build`"
            )
        try:
            docs = LazyRecords(root / "examples.jsonl", _parse_doc)
            rows = LazyRecords(root / "options.jsonl", _parse_row)
            examples = BM25.load(root / "examples")
            options = BM25.load(root / "options")
        except (ValueError, TypeError, KeyError, OSError) as exc:
            raise KnowledgeError(
                f"the knowledge index in {root} is corrupt ({exc})",
                hint="run `shellfish knowledge build`",
            ) from exc
        if examples.n_docs != len(docs) or options.n_docs != len(rows):
            raise KnowledgeError(
                f"the knowledge index in {root} is inconsistent",
                hint="run `shellfish knowledge build`",
            )
        return cls(root, docs, examples, rows, options, _load_programs(root), _read_meta(root))

    def search(self, query: str, k: int = 10, kinds: tuple[str, ...] | None = None) -> list[Hit]:
        """The `k` examples nearest to `query` (BM25), best first."""
        tokens = tokenize(query)
        mask = None
        if kinds is not None:
            import numpy as np

            mask = np.array([d.kind in kinds for d in self.docs], dtype=bool)
        return [Hit(self.docs[i], s) for i, s in self.examples.search(tokens, k, mask)]

    def option_lines(
        self, query: str, hits: list[Doc], n: int = 6, max_programs: int = 2
    ) -> list[str]:
        """The documented options of the likeliest programs that best match `query`."""
        import numpy as np

        programs: list[str] = []
        for doc in hits:
            if doc.program and doc.program in self.programs and doc.program not in programs:
                programs.append(doc.program)
            if len(programs) >= max_programs:
                break
        if not programs or not self.option_rows:
            return []
        if self._option_programs is None:
            self._option_programs = np.array([r[0] for r in self.option_rows])
        mask = np.isin(self._option_programs, programs)
        found = self.options.search(tokenize(query), n, mask)
        return [f"{self.option_rows[i][0]} {self.option_rows[i][1]}" for i, _s in found]

    def known_flags(self, program: str) -> set[str] | None:
        """The option names documented for `program` here; None when we know none."""
        rec = self.programs.get(program)
        if rec is None or not rec.options:
            return None
        return rec.flag_names()

    def status(self) -> dict[str, Any]:
        report = self.meta.get("report", {})
        return {
            "root": str(self.root),
            "built_at": self.meta.get("built_at"),
            "programs": len(self.programs),
            "programs_with_options": sum(1 for r in self.programs.values() if r.options),
            "examples": report.get("examples", {}),
            "options": len(self.option_rows),
            "pairs": self.meta.get("pairs"),
            "tldr": self.meta.get("tldr"),
        }
