"""Training data for `shellfish tune`: request -> command pairs, rendered as the model sees them.

Sources (each counted, each file hashed for the model's manifest):
- the NL2Bash *train* pairs shipped with the package (never the dev split: it is not shipped);
- the tldr pages shipped with the package, their ``{{placeholders}}`` turned into plausible
  arguments (`plausible_argument`), so the model learns commands, not template syntax;
- extra aligned request / command files the user names (`--pairs`);
- opt-in, the user's own accepted suggestions: `suggest` answers from the history log that
  the user then ran (the same line is in their redacted shell history), and their corrections:
  a suggestion the user edited before running it teaches what they ran instead (this needs
  the times of zsh's extended history).

Every pair becomes the exact prompt the suggestion path builds at run time (system turn, up to
`examples` nearest *other* pairs as earlier turns, the request) and the completion the model
should write after it (the command, then the end of the code block). A broken line (empty
request or command, a multi-line command, unaligned files) is skipped and counted, never fatal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from shellfish.errors import UsageError
from shellfish.store.store import sha256_file

# Generic placeholder words -> concrete values that read like a real command line.
_VALUES: dict[str, tuple[str, ...]] = {
    "file": ("notes.txt", "report.pdf", "data.csv", "main.c"),
    "directory": ("projects", "src", "backups", "docs"),
    "dir": ("src", "build"),
    "folder": ("photos", "downloads"),
    "archive": ("backup.tar.gz", "logs.zip"),
    "image": ("photo.jpg", "diagram.png"),
    "user": ("alice", "bob"),
    "username": ("alice", "deploy"),
    "group": ("staff", "developers"),
    "host": ("example.com", "192.168.1.10"),
    "hostname": ("server.example.com",),
    "server": ("server.example.com",),
    "port": ("8080", "22"),
    "url": ("https://example.com/file.tar.gz",),
    "pattern": ("error", "TODO"),
    "search_pattern": ("error", "TODO"),
    "regex": ("^[0-9]+$",),
    "package": ("htop", "curl"),
    "package_name": ("htop", "nginx"),
    "name": ("myproject", "web"),
    "branch": ("feature", "develop"),
    "branch_name": ("feature", "develop"),
    "string": ("hello",),
    "text": ("hello world",),
    "number": ("10", "3"),
    "count": ("5",),
    "command": ("ls -l",),
    "process_name": ("firefox",),
    "pid": ("1234",),
    "container": ("web",),
    "image_name": ("nginx:latest",),
    "interface": ("eth0",),
    "device": ("/dev/sdb1",),
    "email": ("alice@example.com",),
    "message": ("fix typo",),
    "commit": ("HEAD~1",),
    "remote": ("origin",),
    "service": ("nginx",),
    "key": ("name",),
    "value": ("42",),
}
_PATH_PREFIX = re.compile(r"^(?:/?path/to/|~/path/to/)")


def plausible_argument(inner: str, salt: int = 0) -> str:
    """A concrete argument for a tldr ``{{placeholder}}`` (deterministic for a given salt).

    ``[-C|--directory]`` -> ``-C``; ``on|off`` -> ``on``; ``path/to/file.zip|url`` ->
    ``file.zip``; ``path/to/file1 path/to/file2 ...`` -> ``file1 file2``; ``path/to/directory``
    -> ``projects``; ``username`` -> ``alice``; a placeholder that already reads like a value
    (``8080``, ``*.txt``, ``origin``) stays as written.
    """
    from shellfish.knowledge.tldr import first_alternative

    text = inner.strip()
    words = text.split()
    if len(words) > 1 and words[-1] == "...":  # {{path/to/file1 path/to/file2 ...}}
        return " ".join(plausible_argument(w, salt + i) for i, w in enumerate(words[:-1]))
    choice = first_alternative(text)
    if choice is not None:
        if text.startswith("["):  # [-C|--directory], [images|image ls]: words to type as is
            return choice
        text = choice  # path/to/file.zip|url: a placeholder in its own right
    tail = _PATH_PREFIX.sub("", text)
    key = tail.lower().replace(" ", "_").replace("-", "_").rstrip("s")
    if key.endswith("[s]"):
        key = key[:-3]
    stem = key.rsplit("/", 1)[-1]
    for word in (stem, stem.split("_")[-1]):
        choices = _VALUES.get(word) or _VALUES.get(word + "s")
        if choices:
            return choices[salt % len(choices)]
    if "." in tail and "/" not in tail and " " not in tail:
        return tail  # file.zip, archive.tar.gz: already a plausible name
    return tail.replace(" ", "_") or text


@dataclass(frozen=True)
class Pair:
    request: str
    command: str
    source: str  # nl2bash | tldr | pairs | history | correction


@dataclass
class Collected:
    pairs: list[Pair] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # source -> broken lines
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256

    def add(self, source: str, request: str, command: str) -> None:
        request, command = request.strip(), command.strip()
        if not request or not command or "\n" in command or len(command) > 400:
            self.skipped[source] = self.skipped.get(source, 0) + 1
            return
        self.pairs.append(Pair(request, command, source))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.pairs:
            out[p.source] = out.get(p.source, 0) + 1
        return out


def read_pairs(collected: Collected, nl: Path, cm: Path, source: str) -> None:
    """Aligned request / command files; lines beyond the shorter file count as broken."""
    for f in (nl, cm):
        if not f.is_file():
            raise UsageError(f"{f} does not exist", hint="give a request file and a command file")
        collected.files[str(f)] = sha256_file(f)
    requests = nl.read_text(encoding="utf-8", errors="replace").splitlines()
    commands = cm.read_text(encoding="utf-8", errors="replace").splitlines()
    for request, command in zip(requests, commands, strict=False):
        collected.add(source, request, command)
    extra = abs(len(requests) - len(commands))
    if extra:
        collected.skipped[source] = collected.skipped.get(source, 0) + extra


def read_tldr(
    collected: Collected,
    archive: Path,
    platforms: tuple[str, ...],
    implicit: frozenset[str] = frozenset(),
) -> None:
    """The tldr examples as pairs; requests name their program unless it is in `implicit`
    (see `tldr_request`)."""
    from shellfish.knowledge.tldr import read_archive

    collected.files[str(archive)] = sha256_file(archive)
    counter = iter(range(1 << 30))

    def fill(match: re.Match[str]) -> str:
        return plausible_argument(match.group(1), next(counter))

    for example in read_archive(archive, platforms, fill=fill):
        if example.command.startswith("<"):  # keys to press in a program (`<Ctrl f>`), no line
            collected.skipped["tldr"] = collected.skipped.get("tldr", 0) + 1
            continue
        request = tldr_request(example.description, example.command, implicit)
        collected.add("tldr", request, example.command)


# A tldr description rarely names its program: "Display help" (of which?), "Specify a timeout
# period before unpublishing" (npm). As a training request it would teach the model to guess
# one. Requests for everyday programs leave the program implicit, as NL2Bash's do ("list all
# files including hidden ones": ls), so the programs that lead at least this many of the
# request->command pairs already collected stay implicit; every other one is named.
IMPLICIT_AT_LEAST = 20


def read_shipped(collected: Collected) -> None:
    """The pairs the package ships: NL2Bash train, then the tldr examples (common + linux)."""
    from shellfish.knowledge.shipped import shipped_pairs, shipped_tldr

    pairs, tldr = shipped_pairs(), shipped_tldr()
    if pairs is not None:
        read_pairs(collected, *pairs, source="nl2bash")
    if tldr is not None:
        implicit = implicit_programs(p.command for p in collected.pairs)
        read_tldr(collected, tldr, ("common", "linux"), implicit)


def first_word(command: str) -> str:
    """The program a command line starts with, roughly: the first word after `sudo` and
    variable assignments (enough to count programs over thousands of pairs)."""
    for word in command.split():
        if word == "sudo" or ("=" in word and not word.startswith("-")):
            continue
        return word.strip("'\"")
    return ""


def implicit_programs(commands: Iterable[str], at_least: int = IMPLICIT_AT_LEAST) -> frozenset[str]:
    """Programs that lead at least `at_least` of `commands`."""
    counts: dict[str, int] = {}
    for command in commands:
        word = first_word(command)
        counts[word] = counts.get(word, 0) + 1
    return frozenset(w for w, n in counts.items() if w and n >= at_least)


def tldr_request(description: str, command: str, implicit: frozenset[str]) -> str:
    """`description` as a request: "Display help" + `tuxi -h` -> "Display help using tuxi";
    unchanged when the program is implicit or the description names it already."""
    program = first_word(command)
    if not program or program in implicit:
        return description
    if re.search(rf"(?<![\w-]){re.escape(program)}(?![\w-])", description, re.IGNORECASE):
        return description
    return f"{description} using {program}"


def accepted_suggestions(
    entries: Iterable[tuple[str, str]], ran: Iterable[str]
) -> list[tuple[str, str]]:
    """(request, command) of the suggestions the user went on to run (whitespace-insensitive)."""
    executed = {" ".join(c.split()) for c in ran}
    return [(r, c) for r, c in entries if c.strip() and " ".join(c.split()) in executed]


# How long after a suggestion a command it was edited into may run (seconds), and how alike
# the two lines must be (difflib ratio): `ls -la` -> `ls -lah` is 0.92, `find . -name '*.py'`
# -> the same with `-mtime -1` 0.79, `git diff` -> `git status` (another request) 0.55.
CORRECTION_WINDOW = 300.0
CORRECTION_SIMILARITY = 0.7


def corrected_suggestions(
    entries: Iterable[tuple[float, str, str]], timed: Iterable[tuple[float, str]]
) -> list[tuple[str, str]]:
    """(request, what the user ran instead) for suggestions the user edited before running.

    `entries` are (time, request, suggestion) from the history log, `timed` (time, command)
    from a shell history that records times (zsh's extended history). The first command run
    within `CORRECTION_WINDOW` seconds after a suggestion that starts with the same program
    and reads alike (`CORRECTION_SIMILARITY`) is what the suggestion became; the same line
    (accepted as it was) or another command (the user moved on) is not a correction.
    """
    from difflib import SequenceMatcher

    from shellfish.shell.syntax import programs

    commands = sorted(timed)
    out: list[tuple[str, str]] = []
    for ts, request, suggestion in entries:
        wanted = programs(suggestion)[:1]
        if not wanted:
            continue
        for when, command in commands:
            if when < ts:
                continue
            if when > ts + CORRECTION_WINDOW:
                break
            line, suggested = " ".join(command.split()), " ".join(suggestion.split())
            alike = SequenceMatcher(None, line, suggested).ratio() >= CORRECTION_SIMILARITY
            if programs(command)[:1] == wanted and alike:
                if line != suggested:
                    out.append((request, command))
                break
    return out


# What a request from the shell widget carries, less what varies by user: the run-time prompt
# states the cwd as `.` (never its path), so any directory gives the same turn.
TRAINING_CONTEXT = {"os": "Linux", "shell": "bash", "cwd": "/home/user"}


def render_examples(
    pairs: list[Pair],
    render: Callable[[list[dict[str, str]]], str],
    examples: int,
    skip: int = 0,
) -> list[dict[str, str]]:
    """prompt / completion records: the run-time suggestion prompt for each pair.

    The messages come from the suggestion path's own `build_messages`, for a request as the
    shell widget sends it (`TRAINING_CONTEXT`). The `examples` nearest other pairs (BM25 over
    the requests, the pair itself and exact duplicates excluded) go in as earlier turns,
    nearest last, as retrieval puts them; `skip` passes over that many nearest first (a second
    rendering of the same pairs with other examples).
    """
    from shellfish.knowledge.bm25 import BM25, tokenize
    from shellfish.request import TaskRequest
    from shellfish.suggest.prompts import build_messages

    index = BM25().fit([tokenize(p.request) for p in pairs]) if examples else None
    out = []
    for i, pair in enumerate(pairs):
        shots: list[Pair] = []
        if index is not None:
            hits = index.search(tokenize(pair.request), skip + examples + 4)
            shots = [
                pairs[j]
                for j, _score in hits
                if j != i and (pairs[j].request, pairs[j].command) != (pair.request, pair.command)
            ][skip : skip + examples]
        request = TaskRequest(task="suggest", text=pair.request, context=dict(TRAINING_CONTEXT))
        messages = build_messages(request, [(s.request, s.command) for s in reversed(shots)])
        out.append({"prompt": render(messages), "completion": f"{pair.command}\n```"})
    return out


def write_jsonl(records: list[dict[str, str]], path: Path) -> str:
    """Write the records (one JSON object a line); returns the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)
    return sha256_file(path)
