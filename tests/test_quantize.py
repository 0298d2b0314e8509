"""Weight-only quantisation (shellfish/store/quantize.py): the rewrite that exposes every
constant-weight matmul keeps the values, and the int8 graphs the runner loads stay close."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from generated_models import needs_extra

from shellfish.engine import causal
from shellfish.engine.base import GenerationConfig, ModelInfo


def ops(model) -> dict[str, int]:  # type: ignore[no-untyped-def]
    from shellfish.store.prefill import graphs

    counts: dict[str, int] = {}
    for graph in graphs(model.graph):
        for node in graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def exporter_like_graph(path: Path) -> Path:
    """What exporters write: Gemm with a transposed weight and a bias (GPT-2's Conv1D written
    by torch), Gemm without either, and an output layer reading the transposed embedding that
    a Gather also reads (tied weights)."""
    onnx = needs_extra("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["h0"], axis=0),
        helper.make_node("Gemm", ["h0", "w1", "b1"], ["h1"], transB=1),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "w2"], ["h2"]),
        helper.make_node("Transpose", ["emb"], ["emb_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["h2", "emb_t"], ["logits"]),
        # a Gemm the rewrite must leave alone (alpha != 1)
        helper.make_node("Gemm", ["h2", "w3"], ["side"], alpha=0.5),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [3])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [3, 50]),
            helper.make_tensor_value_info("side", TensorProto.FLOAT, [3, 32]),
        ],
        [
            weight("emb", 50, 32),
            weight("w1", 64, 32),
            weight("b1", 64),
            weight("w2", 64, 32),
            weight("w3", 32, 32),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_prepare_exposes_constant_matmuls_and_keeps_the_values(tmp_path: Path) -> None:
    onnx = needs_extra("onnx")
    from shellfish.store.quantize import prepare

    src = exporter_like_graph(tmp_path / "src.onnx")
    model = onnx.load(str(src))
    assert prepare(model) == 3  # two plain Gemms, one MatMul of a transposed constant
    counts = ops(model)
    assert counts["Gemm"] == 1 and counts["MatMul"] == 3 and "Transpose" not in counts
    names = {t.name for t in model.graph.initializer}
    assert "w1" not in names  # replaced by its transposed copy, not kept twice
    assert {"emb", "w2", "w3", "b1"} <= names  # the embedding still feeds the Gather
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_path / "prepared.onnx"))
    feeds = {"ids": np.array([1, 7, 49], dtype=np.int64)}
    for a, b in zip(run(src, feeds), run(tmp_path / "prepared.onnx", feeds), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_quantize_file_int8_and_int4(tmp_path: Path) -> None:
    needs_extra("onnx")
    from shellfish.store.quantize import quantize_file

    src = exporter_like_graph(tmp_path / "src.onnx")
    feeds = {"ids": np.array([1, 7, 49], dtype=np.int64)}
    ref = run(src, feeds)[0]
    errors = {}
    for bits in (8, 4):
        out = tmp_path / f"q{bits}.onnx"
        assert quantize_file(src, out, bits=bits) == 3
        got = run(out, feeds)[0]
        errors[bits] = float(np.abs(got - ref).max() / np.abs(ref).max())
        if bits == 8:
            got_8 = got
    assert errors[8] < 0.02 < errors[4] < 0.2  # 8 bits much closer than 4, both near fp32
    # the weights sit in a file beside the graph (onnxruntime maps it: faster load, less
    # memory), and writing the same graph again replaces that file rather than growing it
    import onnx

    data = tmp_path / "q8.onnx.data"
    size = data.stat().st_size
    graph = onnx.load(str(tmp_path / "q8.onnx"), load_external_data=False).graph
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer)
    quantize_file(src, tmp_path / "q8.onnx", bits=8)
    assert data.stat().st_size == size
    np.testing.assert_allclose(run(tmp_path / "q8.onnx", feeds)[0], got_8, rtol=0, atol=0)
    with pytest.raises(ValueError, match="bits"):
        quantize_file(src, tmp_path / "q3.onnx", bits=3)
    assert not (tmp_path / "q3.onnx").exists()


def test_merged_decoder_branches_quantised_and_the_runner_agrees(
    causal_models: Path, tmp_path: Path
) -> None:
    """The gpt2-merged fixture keeps its Gemms inside the If branches (weights shared from the
    outer graph): every one becomes MatMulNBits, and the runner's int8 logits follow fp32's."""
    onnx = needs_extra("onnx")
    from shellfish.store.quantize import quantize_file

    src = causal_models / "gpt2-merged"
    q8 = tmp_path / "gpt2-merged-int8"
    shutil.copytree(src, q8)
    graph = q8 / "decoder_model_merged.onnx"
    # as exported (`share_kv=False`): the rewrite to one shared KV buffer would replace the If
    # by its cache branch (tests/test_attention.py)
    assert quantize_file(src / graph.name, graph, bits=8, share_kv=False) > 0
    counts = ops(onnx.load(str(graph)))
    assert "Gemm" not in counts and counts["MatMulNBits"] >= 16

    def runner(path: Path) -> causal.CausalRunner:
        info = ModelInfo(path.name, "causal", "", str(path), 0)
        return causal.load(path, info, providers=["CPUExecutionProvider"], threads=1)

    fp32, int8 = runner(src), runner(q8)
    ids = fp32.tokenizer.encode("list all files in the current directory sorted by size")
    config = GenerationConfig(max_new_tokens=8)
    ref = fp32.generate_ids(ids, config, use_prefix_cache=False, keep_logits=True)
    # the int8 model is fed fp32's tokens, so each step's logits compare like for like
    forced = int8.generate_ids(
        ids + ref.ids[0][:-1], GenerationConfig(max_new_tokens=1), keep_logits=True
    )
    assert forced.step_logits
    last = ref.step_logits[-1]
    got = forced.step_logits[-1]
    cosine = float(np.dot(last, got) / np.linalg.norm(last) / np.linalg.norm(got))
    assert cosine > 0.99
    first = int8.generate_ids(ids, GenerationConfig(max_new_tokens=1), use_prefix_cache=False)
    assert first.ids[0][0] == ref.ids[0][0]
