"""Translation retries: an echo of the source or an answer in the wrong language is refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shellfish.engine.base import GenerationConfig, ModelInfo
from shellfish.events import Done, Status, Token
from shellfish.request import TaskRequest
from shellfish.tasks.translate import language_scores, run_translate, untranslated

SOURCE = "Two sets of lights so close to one another: intentional or just a silly error?"
GERMAN = "Zwei Ampeln so nah beieinander: Absicht oder nur ein dummer Fehler?"


@dataclass
class ScriptedRunner:
    """Answers each generate call with the next scripted text; records prompts and configs."""

    answers: list[str]
    template: str = "chatml"
    calls: list[tuple[str, GenerationConfig]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.info = ModelInfo("tiny", "causal", "test", "/x", 512, template=self.template)

    def generate(self, prompt: str, config: GenerationConfig, *, cancel: Any = None):
        text = self.answers[len(self.calls)]
        self.calls.append((prompt, config))
        yield Token(text)
        yield Done([text], model="tiny")


def request(text: str = SOURCE, to: str = "de") -> TaskRequest:
    return TaskRequest("translate", text, options={"from": "en", "to": to})


def run(runner: ScriptedRunner, req: TaskRequest | None = None) -> list[Any]:
    return list(run_translate(req or request(), runner, "PROMPT", GenerationConfig()))


def test_the_check() -> None:
    assert untranslated(SOURCE, SOURCE, "en", "de") == "the answer repeats the source"
    assert untranslated(SOURCE, GERMAN, "en", "de") is None
    french = "Deux feux si proches l'un de l'autre : intention ou simple erreur de la ville ?"
    assert untranslated(SOURCE, french, "en", "de") == "the answer looks like fr, not de"
    assert untranslated(SOURCE, french, "en", "fr") is None
    partial = "Two sets of lights so close to one another: Absicht or just a silly error?"
    assert untranslated(SOURCE, partial, "en", "de") == "the answer repeats most of the source"
    # Names and numbers alone are left as they are.
    assert untranslated("Gutach", "Gutach", "en", "de") == "the answer repeats the source"
    assert untranslated("B 33", "B 33", "en", "de") is None
    assert language_scores("der Hund und die Katze")["de"] > language_scores("the dog")["de"]


def test_a_good_answer_is_shown_at_once() -> None:
    runner = ScriptedRunner([GERMAN])
    events = run(runner)
    assert [e.text for e in events if isinstance(e, Token)] == [GERMAN]
    done = events[-1]
    assert isinstance(done, Done) and "retried" not in done.extra and len(runner.calls) == 1


def test_an_echo_is_retried_with_a_stricter_prompt_and_never_shown() -> None:
    runner = ScriptedRunner([SOURCE, GERMAN])
    events = run(runner)
    assert [e.text for e in events if isinstance(e, Token)] == [GERMAN]
    assert any(isinstance(e, Status) and e.data.get("retry") == 1 for e in events)
    done = events[-1]
    assert done.text == GERMAN and done.extra["retried"] == 1
    strict_prompt = runner.calls[1][0]
    assert "into German" in strict_prompt and "Der neue Bahnhof" in strict_prompt
    assert runner.calls[1][1].temperature == 0


def test_then_a_sample_and_the_best_refused_attempt_when_all_fail() -> None:
    half = "Zwei sets of lights so close to one another: intentional or just a silly error?"
    runner = ScriptedRunner([SOURCE, SOURCE, half])
    events = run(runner)
    assert runner.calls[2][1].temperature > 0  # the third try samples
    done = events[-1]
    assert done.extra["retried"] == 2 and len(done.extra["check"]) == 3
    assert done.text == half  # an echo scores below anything else


def test_flan_models_retry_by_sampling_only() -> None:
    runner = ScriptedRunner([SOURCE, GERMAN], template="flan")
    events = run(runner)
    assert events[-1].text == GERMAN and runner.calls[1][0] == "PROMPT"
    assert runner.calls[1][1].temperature > 0


def test_an_answer_that_copies_the_example_is_refused() -> None:
    copied = "Die Ampeln in Gutach wurden im nächsten Jahr eröffnet."
    source = "The pedestrian lights in Gutach became operational on Tuesday."
    runner = ScriptedRunner(
        [source, copied, "Die Fußgängerampeln in Gutach gingen am Dienstag in Betrieb."]
    )
    events = run(runner, request(source))
    done = events[-1]
    assert done.extra["check"][1] == "the answer copies the prompt's example"
    assert done.text.startswith("Die Fußgängerampeln")
    # A source about next year may say "im nächsten Jahr".
    from shellfish.tasks.translate import copies_example

    assert copies_example("The bridge will open next year.", copied, "en", "de") is None


def test_a_copied_example_is_never_preferred_and_function_words_do_not_excuse_it() -> None:
    from shellfish.tasks.translate import copies_example

    copied = "Die neuen Ampeln wurden im nächsten Jahr eröffnet."
    source = "On Tuesday, the new pedestrian lights became operational."  # shares only "the new"
    assert copies_example(source, copied, "en", "de") == "the answer copies the prompt's example"
    half = "On Tuesday, the new pedestrian lights wurden operational."
    runner = ScriptedRunner([half, copied, copied])
    done = run(runner, request(source))[-1]
    assert done.text == half and done.extra["retried"] == 2
