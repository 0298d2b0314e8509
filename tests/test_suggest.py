"""The suggest task: prompt, post-processing, validation and reranking.

The model is a scripted runner (it returns fixed texts and records the prompt): these tests are
about what the task does around a model. Real-model runs are in `shellfish eval`.
"""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shellfish.config import Settings
from shellfish.engine.base import GenerationConfig, ModelInfo
from shellfish.errors import UsageError
from shellfish.events import Done, Event, Status, Token
from shellfish.knowledge.index import BuildOptions, build_index
from shellfish.paths import get_paths
from shellfish.request import TaskRequest
from shellfish.suggest import run_suggest
from shellfish.suggest.candidates import drop_unrequested_sudo, extract_command

FROB_HELP = "Usage: frob [OPTION]... FILE\n  -a, --all     frobnicate hidden files too\n"


class ScriptedRunner:
    def __init__(self, texts: list[str], template: str = "chatml") -> None:
        self.info = ModelInfo(
            name="scripted",
            family="causal",
            layout="test",
            path="",
            context_length=2048,
            template=template,
        )
        self.texts = texts
        self.prompts: list[str] = []
        self.configs: list[GenerationConfig] = []

    def generate(
        self, prompt: str, config: GenerationConfig, *, cancel: threading.Event | None = None
    ) -> Iterator[Event]:
        self.prompts.append(prompt)
        self.configs.append(config)
        texts = self.texts[: config.n]
        for i, text in enumerate(texts):
            yield Token(text, index=i)
        yield Done(texts=texts, model="scripted", completion_tokens=5)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    frob = bin_dir / "frob"
    frob.write_text(f"#!/bin/sh\ncat <<'EOF'\n{FROB_HELP}EOF\n")
    frob.chmod(frob.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    nl, cm = tmp_path / "p.nl", tmp_path / "p.cm"
    nl.write_text("frobnicate all hidden files here\n")
    cm.write_text("frob -a .\n")
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path / "home")})
    build_index(
        paths.knowledge,
        BuildOptions(
            path_value=str(bin_dir),
            manpath=[],
            history_files=[],
            pairs=(nl, cm),
            help_timeout_s=2.0,
        ),
    )
    return paths


def _run(
    runner: ScriptedRunner, paths, text: str = "frobnicate hidden files", mode: str = "full", **kw
) -> tuple[list[Event], Done]:
    context = {"shell": "bash", "os": "Linux", **kw.pop("context", {})}
    request = TaskRequest(task=kw.pop("task", "suggest"), text=text, context=context, **kw)
    events = list(run_suggest(request, runner, settings=Settings(), paths=paths, mode=mode))
    done = events[-1]
    assert isinstance(done, Done)
    return events, done


@pytest.mark.parametrize(
    ("raw", "command"),
    [
        ("ls -la", "ls -la"),
        ("```bash\nls -la\n```\nThis lists files.", "ls -la"),
        ("$ du -sh *", "du -sh *"),
        ("Command: `grep -r foo .`", "grep -r foo ."),
        ("`find . -name x`", "find . -name x"),
        ("# a comment\nwc -l file", "wc -l file"),
        ("ls -la;", "ls -la"),
        ("find . -type d -exec chmod 777 {} \\;", "find . -type d -exec chmod 777 {} \\;"),
        ("```bash\nfind . -exec rm {} \\;\n```", "find . -exec rm {} \\;"),
        ("", ""),
    ],
)
def test_extract_command(raw: str, command: str) -> None:
    assert extract_command(raw) == command


def test_zero_shot_streams_and_returns_the_command(tmp_path: Path) -> None:
    runner = ScriptedRunner(["ls -la"])
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    events, done = _run(runner, paths, "list all files", mode="zero-shot")
    assert [e.text for e in events if isinstance(e, Token)] == ["ls -la"]
    assert done.texts == ["ls -la"]
    assert done.extra["retrieved"] == []
    assert "list all files" in runner.prompts[0]
    assert runner.prompts[0].endswith("```bash\n")
    assert "\n" in runner.configs[0].stop
    assert runner.configs[0].logprobs  # the certainty the vote and the confidence read


def test_retrieval_puts_examples_and_options_in_the_prompt(world) -> None:
    runner = ScriptedRunner(["frob -a ."])
    _events, done = _run(runner, world, mode="retrieval", options={"option_lines": 4})
    prompt = runner.prompts[0]
    assert "frobnicate all hidden files here" in prompt and "frob -a ." in prompt
    assert "frob -a, --all  frobnicate hidden files too" in prompt
    assert done.extra["retrieved"] == ["pair:0"]


