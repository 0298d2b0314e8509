"""Recurrent (LSTM / GRU) character models: state carried step to step, descriptor checks."""

from __future__ import annotations

import json
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from generated_models import load_builder, needs_extra

from shellfish.engine import recurrent
from shellfish.engine.base import GenerationConfig, ModelInfo
from shellfish.errors import ModelError, UsageError
from shellfish.events import Done, Token

PROMPT = "ls -la /tmp\n"


def _load(path: Path) -> recurrent.RecurrentRunner:
    info = ModelInfo(
        name="char-rnn",
        family="recurrent",
        layout="descriptor",
        path=str(path),
        context_length=4096,
    )
    return recurrent.load(path, info, providers=["CPUExecutionProvider"], threads=1)


def _torch_model(models: Path, kind: str) -> Any:
    torch = needs_extra("torch")

    builder = load_builder("build_recurrent.py")
    model = builder.CharRNN(kind)
    model.load_state_dict(torch.load(models / kind / "model.pt"))
    return model.eval(), builder


def _torch_generate(
    models: Path, kind: str, prompt: str, steps: int, carry: bool, seed: int | None = None
) -> str:
    """Step-by-step torch reference; with carry=False the state is reset before every step.

    Greedy without a seed; with a seed it draws with shellfish's sampling functions from the
    torch logits (temperature 1), so equal text means equal logits step after step.
    """
    torch = needs_extra("torch")

    from shellfish.engine.sampling import sample_next

    rng = np.random.default_rng(seed)

    model, builder = _torch_model(models, kind)
    vocab = builder.VOCABULARY
    zeros = torch.zeros(builder.LAYERS, 1, builder.HIDDEN)
    state: tuple = (zeros, zeros) if kind == "lstm" else (zeros,)
    out = []
    with torch.no_grad():
        for ch in prompt:
            logits, *state = model(torch.tensor([[vocab.index(ch)]]), *state)
        for _ in range(steps):
            row = logits[0, -1].numpy()
            token = (
                int(row.argmax()) if seed is None else sample_next(row, rng=rng, temperature=1.0)
            )
            out.append(vocab[token])
            if not carry:
                state = [zeros, zeros] if kind == "lstm" else [zeros]
            logits, *state = model(torch.tensor([[token]]), *state)
    return "".join(out)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_greedy_equals_step_by_step_torch_and_needs_the_state(rnn_models: Path, kind: str) -> None:
    runner = _load(rnn_models / kind)
    events = list(runner.generate(PROMPT, GenerationConfig(max_new_tokens=40, temperature=0.0)))
    done = events[-1]
    assert isinstance(done, Done)
    assert "".join(e.text for e in events if isinstance(e, Token)) == done.text
    assert done.text == _torch_generate(rnn_models, kind, PROMPT, 40, carry=True)
    assert done.completion_tokens == 40 and done.prompt_tokens == len(PROMPT)
    sampled = list(
        runner.generate(PROMPT, GenerationConfig(max_new_tokens=60, temperature=1.0, seed=5))
    )[-1]
    assert isinstance(sampled, Done)
    assert sampled.text == _torch_generate(rnn_models, kind, PROMPT, 60, carry=True, seed=5)
    assert sampled.text != _torch_generate(rnn_models, kind, PROMPT, 60, carry=False, seed=5)


def test_descriptor_defaults_and_wiring(rnn_models: Path) -> None:
    runner = _load(rnn_models / "lstm" / "shellfish-recurrent.json")  # the file works too
    assert (runner.h_in, runner.c_in) == (["h"], ["c"])
    assert runner.info.defaults.temperature == 0.8 and runner.info.defaults.top_p == 0.95
    assert runner.count_tokens("abc") == 3


def test_seeded_sampling_is_reproducible(rnn_models: Path) -> None:
    runner = _load(rnn_models / "lstm")
    config = GenerationConfig(max_new_tokens=30, temperature=1.0, top_p=0.95, seed=11, n=2)
    first = list(runner.generate(PROMPT, config))[-1]
    again = list(runner.generate(PROMPT, config))[-1]
    assert isinstance(first, Done) and isinstance(again, Done)
    assert first.texts == again.texts and len(first.texts) == 2
    assert first.texts[0] != first.texts[1]  # each sample has its own stream
    other = list(runner.generate(PROMPT, config.merged(seed=12)))[-1]
    assert isinstance(other, Done) and other.texts != first.texts


