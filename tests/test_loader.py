"""Layout detection and load_model: manifests, inference from files, and every bad directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shellfish.engine.loader import detect_layout, load_model
from shellfish.errors import ModelError, ModelNotFound


def copy_model(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt2", ("causal", "optimum")),
        ("gpt2-split", ("causal", "optimum-split")),
        ("gpt2-merged", ("causal", "optimum-merged")),
        ("qwen-genai", ("causal", "genai")),
        ("qwen-genai-int4", ("causal", "genai")),
    ],
)
def test_detect_causal_layouts(causal_models: Path, name: str, expected: tuple[str, str]) -> None:
    assert detect_layout(causal_models / name) == expected


def test_detect_seq2seq_and_recurrent(tmp_path: Path) -> None:
    s2s = tmp_path / "t5"
    s2s.mkdir()
    (s2s / "encoder_model.onnx").write_bytes(b"x")
    (s2s / "decoder_model.onnx").write_bytes(b"x")
    assert detect_layout(s2s) == ("seq2seq", "optimum-split")
    (s2s / "decoder_model_merged.onnx").write_bytes(b"x")
    assert detect_layout(s2s) == ("seq2seq", "optimum-merged")
    rec = tmp_path / "rnn"
    rec.mkdir()
    (rec / "shellfish-recurrent.json").write_text("{}")
    assert detect_layout(rec) == ("recurrent", "descriptor")


def test_unknown_dir_lists_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelError) as err:
        detect_layout(tmp_path)
    message = str(err.value)
    assert "weights.bin" in message
    for expected in (
        "genai_config.json",
        "encoder_model.onnx",
        "model.onnx",
        "shellfish-recurrent.json",
    ):
        assert expected in message
    with pytest.raises(ModelNotFound):
        load_model(tmp_path / "nope")


def test_load_without_manifest_infers_everything(causal_models: Path) -> None:
    runner, warnings = load_model(causal_models / "qwen-genai", threads=1)
    assert warnings == []
    info = runner.info
    assert (info.name, info.family, info.layout) == ("qwen-genai", "causal", "genai")
    assert info.context_length == 256 and info.template == "plain"
    assert info.providers == ["CPUExecutionProvider"]
    done = list(runner.generate("hello", runner.info.defaults.merged(max_new_tokens=3)))[-1]
    assert done.completion_tokens == 3


def test_manifest_fills_model_info(causal_models: Path, tmp_path: Path) -> None:
    model = copy_model(causal_models / "gpt2", tmp_path / "m")
    manifest = {
        "name": "tiny-gpt2",
        "family": "causal",
        "layout": "optimum",
        "template": "plain",
        "context_length": 64,
        "generation": {"max_new_tokens": 7, "temperature": 0.0, "stop": ["\n"], "unknown_key": 1},
        "files": {"model.onnx": "0" * 64, "tokenizer.json": "0" * 64},
    }
    (model / "shellfish-model.json").write_text(json.dumps(manifest))
    runner, _ = load_model(model, threads=1)
    info = runner.info
    assert info.name == "tiny-gpt2" and info.context_length == 64
    assert info.defaults.max_new_tokens == 7 and info.defaults.stop == ("\n",)
    runner2, _ = load_model(model, name="alias", threads=1)
    assert runner2.info.name == "alias"


def test_manifest_naming_a_missing_file(causal_models: Path, tmp_path: Path) -> None:
    model = copy_model(causal_models / "gpt2", tmp_path / "m")
    manifest = {"name": "m", "files": {"model.onnx": "0" * 64, "onnx/extra.onnx_data": "0" * 64}}
    (model / "shellfish-model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"onnx/extra\.onnx_data"):
        load_model(model)


def test_malformed_manifest(causal_models: Path, tmp_path: Path) -> None:
    model = copy_model(causal_models / "gpt2", tmp_path / "m")
    (model / "shellfish-model.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"shellfish-model\.json"):
        load_model(model)
    (model / "shellfish-model.json").write_text(json.dumps({"generation": {"top_p": 7}}))
    with pytest.raises(ModelError, match="generation"):
        load_model(model)
    (model / "shellfish-model.json").write_text(json.dumps({"family": "diffusion"}))
    with pytest.raises(ModelError, match="diffusion"):
        load_model(model)


def test_truncated_and_missing_onnx(causal_models: Path, tmp_path: Path) -> None:
    model = copy_model(causal_models / "qwen-optimum", tmp_path / "m")
    data = (model / "model.onnx").read_bytes()
    (model / "model.onnx").write_bytes(data[:1000])
    with pytest.raises(ModelError, match=r"model\.onnx"):
        load_model(model)
    genai = copy_model(causal_models / "qwen-genai", tmp_path / "g")
    (genai / "model.onnx.data").unlink()
    with pytest.raises(ModelError, match=r"model\.onnx"):
        load_model(genai)


def test_provider_choice(causal_models: Path) -> None:
    with pytest.raises(ModelError, match="provider"):
        load_model(causal_models / "gpt2", provider="tpu")
    import onnxruntime as ort

    if "CoreMLExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CoreML: no fallback warning to test")
    runner, warnings = load_model(causal_models / "gpt2", provider="coreml", threads=1)
    assert len(warnings) == 1 and "CoreML" in warnings[0]
    assert runner.info.providers == ["CPUExecutionProvider"]


def test_chatml_template_inferred_from_tokenizer_config(
    causal_models: Path, tmp_path: Path
) -> None:
    model = copy_model(causal_models / "gpt2", tmp_path / "m")
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg["chat_template"] = "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}"
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    runner, _ = load_model(model, threads=1)
    assert runner.info.template == "chatml"