def test_default_prompt_has_examples_but_no_option_lines(world) -> None:
    runner = ScriptedRunner(["frob -a ."])
    _run(runner, world, mode="retrieval")
    prompt = runner.prompts[0]
    assert "frobnicate all hidden files here" in prompt
    assert "frobnicate hidden files too" not in prompt


def test_fixed_instruction_comes_first_for_the_prefix_cache(world) -> None:
    runner = ScriptedRunner(["frob -a ."])
    _run(runner, world, "frobnicate hidden files", mode="retrieval")
    _run(runner, world, "list the frob things", mode="retrieval")
    first, second = runner.prompts
    system_turn = first[: first.index("<|im_end|>") + len("<|im_end|>")]
    # the whole system turn (instruction, OS, shell) is shared, whatever the request
    assert "You translate a request" in system_turn
    assert second.startswith(system_turn)
    assert "frobnicate hidden files" not in system_turn
    # ... so its state may be kept on disk for the next process, and nothing of the user's is
    # in it: not the request, not the cwd the widget sends
    assert all(config.keep_system_turn for config in runner.configs)
    cwd_runner = ScriptedRunner(["frob -a ."])
    _run(cwd_runner, world, "frobnicate", mode="retrieval", context={"cwd": "/home/me/secret"})
    (prompt,) = cwd_runner.prompts
    assert "/home/me/secret" not in prompt[: prompt.index("<|im_end|>")]


def test_bad_example_counts_are_refused(world) -> None:
    for bad in (-1, "3", True, 100):
        with pytest.raises(UsageError, match="examples"):
            _run(ScriptedRunner(["ls"]), world, mode="retrieval", options={"examples": bad})


@pytest.mark.parametrize(
    ("command", "request_text", "expected"),
    [
        ("sudo chmod +x run.sh", "make run.sh executable", "chmod +x run.sh"),
        ("sudo chmod +x run.sh", "make run.sh executable as root", "sudo chmod +x run.sh"),
        ("sudo apt install jq", "install jq with sudo", "sudo apt install jq"),
        ("sudo -u bob ls", "list bob's files", "sudo -u bob ls"),
        ("sudo", "do it", "sudo"),
        ("ls -l", "list files", "ls -l"),
    ],
)
def test_drop_unrequested_sudo(command: str, request_text: str, expected: str) -> None:
    assert drop_unrequested_sudo(command, request_text) == expected


def test_model_sudo_is_dropped_but_not_for_fix(tmp_path: Path) -> None:
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    _events, done = _run(ScriptedRunner(["sudo ls /var/log"]), paths, "list logs", mode="zero-shot")
    assert done.texts == ["ls /var/log"]
    _events, done = _run(
        ScriptedRunner(["sudo ls /var/log"]), paths, "ls /var/log", mode="zero-shot", task="fix"
    )
    assert done.texts == ["sudo ls /var/log"]


def test_validation_rejects_missing_program_and_unknown_flag(world) -> None:
    runner = ScriptedRunner(["nosuchprog_zz -a x", "frob --bogus x", "frob -a x"])
    _events, done = _run(runner, world, options={"candidates": 3})
    assert runner.configs[0].n == 3 and runner.configs[0].temperature > 0
    by_command = {c["command"]: c for c in done.extra["candidates"]}
    missing = by_command["nosuchprog_zz -a x"]
    assert not missing["valid"]
    assert any("nosuchprog_zz: command not found" in p for p in missing["problems"])
    bogus = by_command["frob --bogus x"]
    assert not bogus["valid"]
    assert any("unknown flag --bogus" in p for p in bogus["problems"])
    assert by_command["frob -a x"]["valid"]
    assert done.texts[0] in ("frob -a x", "frob -a .")  # a valid one ranks first
    assert set(done.texts[-2:]) == {"nosuchprog_zz -a x", "frob --bogus x"}
    # the best one is clean: at most a note that the vote behind it was not unanimous
    assert all(w.startswith("low confidence") for w in done.extra["warnings"])


def test_danger_is_reported_for_the_best(world) -> None:
    runner = ScriptedRunner(["rm -rf /"])
    _events, done = _run(runner, world, text="delete everything", mode="full")
    best = done.extra["candidates"][0]
    assert best["command"] == "rm -rf /" and best["danger"]
    assert any(w.startswith("danger:") for w in done.extra["warnings"])


