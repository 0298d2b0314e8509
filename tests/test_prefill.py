"""The int8-GEMM prefill graph (shellfish/store/prefill.py) and the engine's use of it: the
rewrite computes what it says, the runner uses it for long passes only, and the decode after it
is the main graph's."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from generated_models import needs_extra

from shellfish.engine import causal
from shellfish.engine.base import GenerationConfig, ModelInfo
from shellfish.errors import ModelError

PROMPT = (
    "list every file under the current directory that is larger than ten megabytes and was "
    "changed in the last week, sorted by size, largest first, with human readable sizes"
)


def nbits_graph(path: Path, *, bits: int, k: int = 64, n: int = 48) -> Path:
    """One MatMulNBits (quantised by onnxruntime's own quantiser) followed by a Relu, so that
    its output is not a graph output."""
    onnx = needs_extra("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    rng = np.random.default_rng(bits)
    weight = rng.standard_normal((k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["out"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", k])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", "s", n])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=32, is_symmetric=True)
    quantizer.process()
    onnx.save(
        quantizer.model.model,
        str(path / "model.onnx"),
        save_as_external_data=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    return path


def run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


@pytest.mark.parametrize("bits", [4, 8])
def test_the_rewrite_computes_per_row_int8_times_per_column_int8(tmp_path: Path, bits: int) -> None:
    from shellfish.store.prefill import dequantize_nbits, quantize_columns, write_prefill_graph

    onnx = needs_extra("onnx")
    from onnx import numpy_helper

    nbits_graph(tmp_path, bits=bits)
    assert write_prefill_graph(tmp_path) == 1
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 64)).astype(np.float32)
    x[0, 2] = 0.0  # an all-zero row quantises to zeros, not NaN
    got = run(tmp_path / "model-prefill.onnx", x)

    # the reference, in numpy: the weights the MatMulNBits holds, requantised per column ...
    main = onnx.load(str(tmp_path / "model.onnx"))
    inits = {t.name: numpy_helper.to_array(t, str(tmp_path)) for t in main.graph.initializer}
    q = next(v for k, v in inits.items() if v.dtype == np.uint8)
    scales = next(v for k, v in inits.items() if v.dtype == np.float32)
    weights = dequantize_nbits(q, scales, bits=bits, k=64)
    wq, wscale = quantize_columns(weights)
    # ... times each row of x quantised to int8 with its own scale
    rows = x.reshape(-1, 64)
    rscale = np.maximum(np.abs(rows).max(axis=1) / 127.0, 1e-30)
    xq = np.clip(np.round(rows / rscale[:, None]), -127, 127)
    ref = (xq @ wq.astype(np.float64)) * rscale[:, None] * wscale[None, :]
    ref = np.maximum(ref, 0).reshape(2, 5, 48)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert not np.isnan(got).any() and np.all(got[0, 2] == 0)
    # and the weights are the MatMulNBits' own: the main graph gives nearly the same result
    plain = run(tmp_path / "model.onnx", x)
    assert np.abs(got - plain).max() < 0.05 * np.abs(plain).max()


def test_dequantize_reads_the_layout_onnxruntime_computes_with(tmp_path: Path) -> None:
    """4-bit: two values per byte, low nibble first; zero point 8 (8-bit: 128)."""
    from shellfish.store.prefill import dequantize_nbits

    onnx = needs_extra("onnx")
    from onnx import numpy_helper

    for bits in (4, 8):
        folder = tmp_path / str(bits)
        folder.mkdir()
        nbits_graph(folder, bits=bits)
        main = onnx.load(str(folder / "model.onnx"))
        inits = {t.name: numpy_helper.to_array(t, str(folder)) for t in main.graph.initializer}
        q = next(v for v in inits.values() if v.dtype == np.uint8)
        scales = next(v for v in inits.values() if v.dtype == np.float32)
        x = np.eye(64, dtype=np.float32).reshape(1, 64, 64)  # rows of the identity: W itself
        weights = run(folder / "model.onnx", x)[0]  # relu(W): compare the positive part
        mine = dequantize_nbits(q, scales, bits=bits, k=64)
        np.testing.assert_allclose(np.maximum(mine, 0), weights, rtol=1e-5, atol=1e-6)


def test_a_graph_without_weight_only_matmuls_gets_no_prefill_graph(
    causal_models: Path, tmp_path: Path
) -> None:
    needs_extra("onnx")
    from shellfish.store.prefill import write_prefill_graph

    shutil.copytree(causal_models / "qwen-genai", tmp_path / "m")  # fp32
    assert write_prefill_graph(tmp_path / "m") == 0
    assert not (tmp_path / "m" / causal.PREFILL_FILE).exists()


@pytest.fixture()
def with_prefill(causal_models: Path, tmp_path: Path) -> Path:
    needs_extra("onnx")
    from shellfish.store.prefill import write_prefill_graph

    folder = tmp_path / "qwen-genai-int4"
    shutil.copytree(causal_models / "qwen-genai-int4", folder)
    before = (folder / "model.onnx.data").read_bytes()
    assert write_prefill_graph(folder) > 0
    assert (folder / "model.onnx.data").read_bytes() == before  # the main graph is untouched
    return folder


def load(folder: Path, **kw: Any) -> causal.CausalRunner:
    info = ModelInfo(folder.name, "causal", "", str(folder), 0)
    return causal.load(folder, info, providers=["CPUExecutionProvider"], threads=1, **kw)


def greedy(n: int) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=n, temperature=0.0, stop=[])


class CountingBinding:
    """Wraps an IOBinding's session so the test can tell which graph ran each pass."""

    def __init__(self, decoder: causal.Decoder) -> None:
        self.passes: list[str] = []
        for attr, label in (("main", "main"), ("prefill", "prefill")):
            session = getattr(decoder, attr)
            setattr(decoder, attr, _Spy(session, label, self.passes))


class _Spy:
    def __init__(self, inner: Any, label: str, passes: list[str]) -> None:
        self.inner, self.label, self.passes = inner, label, passes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def run_with_iobinding(self, binding: Any) -> Any:
        self.passes.append(self.label)
        return self.inner.run_with_iobinding(binding)


def test_long_passes_run_on_the_prefill_graph_and_decoding_on_the_main_one(
    with_prefill: Path,
) -> None:
    plain = load(with_prefill)
    fast = load(with_prefill, prefill_graph=True)
    assert plain.info.extra["prefill_graph"] is False
    assert fast.info.extra["prefill_graph"] is True
    ids = fast.tokenizer.encode(PROMPT)
    assert len(ids) >= causal.PREFILL_MIN_TOKENS
    spy = CountingBinding(fast.decoder)
    got = fast.generate_ids(ids, greedy(12), use_prefix_cache=False)
    assert spy.passes[0] == "prefill"
    assert set(spy.passes[1:]) == {"main"}  # every decode step
    spy.passes.clear()
    short = fast.tokenizer.encode("list files")
    assert len(short) < causal.PREFILL_MIN_TOKENS
    fast.generate_ids(short, greedy(3), use_prefix_cache=False)
    assert set(spy.passes) == {"main"}
    # the cache the prefill graph wrote is one the main graph continues from: every token is
    # the plain runner's choice, or within int8 noise of it (random tiny weights have near-ties)
    tokens = got.ids[0]
    ref, _ = plain.forward(ids + tokens[:-1])
    for step, token in enumerate(tokens):
        row = ref[0, len(ids) - 1 + step]
        assert row[token] >= row.max() - 0.05 * np.abs(row).max(), step
    # a pass that needs every position's logits stays on the main graph ...
    a, _ = plain.forward(ids)
    spy.passes.clear()
    b, _ = fast.forward(ids)
    assert spy.passes == ["main"]
    np.testing.assert_array_equal(a, b)
    # ... one that needs the last position's only runs on the prefill graph: one row of logits,
    # close to the main graph's (int8 activations: close, not equal)
    decoder = fast.decoder
    last, _ = decoder.forward(np.array([ids]), decoder.empty(1, len(ids)), last_only=True)
    assert spy.passes[-1] == "prefill"
    assert last.shape == (1, 1, a.shape[-1])
    assert 0 < np.abs(a[:, -1] - last[:, 0]).max() < 0.05 * np.abs(a[:, -1]).max()


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_only_the_cpu_provider_uses_it(with_prefill: Path) -> None:
    info = ModelInfo("m", "causal", "", str(with_prefill), 0)
    # an accelerator first (not installed here: the session falls back to the CPU)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    try:
        run = causal.load(with_prefill, info, providers=providers, threads=1, prefill_graph=True)
    except ModelError:
        pytest.skip("onnxruntime refuses an unavailable provider here")
    assert run.info.extra["prefill_graph"] is False


def test_a_prefill_graph_that_does_not_fit_is_refused(
    with_prefill: Path, causal_models: Path
) -> None:
    other = causal_models / "gpt2" / "model.onnx"
    shutil.copyfile(other, with_prefill / causal.PREFILL_FILE)
    with pytest.raises(ModelError, match="does not fit"):
        load(with_prefill, prefill_graph=True)
    load(with_prefill)  # without it the model loads as before


def test_a_corrupt_prefill_graph_is_a_clear_error(with_prefill: Path) -> None:
    (with_prefill / causal.PREFILL_FILE).write_bytes(b"not a graph")
    with pytest.raises(ModelError):
        load(with_prefill, prefill_graph=True)


def test_only_long_lived_processes_load_it_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import shellfish.engine.loader as loader
    from shellfish.config import Settings
    from shellfish.paths import get_paths
    from shellfish.store import pool

    seen: list[bool] = []

    def fake_load(path: Path, **kw: Any) -> tuple[Any, list[str]]:
        seen.append(kw["prefill_graph"])
        return object(), []

    monkeypatch.setattr(loader, "load_model", fake_load)
    monkeypatch.setattr(pool, "resolve_model_path", lambda paths, name: tmp_path)
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    for choice, long_lived, expected in [
        ("warm", True, True),
        ("warm", False, False),
        ("always", False, True),
        ("never", True, False),
    ]:
        settings = Settings().with_overrides({"engine.prefill_graph": choice})
        pool.default_loader(paths, settings, long_lived=long_lived)("m")
        assert seen[-1] is expected, (choice, long_lived)


def test_the_setting_takes_only_its_choices(tmp_path: Path) -> None:
    from shellfish.config import load_settings
    from shellfish.errors import ConfigError

    config = tmp_path / "config.toml"
    config.write_text('[engine]\nprefill_graph = "sometimes"\n')
    with pytest.raises(ConfigError, match="prefill_graph"):
        load_settings(config, environ={})


def test_catalog_models_with_a_prefill_graph_are_current_only_with_one() -> None:
    from shellfish.store.catalog import load_descriptor
    from shellfish.store.install import built_as_described

    models = Path(__file__).resolve().parents[1] / "models"
    source = load_descriptor(models / "qwen2.5-coder-0.5b-shellfish.toml").sources[0]
    assert source.prefill_graph
    built = {
        "sha256": source.sha256,
        "builder_options": list(source.builder_options),
        "tie_embeddings": source.tie_embeddings,
        "short_pass_logits": 9,
        "precision": source.precision,
        "adapter": {"sha256": source.adapter.sha256 if source.adapter else None},
    }
    assert not built_as_described({"source": built}, source)  # installed before it had one
    assert built_as_described({"source": {**built, "prefill_graph": 120}}, source)


def test_install_writes_it_in_the_conversion_environment(
    causal_models: Path, tmp_path: Path
) -> None:
    """The runtime install has no onnx: pull and tune run store/prefill.py as a script with the
    conversion environment's python (here this one, which has onnx)."""
    needs_extra("onnx")
    import sys

    from shellfish.store import prefill
    from shellfish.store.install import write_prefill

    assert prefill.PREFILL_FILE == causal.PREFILL_FILE
    folder = tmp_path / "m"
    shutil.copytree(causal_models / "qwen-genai-int4", folder)
    assert write_prefill("m", folder, Path(sys.executable), None) > 0
    assert (folder / causal.PREFILL_FILE).is_file()

    fp32 = tmp_path / "fp32"
    shutil.copytree(causal_models / "qwen-genai", fp32)
    with pytest.raises(ModelError, match="no weight-only matmul"):
        write_prefill("fp32", fp32, Path(sys.executable), None)
    (fp32 / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot write fp32's prefill graph"):
        write_prefill("fp32", fp32, Path(sys.executable), None)
    with pytest.raises(ModelError, match="cannot write"):
        write_prefill("fp32", fp32, tmp_path / "no-such-python", None)


def test_an_optimum_gpt2_at_int8_gets_one_and_its_prompt_logits_are_one_row(
    causal_models: Path, tmp_path: Path
) -> None:
    """optimum's one-graph GPT-2 export computes logits at every position; its prefill graph
    reads the last one only (the LM head is most of a long prefill's work there)."""
    needs_extra("onnx")
    import onnx

    from shellfish.store.prefill import write_prefill_graph
    from shellfish.store.quantize import quantize_file

    folder = tmp_path / "gpt2-int8"
    shutil.copytree(causal_models / "gpt2", folder)
    quantize_file(causal_models / "gpt2" / "model.onnx", folder / "model.onnx", bits=8)
    assert write_prefill_graph(folder) > 0
    graph = onnx.load(str(folder / causal.PREFILL_FILE), load_external_data=False).graph
    logits = next(o for o in graph.output if o.name == "logits").type.tensor_type.shape.dim
    assert logits[1].dim_value == 1
    assert any(n.name.endswith("/shellfish_last_row") for n in graph.node)

    plain = load(folder)
    fast = load(folder, prefill_graph=True)
    assert fast.info.extra["graph_layout"] == "optimum"
    assert fast.info.extra["prefill_graph"] is True
    spy = CountingBinding(fast.decoder)
    ids = fast.tokenizer.encode(PROMPT)
    got = fast.generate_ids(ids, greedy(6), use_prefix_cache=False).ids[0]
    assert spy.passes == ["prefill"] + ["main"] * 5
    ref, _ = plain.forward(ids + got[:-1])
    for step, token in enumerate(got):
        row = ref[0, len(ids) - 1 + step]
        assert row[token] >= row.max() - 0.05 * np.abs(row).max(), step


def test_a_head_that_reads_one_row_already_is_left_as_it_is() -> None:
    onnx = needs_extra("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from shellfish.store.prefill import Int8Gemms, _last_row_logits

    def model(rows: int | str) -> onnx.ModelProto:
        weight = numpy_helper.from_array(np.ones((4, 6), np.float32), "w")
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["h", "w"], ["logits"], name="/lm_head/MatMul")],
            "g",
            [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["b", rows, 4])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", rows, 6])],
            [weight],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    pruned = model(1)
    before = pruned.SerializeToString()
    _last_row_logits(pruned, Int8Gemms(pruned.graph, 17))
    assert pruned.SerializeToString() == before

    every = model("s")
    _last_row_logits(every, Int8Gemms(every.graph, 17))
    onnx.checker.check_model(every)
    out = run_model(every, {"h": np.arange(24, dtype=np.float32).reshape(1, 6, 4)})
    assert out.shape == (1, 1, 6)
    np.testing.assert_array_equal(out[0, 0], np.full(6, 20 + 21 + 22 + 23, np.float32))


def run_model(model: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feeds)[0])


