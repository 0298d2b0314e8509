"""Translation with a check: an answer that echoes the source or is in the wrong language is
retried with a stricter prompt, then with a sample.

Small instruct models often hand the English back unchanged (about one sentence in nine into
German with Qwen2.5-Coder 0.5B). The check is cheap and needs no model: the share of the
answer's words that are frequent function words of each language says which language it is
in, and the overlap of its words with the source's says whether it is an echo. Attempts are
held back until one passes, so a rejected answer is never shown.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from shellfish.events import Done, Event, Status, Token
from shellfish.request import TaskRequest

# Frequent function words, which carry a language's fingerprint even in short sentences.
FUNCTION_WORDS: dict[str, frozenset[str]] = {
    lang: frozenset(words.split())
    for lang, words in {
        "en": "the a an and or of to in on for with is are was were be been this that these it "
        "not by from at as have has had will would which who their they we you he she",
        "de": "der die das den dem des ein eine einen einem einer und oder nicht ist sind war "
        "waren wird werden zu im in mit von für auf dass es sie er wir ich auch sich bei aus "
        "nach über wie noch nur",
        "fr": "le la les un une des et ou de du au aux en dans pour avec est sont était ne pas "
        "que qui il elle ils nous vous sur par ce cette ces se sa son leurs plus",
        "es": "el la los las un una unos y o de del en para con es son era no que se por su "
        "sus al lo como pero más este esta",
        "it": "il lo la gli le un una e o di del della in per con è sono non che si da su al "
        "nel come anche più questo questa",
        "pt": "o a os as um uma e ou de do da dos das em no na para com é são não que se por "
        "ao como mais este esta",
        "nl": "de het een en of van in op voor met is zijn was niet dat die dit er te ook "
        "wordt worden naar bij uit als",
        "ro": "și sau de la în pe pentru cu este sunt nu că care se un o al ale din mai ca "
        "acest această lui",
    }.items()
}

# One sentence in every language: a one-shot example for the stricter prompt.
EXAMPLE: dict[str, str] = {
    "en": "The new station will open next year.",
    "de": "Der neue Bahnhof wird im nächsten Jahr eröffnet.",
    "fr": "La nouvelle gare ouvrira l'année prochaine.",
    "es": "La nueva estación abrirá el próximo año.",
    "it": "La nuova stazione aprirà il prossimo anno.",
    "pt": "A nova estação abrirá no próximo ano.",
    "nl": "Het nieuwe station gaat volgend jaar open.",
    "ro": "Noua gară se va deschide anul viitor.",
}

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def language_scores(text: str) -> dict[str, float]:
    """Share of the words of `text` that are function words of each language."""
    words = _words(text)
    if not words:
        return {lang: 0.0 for lang in FUNCTION_WORDS}
    return {
        lang: sum(w in vocab for w in words) / len(words) for lang, vocab in FUNCTION_WORDS.items()
    }


def untranslated(source: str, answer: str, source_lang: str, target_lang: str) -> str | None:
    """Why `answer` is not a translation of `source` into `target_lang`, or None when it looks
    like one. Short answers (under four words) are only checked for a verbatim echo."""
    a, s = " ".join(_words(answer)), " ".join(_words(source))
    if not a:
        return "the answer is empty" if s else None
    if a == s and source_lang != target_lang and len(s) > 3:
        return "the answer repeats the source"
    words = _words(answer)
    if len(words) < 4 or source_lang == target_lang:
        return None
    source_words = set(_words(source))
    overlap = sum(w in source_words for w in words) / len(words)
    scores = language_scores(answer)
    best = max(scores, key=lambda lang: scores[lang])
    if overlap >= 0.6 and scores.get(source_lang, 0.0) > scores.get(target_lang, 0.0):
        return "the answer repeats most of the source"
    if (
        best != target_lang
        and scores[best] >= 0.15
        and scores[best] > 2 * scores.get(target_lang, 0.0)
    ):
        return f"the answer looks like {best}, not {target_lang}"
    return None


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def copies_example(source: str, answer: str, source_lang: str, target_lang: str) -> str | None:
    """Why `answer` looks copied from the one-shot example, or None. A small model sometimes
    pastes a phrase of the example's translation ("im nächsten Jahr eröffnet") into an
    unrelated sentence; a source that shares a phrase with the example may share it too."""
    if source_lang not in EXAMPLE or target_lang not in EXAMPLE:
        return None
    example_target = _ngrams(_words(EXAMPLE[target_lang]), 3)
    if not example_target & _ngrams(_words(answer), 3):
        return None
    # Phrases the source shares with the example's source, function words left out ("the new").
    function = FUNCTION_WORDS.get(source_lang, frozenset())
    shared = _ngrams(_words(EXAMPLE[source_lang]), 2) & _ngrams(_words(source), 2)
    if any(not (set(pair) & function) for pair in shared):
        return None
    return "the answer copies the prompt's example"


def strict_messages(request: TaskRequest, source: str, target: str) -> list[dict[str, str]]:
    """The stricter prompt: named languages in the user turn and a one-shot example."""
    src_lang, tgt_lang = request.options.get("from") or "en", request.options.get("to") or "de"
    system = (
        f"You are a professional translator from {source} into {target}. Every reply is "
        f"written entirely in {target}; never copy the {source} text."
    )

    def user(text: str) -> str:
        return f"Translate this {source} text into {target}:\n{text}"

    messages = [{"role": "system", "content": system}]
    if src_lang in EXAMPLE and tgt_lang in EXAMPLE:
        messages += [
            {"role": "user", "content": user(EXAMPLE[src_lang])},
            {"role": "assistant", "content": EXAMPLE[tgt_lang]},
        ]
    messages.append({"role": "user", "content": user(request.text)})
    return messages


def _collect(events: Iterator[Event]) -> tuple[list[Event], Done | None]:
    kept: list[Event] = []
    done = None
    for event in events:
        if isinstance(event, Done):
            done = event
        elif isinstance(event, (Token, Status)):
            kept.append(event)
    return kept, done


def run_translate(
    request: TaskRequest,
    runner: Any,
    prompt: str,
    config: Any,
    *,
    cancel: threading.Event | None = None,
    max_attempts: int = 3,
) -> Iterator[Event]:
    """Translate with up to `max_attempts` tries: the plain prompt, a stricter one-shot prompt
    (chat models), then a sample of it. Yields the accepted attempt's events; its Done carries
    `extra["retried"]` (attempts after the first) and `extra["check"]` (why each was refused)."""
    from shellfish.tasks.prompts import language_name

    source_lang = str(request.options.get("from") or "en").lower()
    target_lang = str(request.options.get("to") or "de").lower()
    source, target = language_name(source_lang), language_name(target_lang)
    template = runner.info.template
    chat = template not in ("flan", "plain")
    attempts: list[tuple[str, Any]] = [(prompt, config)]
    if chat:
        from shellfish.engine.templates import render_chat

        strict = render_chat(
            template,
            strict_messages(request, source, target),
            tokenizer=getattr(runner, "tokenizer", None),
        )
        attempts.append((strict, config))
        sample_prompt = strict
    else:
        sample_prompt = prompt
    if config.temperature == 0 and config.n == 1:
        attempts.append((sample_prompt, replace(config, temperature=0.7, top_p=0.9, seed=0)))
    attempts = attempts[:max_attempts]

    reasons: list[str] = []
    best: tuple[float, list[Event], Done] | None = None
    for number, (text, cfg) in enumerate(attempts):
        events, done = _collect(runner.generate(text, cfg, cancel=cancel))
        if done is None:
            return
        reason = untranslated(request.text, done.text, source_lang, target_lang)
        if reason is None and text != prompt:  # the one-shot prompt carries the example
            reason = copies_example(request.text, done.text, source_lang, target_lang)
        if reason is None or done.finish_reason == "cancelled" or config.n > 1:
            yield from events
            yield _mark(done, number, reasons)
            return
        reasons.append(reason)
        score = _plausibility(request.text, done.text, target_lang)
        if "example" in reason:
            score -= 2.0  # last choice: invented content is worse than an untranslated sentence
        if best is None or score > best[0]:
            best = (score, events, done)
        if number + 1 < len(attempts):
            yield Status(f"{reason}; trying again", {"retry": number + 1, "reason": reason})
    assert best is not None
    _score, events, done = best
    yield from events
    yield _mark(done, len(attempts) - 1, reasons)


def _plausibility(source: str, answer: str, target_lang: str) -> float:
    """How much a refused answer still looks like a translation: target-language words count
    for it, words copied from the source against it."""
    words = _words(answer)
    if not words:
        return -2.0
    source_words = set(_words(source))
    copied = sum(w in source_words for w in words) / len(words)
    return language_scores(answer).get(target_lang, 0.0) - copied


def _mark(done: Done, retried: int, reasons: list[str]) -> Done:
    extra = dict(done.extra)
    if retried:
        extra["retried"] = retried
        extra["check"] = list(reasons)
    return replace(done, extra=extra)