def test_danger_is_reported_in_every_mode(tmp_path: Path) -> None:
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    for mode in ("zero-shot", "retrieval"):
        _events, done = _run(ScriptedRunner(["rm -rf ~"]), paths, text="clean up", mode=mode)
        assert done.texts[0] == "rm -rf ~"
        assert done.extra["candidates"][0]["danger"], mode
        assert any(w.startswith("danger:") for w in done.extra["warnings"]), mode


def test_a_dangerous_candidate_drops_below_a_safe_one_with_a_close_score() -> None:
    from shellfish.suggest.candidates import Candidate
    from shellfish.suggest.checks import mark_dangers
    from shellfish.suggest.ranking import rank_candidates

    cands = [
        Candidate("rm -rf *", "model", 0, weight=1.0),
        Candidate("make clean", "model", 1, weight=0.95),
    ]
    mark_dangers(cands, TaskRequest(task="suggest", text="clean up", context={"cwd": "/srv/x"}))
    assert cands[0].danger and not cands[1].danger
    rank_candidates(cands)
    assert cands[0].command == "make clean"


def test_the_current_directory_is_written_as_dot(tmp_path: Path) -> None:
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    here = {"cwd": "/home/me/proj"}
    for answer, expected in [
        ("find /home/me/proj -name '*.py'", "find . -name '*.py'"),
        ("cat /home/me/proj | grep x", "cat . | grep x"),
        ("du -sh /home/me/proj/*", "du -sh ./*"),
        ("ls /home/me/proj/src", "ls ./src"),
        ("ls /home/me/project2", "ls /home/me/project2"),  # another directory: kept
    ]:
        runner = ScriptedRunner([answer])
        _events, done = _run(runner, paths, "find python files here", "zero-shot", context=here)
        assert done.texts == [expected]
    # the request names the path: the user asked for it
    runner = ScriptedRunner(["ls /home/me/proj"])
    _events, done = _run(runner, paths, "list /home/me/proj", "zero-shot", context=here)
    assert done.texts == ["ls /home/me/proj"]


def test_the_prompt_says_dot_not_the_absolute_cwd(tmp_path: Path) -> None:
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    runner = ScriptedRunner(["ls"])
    _run(runner, paths, "list files here", "zero-shot", context={"cwd": "/home/me/proj"})
    _run(runner, paths, "list files here", "zero-shot", context={"cwd": "/srv/other"})
    assert "/home/me/proj" not in runner.prompts[0]
    assert "The current directory is `.`" in runner.prompts[0]
    assert runner.prompts[0] == runner.prompts[1]  # one system turn in every directory


def test_eval_counts_answers_that_leak_the_cwd() -> None:
    from shellfish.eval.run import Item, Report

    def item(request: str, prediction: str) -> Item:
        return Item(request, "ls", prediction, 0.0, False, False, 0.1)

    report = Report(
        "zero-shot",
        "m",
        [item("list here", "ls /home/me/proj"), item("list /home/me/proj", "ls /home/me/proj")],
        cwd="/home/me/proj",
    )
    report.items.append(item("list here", "ls ."))
    assert report.summary()["cwd_leaks"] == 1
    assert "cwd_leaks" not in Report("full", "m", report.items).summary()


def test_no_index_still_suggests_with_a_status(tmp_path: Path) -> None:
    runner = ScriptedRunner(["ls"])
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    events, done = _run(runner, paths, "list", mode="full")
    assert any(isinstance(e, Status) and "knowledge build" in e.message for e in events)
    assert done.texts == ["ls"]


def test_a_broken_index_line_still_suggests_with_a_status(tmp_path: Path) -> None:
    """A line of the index broken after it was built (parsed only when a search reads it)
    costs the retrieval, not the suggestion."""
    nl, cm = tmp_path / "p.nl", tmp_path / "p.cm"
    nl.write_text("count lines in a file\nfrobnicate all hidden files\nshow the disk usage\n")
    cm.write_text("wc -l file\nfrob -a .\ndu -sh .\n")
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path / "home")})
    options = BuildOptions(path_value="", manpath=[], history_files=[], pairs=(nl, cm))
    build_index(paths.knowledge, options)
    examples = paths.knowledge / "examples.jsonl"
    lines = examples.read_text().splitlines()
    assert len(lines) == 3 and "frob -a ." in lines[1]
    examples.write_text("\n".join([lines[0], '{"id": "pair:1", "kind": "pa', lines[2]]) + "\n")
    runner = ScriptedRunner(["frob -a ."])
    events, done = _run(runner, paths, "frobnicate hidden files", mode="full")
    status = [e.message for e in events if isinstance(e, Status)]
    assert any("knowledge index unusable" in m and "line 2" in m for m in status), status
    assert done.texts == ["frob -a ."]