def test_stop_sequence_and_cancel(rnn_models: Path) -> None:
    runner = _load(rnn_models / "lstm")
    full = list(runner.generate(PROMPT, GenerationConfig(max_new_tokens=30)))[-1]
    assert isinstance(full, Done)
    stop = full.text[5:7]
    cut = list(runner.generate(PROMPT, GenerationConfig(max_new_tokens=30, stop=(stop,))))[-1]
    assert isinstance(cut, Done)
    assert cut.text == full.text[: full.text.index(stop)] and cut.finish_reason == "stop"
    cancel = threading.Event()
    cancel.set()
    stopped = list(runner.generate(PROMPT, GenerationConfig(max_new_tokens=30), cancel=cancel))
    assert isinstance(stopped[-1], Done) and stopped[-1].finish_reason == "cancelled"
    assert stopped[-1].text == ""


# --- bad inputs ---


def _copy(rnn_models: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "lstm"
    shutil.copytree(rnn_models / "lstm", dest)
    return dest


def _edit_descriptor(path: Path, **changes: Any) -> None:
    file = path / "shellfish-recurrent.json"
    data = json.loads(file.read_text())
    data.update(changes)
    file.write_text(json.dumps(data))


def test_wrong_vocabulary_size_names_both_numbers(rnn_models: Path, tmp_path: Path) -> None:
    path = _copy(rnn_models, tmp_path)
    _edit_descriptor(path, vocabulary="abcdef")
    with pytest.raises(ModelError) as err:
        _load(path)
    text = str(err.value)
    size = len(load_builder("build_recurrent.py").VOCABULARY)
    assert "6 characters" in text and f"{size} logits" in text and "\n" not in text


def test_unknown_characters_and_empty_prompt(rnn_models: Path) -> None:
    runner = _load(rnn_models / "lstm")
    with pytest.raises(UsageError) as err:
        list(runner.generate("héllo ✓", GenerationConfig()))
    assert "'é'" in str(err.value) and "'✓'" in str(err.value)
    with pytest.raises(UsageError):
        list(runner.generate("", GenerationConfig()))
    with pytest.raises(UsageError):
        list(runner.generate("ls", GenerationConfig(num_beams=2)))


def test_missing_and_truncated_onnx(rnn_models: Path, tmp_path: Path) -> None:
    path = _copy(rnn_models, tmp_path)
    data = (path / "model.onnx").read_bytes()
    (path / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as err:
        _load(path)
    assert "corrupt" in str(err.value)
    (path / "model.onnx").unlink()
    with pytest.raises(ModelError) as err:
        _load(path)
    assert "missing" in str(err.value)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{broken", "cannot read"),
        ('{"format": "other"}', "not a shellfish-recurrent"),
        (None, "missing"),
    ],
)
def test_bad_descriptor(tmp_path: Path, content: str | None, needle: str) -> None:
    if content is not None:
        (tmp_path / "shellfish-recurrent.json").write_text(content)
    with pytest.raises(ModelError) as err:
        _load(tmp_path)
    assert needle in str(err.value)


def test_descriptor_type_must_fit_the_graph(rnn_models: Path, tmp_path: Path) -> None:
    path = _copy(rnn_models, tmp_path)
    _edit_descriptor(path, type="gru")
    with pytest.raises(ModelError) as err:
        _load(path)
    assert "gru" in str(err.value)
    _edit_descriptor(path, type="transformer")
    with pytest.raises(ModelError):
        _load(path)


def test_one_hot_graphs_are_supported(tmp_path: Path) -> None:
    """A graph that takes one-hot floats instead of indices works the same way."""
    torch = needs_extra("torch")
    from torch import nn

    vocab = "ab\n "

    class OneHot(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(len(vocab), 8, batch_first=True)
            self.head = nn.Linear(8, len(vocab))

        def forward(self, x: Any, h: Any) -> Any:
            y, h_out = self.rnn(x, h)
            return self.head(y), h_out

    torch.manual_seed(0)
    model = OneHot().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, len(vocab)), torch.zeros(1, 1, 8)),
            str(tmp_path / "model.onnx"),
            input_names=["input", "h"],
            output_names=["logits", "h_out"],
            dynamo=False,
            opset_version=17,
            dynamic_axes={"input": {1: "seq"}, "logits": {1: "seq"}},
        )
    (tmp_path / "shellfish-recurrent.json").write_text(
        json.dumps(
            {
                "format": "shellfish-recurrent",
                "onnx": "model.onnx",
                "type": "gru",
                "vocabulary": vocab,
            }
        )
    )
    runner = _load(tmp_path)
    assert runner.one_hot
    done = list(runner.generate("ab", GenerationConfig(max_new_tokens=5)))[-1]
    h = torch.zeros(1, 1, 8)
    with torch.no_grad():
        for ch in "ab":
            logits, h = model(torch.eye(len(vocab))[[vocab.index(ch)]][None], h)
        expected = ""
        for _ in range(5):
            token = int(logits[0, -1].argmax())
            expected += vocab[token]
            logits, h = model(torch.eye(len(vocab))[[token]][None], h)
    assert isinstance(done, Done) and done.text == expected
    assert np.isfinite(runner.prime([0, 1])[0]).all()
