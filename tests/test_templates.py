# ruff: noqa: E501  (the real jinja templates are kept verbatim, line by line)
"""Chat templates against transformers' apply_chat_template on the real jinja templates."""

from __future__ import annotations

from typing import Any

import pytest
from generated_models import needs_extra

from shellfish.engine.templates import default_system_prompt, render_chat
from shellfish.errors import ModelError, UsageError

# Qwen2.5 (and Qwen2.5-Coder) Instruct tokenizer_config.json "chat_template".
QWEN25_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    '    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.'
    '\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}\n'
    "    {%- for tool in tools %}\n"
    '        {{- "\\n" }}\n'
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and '
    'arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, '
    '\\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n'
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
    '(message.role == "assistant" and not message.tool_calls) %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    '    {%- elif message.role == "assistant" %}\n'
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    '            {{- \'\\n<tool_call>\\n{"name": "\' }}\n'
    "            {{- tool_call.name }}\n"
    '            {{- \'", "arguments": \' }}\n'
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    '        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}\n'
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n'
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

# SmolLM2-Instruct tokenizer_config.json "chat_template" (real newlines inside the literals).
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)

CONVERSATIONS = [
    [{"role": "user", "content": "list files by size"}],
    [
        {"role": "system", "content": "You translate requests into one zsh command."},
        {"role": "user", "content": "find big files\nover 100M"},
    ],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "count lines"},
        {"role": "assistant", "content": "wc -l file.txt"},
        {"role": "user", "content": "and words?"},
    ],
    [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "ünïcode ✓ 'quotes' {braces}"},
    ],
]


class TemplateTokenizer:
    """The bit of a shellfish Tokenizer that render_chat looks at."""

    def __init__(self, template: str) -> None:
        self.chat_template = template
        self.bos_token_id = None
        self.eos_token_id = None


def hf_tokenizer(template: str) -> Any:
    transformers = needs_extra("transformers")
    from tokenizers import Tokenizer, models

    backend = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=backend)
    tok.chat_template = template
    return tok


@pytest.mark.parametrize(
    "template", [QWEN25_TEMPLATE, SMOLLM2_TEMPLATE], ids=["qwen2.5", "smollm2"]
)
@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chatml_equals_transformers(
    template: str, conversation: int, add_generation_prompt: bool
) -> None:
    messages = CONVERSATIONS[conversation]
    want = hf_tokenizer(template).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    got = render_chat(
        "chatml",
        messages,
        add_generation_prompt=add_generation_prompt,
        tokenizer=TemplateTokenizer(template),
    )
    assert got == want
    named = "qwen2.5" if template is QWEN25_TEMPLATE else "smollm2"
    assert render_chat(named, messages, add_generation_prompt=add_generation_prompt) == want
    needs_extra("jinja2")
    jinja = render_chat(
        "jinja",
        messages,
        add_generation_prompt=add_generation_prompt,
        tokenizer=TemplateTokenizer(template),
    )
    assert jinja == want


def test_default_system_prompts_are_read_from_the_templates() -> None:
    assert default_system_prompt(QWEN25_TEMPLATE) == (
        "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    )
    assert default_system_prompt(SMOLLM2_TEMPLATE) == (
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    )
    assert default_system_prompt("{{ messages }}") is None
    assert default_system_prompt(None) is None


def test_chatml_without_a_tokenizer_adds_no_system_turn() -> None:
    text = render_chat("chatml", [{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_plain_and_flan() -> None:
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "do it"}]
    assert render_chat("plain", messages) == "sys\n\ndo it"
    assert render_chat("flan", messages) == "do it"


def test_bad_template_and_messages() -> None:
    with pytest.raises(ModelError, match="unknown prompt template"):
        render_chat("vicuna", [{"role": "user", "content": "x"}])
    with pytest.raises(UsageError):
        render_chat("chatml", [])
    with pytest.raises(UsageError):
        render_chat("chatml", [{"role": "user"}])
    with pytest.raises(ModelError, match="chat_template"):
        render_chat("jinja", [{"role": "user", "content": "x"}], tokenizer=TemplateTokenizer(""))