def test_fix_prompt_carries_the_failed_command(tmp_path: Path) -> None:
    runner = ScriptedRunner(["git push origin main"])
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    _events, done = _run(runner, paths, "git psuh origin main", mode="zero-shot", task="fix")
    assert "This command failed: git psuh origin main" in runner.prompts[0]
    assert done.texts == ["git push origin main"]


def test_bad_requests(tmp_path: Path) -> None:
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    with pytest.raises(UsageError, match="empty"):
        _run(ScriptedRunner(["ls"]), paths, "   ")
    with pytest.raises(UsageError, match="mode"):
        _run(ScriptedRunner(["ls"]), paths, "list", mode="bogus")


def test_flan_template_gets_a_flat_prompt(tmp_path: Path) -> None:
    runner = ScriptedRunner(["ls"], template="flan")
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    _run(runner, paths, "list files", mode="zero-shot")
    assert runner.prompts[0].endswith("Request: list files\nCommand:")


def test_rank_candidates_weighs_problems() -> None:
    from shellfish.suggest.candidates import Candidate
    from shellfish.suggest.ranking import problem_penalty, rank_candidates

    assert problem_penalty([]) == 0.0
    assert problem_penalty(["does not parse in zsh: parse error near `|'"]) == 2.0
    missing = problem_penalty(["rsync: command not found on this machine"])
    flag = problem_penalty(["frob: unknown flag --x (not in the local man page / --help)"])
    assert 0 < flag < missing < 2.0

    def ranked(model_problems: list[str], weight: float = 1.0) -> list[str]:
        model = Candidate("mdl x", "model", 0, valid=not model_problems, problems=model_problems)
        retrieved = Candidate("ret x", "retrieved", 0, weight=weight)
        cands = [model, retrieved]
        rank_candidates(cands)
        return [c.command for c in cands]

    assert ranked([]) == ["mdl x", "ret x"]  # a tie goes to the model's clean answer
    assert ranked(["mdl: command not found on this machine"]) == ["ret x", "mdl x"]
    assert ranked(["does not parse in zsh: x"]) == ["ret x", "mdl x"]
    # an undocumented flag is weak evidence: it decides a tie, not against a weaker neighbour
    unknown_flag = ["mdl: unknown flag -q (not in the local man page / --help)"]
    assert ranked(unknown_flag)[0] == "ret x"
    assert ranked(unknown_flag, weight=0.7)[0] == "mdl x"


def test_request_similarity() -> None:
    from shellfish.suggest.ranking import request_similarity

    assert request_similarity("Find all PHP files here", "find all php files here") == 1.0
    assert request_similarity("list files", "") == 0.0
    assert 0.0 < request_similarity("find php files", "find python files") < 0.6


def test_programs_with_more_votes_win_and_the_model_leads_its_group() -> None:
    from shellfish.suggest.candidates import Candidate
    from shellfish.suggest.ranking import rank_candidates

    def ranked(model: str, *retrieved: tuple[str, float]) -> list[Candidate]:
        # neighbours asked in similar words: evidence enough to outvote the model
        cands = [Candidate(model, "model", 0, certainty=0.9)] + [
            Candidate(cmd, "retrieved", i, weight=w, similarity=0.6)
            for i, (cmd, w) in enumerate(retrieved)
        ]
        rank_candidates(cands)
        return cands

    # two neighbours agree on `find | xargs rm` against the model's lone `rm`
    out = ranked(
        "rm *.tmp", ("find . -name '*.tmp' | xargs rm", 1.0), ("find -name x | xargs rm -f", 0.5)
    )
    assert out[0].command == "find . -name '*.tmp' | xargs rm"
    assert out[0].confidence == pytest.approx(1.5 / 2.5)  # its share of the vote
    # the model agrees with the best-supported programs: its own arguments win the group
    out = ranked("find /tmp -name '*.o' | xargs rm", ("find . -name '*.tmp' | xargs rm", 1.0))
    assert out[0].source == "model"
    assert out[0].confidence == pytest.approx((1.0 + 0.9) / 2)  # share and certainty
    # a weak neighbour does not outvote the model
    assert ranked("ls -a", ("frob -a .", 0.3))[0].command == "ls -a"


