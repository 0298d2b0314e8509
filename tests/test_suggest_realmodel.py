"""`run_suggest` on real pretrained weights (marker `realmodel`).

Properties that hold for any sensible model, not snapshots of one model's answers: one line out,
every candidate validated (a program that is not installed is flagged, never silently passed),
a destructive answer carries a danger warning, greedy answers are deterministic and the fixed
instruction at the head of the prompt is answered by the prefix cache on the second request.

The model comes from the realmodel cache `$SHELLFISH_TEST_CACHE` (default
`~/.cache/shellfish-tests`, see tests/test_realmodel.py); it is pulled there when missing and
the test fails, saying why, when that is not possible (obtaining it is part of the proof).
"""

from __future__ import annotations

import shutil

import pytest
from test_realmodel import cache_env

from shellfish.config import Settings
from shellfish.events import Done, Event
from shellfish.paths import Paths, get_paths
from shellfish.request import TaskRequest

pytestmark = pytest.mark.realmodel

MODEL = "qwen2.5-coder-0.5b-instruct"
# Hand-written request/command pairs for the retrieval index (never the eval splits).
PAIRS = [
    ("list all files in the current directory, hidden ones too", "ls -a"),
    ("show the long listing of /etc sorted by time", "ls -lt /etc"),
    ("find all python files under the current directory", "find . -name '*.py'"),
    ("count the lines of every text file here", "wc -l *.txt"),
    ("delete the build directory and everything in it", "rm -rf build"),
    ("remove every file in the logs folder without asking", "rm -f logs/*"),
    ("make script.sh executable", "chmod +x script.sh"),
    ("search for the word TODO in all files recursively", "grep -r TODO ."),
]
PROGRAMS = ("ls", "find", "wc", "rm", "chmod", "grep", "tar", "du", "sort")


@pytest.fixture(scope="module")
def model_paths() -> Paths:
    from shellfish.store.install import pull
    from shellfish.store.store import Store

    env = cache_env()
    paths = get_paths(env)
    try:
        pull(Store(paths), MODEL, environ=env)
    except Exception as exc:
        pytest.fail(f"cannot obtain {MODEL} in {env['SHELLFISH_HOME']}: {exc}")
    return paths


@pytest.fixture(scope="module")
def runner(model_paths: Paths):
    from shellfish.store.pool import ModelPool

    pool = ModelPool(model_paths, Settings())
    yield pool.get(MODEL)
    pool.close()


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """A small index: a few real programs (with their --help) and the pairs above."""
    from shellfish.knowledge.index import BuildOptions, build_index

    root = tmp_path_factory.mktemp("suggest-real")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name in PROGRAMS:
        exe = shutil.which(name)
        if exe:
            (bin_dir / name).symlink_to(exe)
    nl, cm = root / "pairs.nl", root / "pairs.cm"
    nl.write_text("".join(f"{t}\n" for t, _c in PAIRS))
    cm.write_text("".join(f"{c}\n" for _t, c in PAIRS))
    paths = get_paths({"SHELLFISH_HOME": str(root / "home")})
    build_index(
        paths.knowledge,
        BuildOptions(
            path_value=str(bin_dir), manpath=[], history_files=[], pairs=(nl, cm), workers=2
        ),
    )
    return paths


def _suggest(runner, paths: Paths, text: str, mode: str = "full") -> Done:
    from shellfish.suggest import run_suggest

    request = TaskRequest(task="suggest", text=text, context={"shell": "bash", "os": "Linux"})
    events: list[Event] = list(
        run_suggest(request, runner, settings=Settings(), paths=paths, mode=mode)
    )
    done = events[-1]
    assert isinstance(done, Done)
    return done


def test_one_validated_line(runner, knowledge: Paths) -> None:
    done = _suggest(runner, knowledge, "show all files in this directory including hidden ones")
    assert done.texts, done.extra
    best = done.texts[0]
    assert best.strip() and "\n" not in best and "```" not in best
    for cand in done.extra["candidates"]:
        assert "\n" not in cand["command"]
        program = cand["command"].split()[0]
        if shutil.which(program) is None and program not in ("cd", "echo", "export", "for"):
            # a program this machine lacks must be flagged, never passed as valid
            assert not cand["valid"]
            assert any("command not found" in p for p in cand["problems"])
    assert done.extra["mode"] == "full"
    assert done.completion_tokens > 0


def test_destructive_answer_is_warned(runner, knowledge: Paths) -> None:
    from shellfish.shell.danger import dangers

    done = _suggest(runner, knowledge, "recursively delete everything under / without asking")
    best = done.extra["candidates"][0]
    # The danger classifier, not the model, decides; the best candidate carries its verdict.
    found = dangers(best["command"])
    assert bool(best["danger"]) == bool(found)
    if found:
        assert any(w.startswith("danger:") for w in done.extra["warnings"])
    # and the model does answer with a deletion (a refusal would be a different bug)
    assert "rm" in best["command"].split(), best


def test_greedy_is_deterministic_and_the_prefix_is_reused(runner, knowledge: Paths) -> None:
    text = "count the lines in every .log file here"
    first = _suggest(runner, knowledge, text, mode="retrieval")
    second = _suggest(runner, knowledge, text, mode="retrieval")
    assert first.texts == second.texts
    other = _suggest(runner, knowledge, "find all markdown files below docs", mode="retrieval")
    # the fixed instruction heads every prompt, so the cache answers at least that much
    assert other.extra.get("prefix_reused_tokens", 0) >= 20
    assert other.prompt_tokens > other.extra["prefix_reused_tokens"]
