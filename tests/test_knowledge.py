"""The knowledge index built from a controlled PATH / man fixture (no real system programs)."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shellfish.knowledge.bm25 import BM25, tokenize
from shellfish.knowledge.flags import option_names, parse_options, roff_to_text
from shellfish.knowledge.index import BuildOptions, KnowledgeIndex, build_index
from shellfish.knowledge.tldr import KnowledgeError

FROB_HELP = """Usage: frob [OPTION]... FILE
Frobnicate files.

  -a, --all            frobnicate hidden files too
  -q, --quiet          say nothing
      --depth=N        descend at most N levels
"""

MANNED_ROFF = r""".TH MANNED 1
.SH NAME
manned \- show a manned thing
.SH OPTIONS
.TP
\fB\-x\fR, \fB\-\-extract\fR
extract the manned archive
.TP
.B \-z
compress with gzip
"""

SECRETS = ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "S3cretPass", "hunter2")


def _exe(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def machine(tmp_path: Path) -> dict[str, Path]:
    bin_dir = tmp_path / "bin"
    man1 = tmp_path / "man" / "man1"
    bin_dir.mkdir()
    man1.mkdir(parents=True)
    _exe(bin_dir, "frob", f"cat <<'EOF'\n{FROB_HELP}EOF")
    _exe(bin_dir, "manned", "echo should-not-run-when-a-man-page-exists; exit 3")
    _exe(bin_dir, "hang", "sleep 30")  # --help never returns
    _exe(bin_dir, "brokenman", "printf '  -b, --bravo   the fallback help\\n'")
    (man1 / "manned.1.gz").write_bytes(gzip.compress(MANNED_ROFF.encode()))
    (man1 / "brokenman.1.gz").write_bytes(b"\x1f\x8b this is not gzip data")  # corrupt page
    history = tmp_path / "zsh_history"
    history.write_text(
        ": 1700000000:0;frob -a notes.txt\n"
        f": 1700000001:0;export GITHUB_TOKEN={SECRETS[0]}\n"
        f"mysql -u root -p{SECRETS[1]} shop\n"
        f"curl -u admin:{SECRETS[2]} https://example.com\n"
        "ls -la\n"
    )
    nl = tmp_path / "pairs.nl"
    cm = tmp_path / "pairs.cm"
    nl.write_text("frobnicate every hidden file\nlist files sorted by size\n")
    cm.write_text("frob -a .\nls -S\n")
    return {
        "root": tmp_path / "index",
        "bin": bin_dir,
        "man": tmp_path / "man",
        "history": history,
        "nl": nl,
        "cm": cm,
    }


def _options(m: dict[str, Path], *, run_help: bool = True) -> BuildOptions:
    return BuildOptions(
        path_value=str(m["bin"]),
        manpath=[m["man"]],
        history_files=[m["history"]],
        pairs=(m["nl"], m["cm"]),
        help_timeout_s=0.5,
        run_help=run_help,
    )


def test_build_from_fixture_survives_hang_and_broken_man_page(machine: dict[str, Path]) -> None:
    started = time.monotonic()
    report = build_index(machine["root"], _options(machine))
    assert time.monotonic() - started < 15  # the hanging --help was killed after 0.5 s
    assert report.programs == 4 and report.updated == 4
    index = KnowledgeIndex.load(machine["root"])
    assert index.programs["hang"].source == "timeout" and not index.programs["hang"].options
    assert index.known_flags("frob") == {"-a", "--all", "-q", "--quiet", "--depth"}
    manned = index.programs["manned"]
    assert manned.source == "man" and index.known_flags("manned") == {"-x", "--extract", "-z"}
    assert "show a manned thing" in manned.summary
    # the corrupt man page is skipped and --help fills in
    assert index.programs["brokenman"].source == "help"
    assert index.known_flags("brokenman") == {"-b", "--bravo"}
    assert index.known_flags("hang") is None


def test_refresh_is_incremental(machine: dict[str, Path]) -> None:
    build_index(machine["root"], _options(machine, run_help=False))
    again = build_index(machine["root"], _options(machine, run_help=False))
    assert (again.kept, again.updated, again.removed) == (4, 0, 0)
    frob = machine["bin"] / "frob"
    frob.write_text(frob.read_text() + "\n# changed\n")
    os.utime(frob, (time.time() + 5, time.time() + 5))
    (machine["bin"] / "hang").unlink()
    third = build_index(machine["root"], _options(machine, run_help=False))
    assert (third.kept, third.updated, third.removed) == (2, 1, 1)
    assert "hang" not in KnowledgeIndex.load(machine["root"]).programs


def test_history_secrets_are_never_stored(machine: dict[str, Path]) -> None:
    report = build_index(machine["root"], _options(machine, run_help=False))
    assert report.examples["history"] == 2  # frob -a notes.txt, ls -la
    for path in machine["root"].iterdir():
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} leaked into {path.name}"
    index = KnowledgeIndex.load(machine["root"])
    commands = {d.command for d in index.docs if d.kind == "history"}
    assert commands == {"frob -a notes.txt", "ls -la"}


def test_search_and_option_lines(machine: dict[str, Path]) -> None:
    build_index(machine["root"], _options(machine))
    index = KnowledgeIndex.load(machine["root"])
    hits = index.search("frobnicate the hidden files", k=3)
    assert hits[0].doc.command == "frob -a ."
    assert hits[0].doc.kind == "pair"
    lines = index.option_lines("frobnicate hidden files", [h.doc for h in hits], n=2)
    assert lines and lines[0].startswith("frob -a, --all")
    assert index.search("zzzz qqqq") == []


def test_missing_or_corrupt_index_is_a_clear_error(
    tmp_path: Path, machine: dict[str, Path]
) -> None:
    with pytest.raises(KnowledgeError, match="knowledge build"):
        KnowledgeIndex.load(tmp_path / "nothing")
    build_index(machine["root"], _options(machine, run_help=False))
    (machine["root"] / "examples.jsonl").write_text("{not json\n")
    with pytest.raises(KnowledgeError, match="corrupt"):
        KnowledgeIndex.load(machine["root"])


def test_a_line_broken_inside_the_index_is_told_when_read(tmp_path: Path) -> None:
    """Examples are parsed when a search reads them (a suggestion reads a dozen of ~40k): the
    first and last lines at load, a broken line in between as a clear error once it is read."""
    nl, cm = tmp_path / "p.nl", tmp_path / "p.cm"
    nl.write_text("frobnicate all files\nshow the disk usage\ncount lines in a file\n")
    cm.write_text("frob -a .\ndu -sh .\nwc -l file\n")
    root = tmp_path / "index"
    options = BuildOptions(path_value="", manpath=[], history_files=[], pairs=(nl, cm))
    build_index(root, options)
    lines = (root / "examples.jsonl").read_text().splitlines()
    assert len(lines) == 3
    (root / "examples.jsonl").write_text("\n".join([lines[0], "{cut sh", lines[2]]) + "\n")
    index = KnowledgeIndex.load(root)  # first and last lines parse
    assert index.search("count lines in a file", k=1)[0].doc.command == "wc -l file"
    with pytest.raises(KnowledgeError, match=r"corrupt \(examples.jsonl, line 2"):
        index.search("show the disk usage", k=3)
    (root / "examples.jsonl").write_text("\n".join([lines[0], lines[1], lines[2][:9]]) + "\n")
    with pytest.raises(KnowledgeError, match="corrupt"):  # cut short: told at load
        KnowledgeIndex.load(root)


def test_misaligned_pairs_are_rejected(machine: dict[str, Path]) -> None:
    machine["cm"].write_text("frob -a .\n")
    with pytest.raises(KnowledgeError, match="aligned"):
        build_index(machine["root"], _options(machine, run_help=False))


def test_parse_options_from_help_and_roff() -> None:
    opts = parse_options(FROB_HELP)
    assert [o.names for o in opts] == [("-a", "--all"), ("-q", "--quiet"), ("--depth",)]
    assert opts[0].description == "frobnicate hidden files too"
    text = roff_to_text(MANNED_ROFF)
    assert option_names(parse_options(text)) == {"-x", "--extract", "-z"}
    mdoc = ".Sh DESCRIPTION\n.Bl -tag\n.It Fl r\nrecurse\n.It Fl n Ar count\nlines\n.El\n"
    assert option_names(parse_options(roff_to_text(mdoc))) == {"-r", "-n"}


BM25_RUN = """
import json, random
from shellfish.knowledge.bm25 import BM25
rng = random.Random(0)
words = [f"w{i}" for i in range(40)]
docs = [[rng.choice(words) for _ in range(rng.randint(3, 12))] for _ in range(4000)]
index = BM25().fit(docs)
print(json.dumps([index.search([rng.choice(words) for _ in range(8)], 40) for _ in range(30)]))
"""


def test_bm25_results_do_not_depend_on_the_process() -> None:
    """The same query finds the same documents in the same order in every process: scores are
    summed in the query's order, not a set's (whose order follows the per-process string
    hashing), so near-ties break the same way - for a suggestion's examples and for the
    training data `shellfish tune` renders (whose sha256 decides whether a run resumes)."""
    outputs = {
        subprocess.run(
            [sys.executable, "-c", BM25_RUN],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(outputs) == 1


def test_bm25_ranks_and_is_fast() -> None:
    import random

    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    docs = [[rng.choice(words) for _ in range(12)] for _ in range(30000)]
    docs[123] = tokenize("extract a gzipped tar archive into a directory")
    bm = BM25().fit(docs)
    assert bm.search(tokenize("extract the tar archive"), 1)[0][0] == 123
    queries = [[rng.choice(words) for _ in range(8)] for _ in range(200)]
    started = time.perf_counter()
    for q in queries:
        bm.search(q, 12)
    per_query_ms = (time.perf_counter() - started) * 1000 / len(queries)
    assert per_query_ms < 20, per_query_ms


def test_bm25_roundtrip(tmp_path: Path) -> None:
    bm = BM25().fit([tokenize("list files"), tokenize("remove files"), tokenize("count lines")])
    bm.save(tmp_path / "x")
    loaded = BM25.load(tmp_path / "x")
    q = tokenize("count the lines")
    assert loaded.search(q, 3) == bm.search(q, 3)


def test_history_and_pair_programs_skip_wrappers(machine: dict[str, Path], tmp_path: Path) -> None:
    history = tmp_path / "bash_history"
    history.write_text("sudo nice -n 5 frob -a notes.txt\n")
    machine["cm"].write_text("sudo -u bob frob -a .\nls -S\n")
    options = _options(machine, run_help=False)
    options = BuildOptions(**{**options.__dict__, "history_files": [history]})
    build_index(machine["root"], options)
    index = KnowledgeIndex.load(machine["root"])
    # the program is what runs, not the wrapper in front of it (was "sudo")
    assert {d.program for d in index.docs if d.kind in ("history", "pair")} == {"frob", "ls"}


def test_status_reads_as_a_person_would_want_it(machine: dict[str, Path], tmp_path: Path) -> None:
    import io
    import json

    from shellfish.cli import main
    from shellfish.cli.knowledge import status_text
    from shellfish.environment import Environment

    home = tmp_path / "home"
    build_index(home / "data" / "knowledge", _options(machine))
    out = io.StringIO()
    env = Environment(stdout=out, stderr=io.StringIO(), environ={"SHELLFISH_HOME": str(home)})
    assert main(["knowledge", "status"], env) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == f"index: {home / 'data' / 'knowledge'}"
    assert lines[1].startswith("built: ") and lines[1].endswith(" min ago)")
    assert lines[2] == "programs: 4 (3 with options)"
    assert lines[4].startswith("examples: ") and "{" not in lines[4]
    assert lines[5] == f"pairs: {machine['nl']}, {machine['cm']}"
    out.seek(0)
    out.truncate()
    assert main(["knowledge", "status", "--json"], env) == 0
    info = json.loads(out.getvalue())  # the JSON form keeps the raw values
    assert isinstance(info["built_at"], float) and info["programs"] == 4
    text = status_text({**info, "built_at": info["built_at"] - 3 * 86400}, now=info["built_at"])
    assert " (3 days ago)" in text
    assert "built: never - run `shellfish knowledge build`" in status_text(
        {**info, "built_at": None, "examples": {}, "pairs": None, "tldr": None}, now=0.0
    )