def test_a_retrieved_command_outvotes_the_model_only_with_evidence() -> None:
    from shellfish.suggest.candidates import Candidate
    from shellfish.suggest.ranking import MIN_RETRIEVED_SIMILARITY, rank_candidates

    def first(similarity: float, model_problems: tuple[str, ...] = ()) -> str:
        cands = [
            Candidate("mkdir /tmp/foo", "model", 0, certainty=0.9, problems=list(model_problems)),
            Candidate("find /tmp/foo -path /tmp/foo/bar -print", "retrieved", 0, weight=1.0),
            Candidate("find /tmp -name foo", "retrieved", 1, weight=0.5),
        ]
        cands[2].similarity = similarity
        rank_candidates(cands)
        return cands[0].command

    # "create directory /tmp/foo": two unrelated neighbours outvote the model on `find`, but
    # neither was asked in words like these: the model's clean answer stays first
    assert first(similarity=0.2) == "mkdir /tmp/foo"
    # one neighbour of the winning group was asked in similar words: the vote stands
    assert first(similarity=MIN_RETRIEVED_SIMILARITY).startswith("find")
    # the model's answer has a problem of its own: no reason to prefer it, the vote stands
    assert first(0.2, ("mkdir: command not found on this machine",)).startswith("find")


def test_a_tuned_model_keeps_its_clean_answer_first_whatever_the_evidence() -> None:
    """retrieved_may_win=False (a model tuned on the retrieved pairs): evidence no longer lets
    a retrieved command beat the model's clean answer; an answer with problems still loses."""
    from shellfish.suggest.candidates import Candidate
    from shellfish.suggest.ranking import rank_candidates

    def first(model_problems: tuple[str, ...] = ()) -> str:
        cands = [
            Candidate("mkdir /tmp/foo", "model", 0, certainty=0.9, problems=list(model_problems)),
            Candidate("find /tmp/foo -print", "retrieved", 0, weight=1.0, similarity=0.9),
            Candidate("find /tmp -name foo", "retrieved", 1, weight=0.5, similarity=0.9),
        ]
        rank_candidates(cands, retrieved_may_win=False)
        return cands[0].command

    assert first() == "mkdir /tmp/foo"
    assert first(("mkdir: command not found on this machine",)).startswith("find")


def test_a_retrieved_command_without_evidence_does_not_replace_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the whole path: BM25 finds training commands that share words (tmp, foo, directory)
    # with the request but were asked for something else
    nl, cm = tmp_path / "p.nl", tmp_path / "p.cm"
    nl.write_text(
        "search below the tmp foo directory tree for paths matching bar and print them\n"
        "list every entry named foo found anywhere under tmp including directory entries\n"
        "print names of directory entries in tmp foo recursively that were modified today\n"
    )
    cm.write_text(
        "find /tmp/foo -path /tmp/foo/bar -print\nfind /tmp -name foo\nfind /tmp/foo -mtime 0\n"
    )
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path / "home")})
    build_index(
        paths.knowledge,
        BuildOptions(path_value="", manpath=[], history_files=[], pairs=(nl, cm)),
    )
    runner = CallScriptedRunner(["mkdir /tmp/foo", " /tmp/foo -print"])
    _events, done = _run(runner, paths, text="create directory /tmp/foo")
    assert done.texts[0] == "mkdir /tmp/foo", done.extra["candidates"]
    assert len(runner.prompts) == 1  # no rewrite of a retrieved winner was needed


def test_the_vote_reads_programs_with_the_shell_parser() -> None:
    from shellfish.suggest.ranking import vote_group

    # wrappers are not programs of their own: `sudo chown` and `chown` vote together
    assert vote_group("sudo -u bob chown root x") == vote_group("chown bob y") == ("chown",)
    assert vote_group("timeout 5 frob -a .") == ("frob",)
    # a find expression's `\(` groups and -exec commands; substitutions; xargs' command
    assert vote_group("find . \\( -name a -o -name b \\) -exec rm {} \\;") == ("find", "rm")
    assert vote_group("cp `which python3` env/bin/") == ("cp", "which")
    assert vote_group("for f in *.txt; do wc -l $f; done") == ("wc",)
    assert vote_group("find . -print0 | xargs -0 -I{} mv {} /tmp") == ("find", "xargs", "mv")


def test_a_rewrite_starts_only_with_a_plain_program_word() -> None:
    from shellfish.suggest.pipeline import _leading_program

    assert _leading_program("frob -a .") == "frob"
    assert _leading_program("frob") == "frob"
    assert _leading_program("du -sh * | sort -h") == "du"
    for command in (
        "sudo frob -a",
        "X=1 frob",
        "/usr/bin/frob -a",
        "'frob' -a",
        "if x; then y; fi",
    ):
        assert _leading_program(command) == "", command


