from __future__ import annotations

import pytest

from shellfish.errors import UsageError
from shellfish.request import TaskRequest
from shellfish.tasks.prompts import build_prompt, flan_prompt, messages_for


def test_flan_translate_prefix() -> None:
    request = TaskRequest("translate", "How are you?", options={"to": "de"})
    assert flan_prompt(request) == "translate English to German: How are you?"
    assert build_prompt(request, "flan") == "translate English to German: How are you?"


def test_instruct_translate_names_both_languages() -> None:
    request = TaskRequest("translate", "Bonjour", options={"from": "fr", "to": "en"})
    system, user = messages_for(request)
    assert "from French to English" in system["content"]
    assert user == {"role": "user", "content": "Bonjour"}


def test_unknown_language_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown language 'xx'"):
        messages_for(TaskRequest("translate", "hi", options={"to": "xx"}))


def test_ask_puts_the_context_before_the_question() -> None:
    request = TaskRequest("ask", "Who wrote it?", options={"context": "It was written by Ada."})
    user = messages_for(request)[-1]["content"]
    assert user.index("Ada") < user.index("Who wrote it?")
    assert flan_prompt(request) == "question: Who wrote it? context: It was written by Ada."


def test_prompt_task_is_passed_through_untouched() -> None:
    assert build_prompt(TaskRequest("prompt", "Once upon a time"), "chatml") == "Once upon a time"


def test_request_round_trips_and_rejects_bad_shapes() -> None:
    request = TaskRequest(
        "suggest", "list files", model="m", generation={"n": 2}, context={"cwd": "/"}
    )
    assert TaskRequest.from_dict(request.to_dict()) == request
    with pytest.raises(ValueError, match="unknown task"):
        TaskRequest.from_dict({"task": "nope", "text": "x"})
    with pytest.raises(ValueError, match="'text' must be a string"):
        TaskRequest.from_dict({"task": "suggest", "text": 3})