def test_a_merged_decoder_gets_one_in_both_branches(causal_models: Path, tmp_path: Path) -> None:
    """optimum's merged decoder (the catalog's gpt2 / distilgpt2) keeps its matmuls in the two
    branches of an If: both become int8 GEMMs from one copy of each weight, and both LM heads
    read the last position. A prompt runs on the no-cache branch, a long continuation of a
    cached prefix on the other."""
    needs_extra("onnx")
    import onnx

    from shellfish.store.prefill import subgraphs, write_prefill_graph
    from shellfish.store.quantize import quantize_file

    name = "decoder_model_merged.onnx"
    folder = tmp_path / "merged-int8"
    shutil.copytree(causal_models / "gpt2-merged", folder)
    # as exported: one shared KV buffer would replace the If by its cache branch
    # (tests/test_attention.py covers that graph's prefill graph)
    quantize_file(causal_models / "gpt2-merged" / name, folder / name, bits=8, share_kv=False)
    share_branch_weights(folder / name)
    count = write_prefill_graph(folder, name)
    model = onnx.load(str(folder / causal.PREFILL_FILE), load_external_data=False)
    branches = [g for n in model.graph.node if n.op_type == "If" for g in subgraphs(n)]
    per_branch = [sum(n.op_type == "MatMulIntegerToFloat" for n in g.node) for g in branches]
    assert len(branches) == 2 and per_branch[0] == per_branch[1] > 0
    assert count == sum(per_branch)
    int8_weights = [t for t in model.graph.initializer if t.name.endswith("shellfish_int8_weight")]
    assert len(int8_weights) == per_branch[0]  # one copy for both branches
    assert all(any(n.name.endswith("shellfish_last_row") for n in g.node) for g in branches)

    plain = load(folder)
    fast = load(folder, prefill_graph=True)
    assert fast.info.extra["graph_layout"] == "optimum-merged"
    spy = CountingBinding(fast.decoder)
    ids = fast.tokenizer.encode(PROMPT)
    got = fast.generate_ids(ids, greedy(4), use_prefix_cache=True).ids[0]
    assert spy.passes == ["prefill"] + ["main"] * 3
    # a longer request that starts with the same prompt: only the new tokens are computed, on
    # the prefill graph's cache branch
    more = ids + got + fast.tokenizer.encode(" and then " + PROMPT)
    spy.passes.clear()
    again = fast.generate_ids(more, greedy(2), use_prefix_cache=True)
    assert spy.passes[0] == "prefill" and again.prefix_reused_tokens > 0
    decoder = fast.decoder
    for prompt in (ids, more):  # from the start: the no-cache branch
        row = plain.forward(prompt)[0][0, -1]
        last, _ = decoder.forward(np.array([prompt]), decoder.empty(1, len(prompt)), last_only=True)
        assert last.shape == (1, 1, row.shape[-1])
        assert 0 < np.abs(row - last[0, 0]).max() < 0.05 * np.abs(row).max()
    # after a cache the main graph wrote: the cache branch
    _, state = fast.forward(ids)
    spy.passes.clear()
    last, _ = decoder.forward(np.array([more[len(ids) :]]), state, last_only=True)
    assert spy.passes == ["prefill"]
    row = plain.forward(more)[0][0, -1]
    assert 0 < np.abs(row - last[0, 0]).max() < 0.05 * np.abs(row).max()


def share_branch_weights(path: Path) -> None:
    """The fixture's merge keeps a copy of every weight per branch (the two exports it merges
    hold the same values); optimum's merge keeps one. Point the cache branch's weight-only
    matmuls at the other branch's weights, as in optimum's files."""
    import onnx

    from shellfish.store.prefill import subgraphs

    model = onnx.load(str(path))
    if_node = next(n for n in model.graph.node if n.op_type == "If")
    branches = {g.name: g for g in subgraphs(if_node)}
    cached, plain = branches["cached"], branches["plain"]
    plain_nodes = {n.name.removeprefix("plain/"): n for n in plain.node}
    for node in cached.node:
        if node.op_type == "MatMulNBits":
            twin = plain_nodes[node.name.removeprefix("cached/")]
            node.input[1:3] = twin.input[1:3]
    used = {i for g in (cached, plain, model.graph) for n in g.node for i in n.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    path.with_name(path.name + ".data").unlink()
    onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data")