def test_duplicate_candidates_pool_their_votes() -> None:
    from shellfish.suggest.candidates import Candidate, dedupe
    from shellfish.suggest.ranking import rank_candidates

    cands = dedupe(
        [
            Candidate("ls -a", "model", 0),
            Candidate("du -sh .", "retrieved", 0, weight=0.8, similarity=0.6),
            Candidate("du  -sh .", "retrieved", 1, weight=0.4, similarity=0.6),
        ]
    )
    assert [c.command for c in cands] == ["ls -a", "du -sh ."]
    rank_candidates(cands)
    assert cands[0].command == "du -sh ."


def test_split_vote_warns_of_low_confidence(world) -> None:
    text = "frobnicate all the hidden files here"
    # the model and the indexed neighbour ("frob -a .") agree on the program: confident
    _events, done = _run(ScriptedRunner(["frob ~"]), world, text=text)
    assert done.extra["candidates"][0]["confidence"] == 1.0
    assert not any(w.startswith("low confidence") for w in done.extra["warnings"])
    # they disagree: half the vote each, and the answer says so
    _events, done = _run(ScriptedRunner(["ls ~"]), world, text=text)
    assert done.extra["candidates"][0]["confidence"] < 0.7
    assert any(w.startswith("low confidence") for w in done.extra["warnings"])


def test_model_answer_leads_a_neighbour_with_the_same_program(world) -> None:
    # the indexed pair is "frobnicate all hidden files here" -> "frob -a ."
    runner = ScriptedRunner(["frob ~"])
    _events, done = _run(runner, world, text="frobnicate all the hidden files here")
    assert done.texts == ["frob ~", "frob -a ."]  # same program: the model's own arguments
    retrieved = done.extra["candidates"][1]
    assert retrieved["source"] == "retrieved" and retrieved["similarity"] >= 0.6


class CallScriptedRunner(ScriptedRunner):
    """One scripted answer per `generate` call (the first call gets texts[0], and so on)."""

    def generate(
        self, prompt: str, config: GenerationConfig, *, cancel: threading.Event | None = None
    ) -> Iterator[Event]:
        self.prompts.append(prompt)
        self.configs.append(config)
        text = self.texts[len(self.prompts) - 1]
        yield Token(text, index=0)
        yield Done(texts=[text], model="scripted", completion_tokens=5)


def test_a_winning_retrieved_command_is_rewritten_with_this_requests_arguments(world) -> None:
    # the model's own program is missing here, so the indexed "frob -a ." wins the vote;
    # the model is then asked again, its answer starting with `frob`
    runner = CallScriptedRunner(["nosuchprog_zz -a", " -a ~/notes"])
    _events, done = _run(runner, world, text="frobnicate the hidden files in notes")
    assert runner.prompts[1] == runner.prompts[0] + "frob"
    assert done.texts[0] == "frob -a ~/notes"
    assert "frob -a ." in done.texts and done.texts[-1] == "nosuchprog_zz -a"
    assert done.extra["candidates"][0]["source"] == "model"


def test_a_rewrite_with_other_programs_is_dropped(world) -> None:
    runner = CallScriptedRunner(["nosuchprog_zz -a", " -a . | wc -l"])
    _events, done = _run(runner, world, text="frobnicate the hidden files in notes")
    assert len(runner.prompts) == 2
    assert done.texts == ["frob -a .", "nosuchprog_zz -a"]


def test_an_answer_cut_at_the_token_limit_says_so(world) -> None:
    """Issue 14 item 9: an answer stopped by the token limit is never shown as if whole."""

    class CutRunner(ScriptedRunner):
        def generate(self, prompt, config, *, cancel=None):  # type: ignore[no-untyped-def]
            for event in super().generate(prompt, config, cancel=cancel):
                if isinstance(event, Done):
                    event = Done(
                        texts=event.texts,
                        model="scripted",
                        completion_tokens=48,
                        finish_reason="length",
                    )
                yield event

    for mode in ("zero-shot", "full"):
        _, done = _run(CutRunner(["find . -name '*.py' -exec grep -l foo"]), world, mode=mode)
        assert any("stopped at 48 tokens" in w for w in done.extra["warnings"]), mode
    _, whole = _run(ScriptedRunner(["ls -la"]), world, mode="zero-shot")
    assert not any("stopped at" in w for w in whole.extra["warnings"])
