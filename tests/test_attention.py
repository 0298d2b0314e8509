"""GPT-2's exported attention as GroupQueryAttention over one KV buffer (store/attention.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from generated_models import needs_extra

from shellfish.engine import causal
from shellfish.engine.base import GenerationConfig, ModelInfo

REQUEST = "list all files in the current directory sorted by size"


def runner(path: Path) -> causal.CausalRunner:
    info = ModelInfo(path.name, "causal", "", str(path), 0)
    return causal.load(path, info, providers=["CPUExecutionProvider"], threads=1)


def graph_of(folder: Path) -> str:
    merged = folder / "decoder_model_merged.onnx"
    return merged.name if merged.is_file() else "model.onnx"


def rewritten_copy(src: Path, dst: Path) -> int:
    """`src`'s folder with its decoder graph rewritten; returns the layers rewritten."""
    onnx = needs_extra("onnx")
    from shellfish.store.attention import share_kv_buffer

    shutil.copytree(src, dst)
    model = onnx.load(str(src / graph_of(src)))
    layers = share_kv_buffer(model)
    onnx.save(model, str(dst / graph_of(src)))
    return layers


def past_readers(model) -> set[str]:  # type: ignore[no-untyped-def]
    pasts = {i.name for i in model.graph.input if i.name.startswith("past_key_values.")}
    return {n.op_type for n in model.graph.node if pasts & set(n.input)}


# with position ids as inputs, and without: then the graph takes them from the cache's shape,
# which the rewrite answers with the shape the growing cache would have had
EXPORTS = ["gpt2-positions", "gpt2"]


@pytest.mark.parametrize("fixture", EXPORTS)
def test_each_layer_becomes_one_attention_node_reading_the_cache(
    causal_models: Path, fixture: str
) -> None:
    onnx = needs_extra("onnx")
    from shellfish.store.attention import share_kv_buffer, shares_kv_buffer

    model = onnx.load(str(causal_models / fixture / "model.onnx"))
    assert past_readers(model) == {"Concat"}  # the export grows its cache by concatenation
    before = len(model.graph.node)
    assert share_kv_buffer(model) == 2
    kinds = [n.op_type for n in model.graph.node]
    assert kinds.count("GroupQueryAttention") == 2
    assert "Softmax" not in kinds  # the old attention is gone, not left running beside
    assert len(model.graph.node) < before
    assert past_readers(model) == {"GroupQueryAttention"}
    assert shares_kv_buffer(model)
    assert share_kv_buffer(model) == 0  # a second pass finds nothing left to do
    onnx.checker.check_model(model)


@pytest.mark.parametrize(
    ("fixture", "graph"),
    [
        # another attention (rotary, separate projections): not recognised
        ("qwen-optimum", "model.onnx"),
        # already GroupQueryAttention
        ("qwen-genai", "model.onnx"),
    ],
)
def test_graphs_it_does_not_recognise_are_left_untouched(
    causal_models: Path, fixture: str, graph: str
) -> None:
    onnx = needs_extra("onnx")
    from shellfish.store.attention import share_kv_buffer

    model = onnx.load(str(causal_models / fixture / graph))
    before = model.SerializeToString()
    assert share_kv_buffer(model) == 0
    assert model.SerializeToString() == before


@pytest.mark.parametrize("fixture", EXPORTS)
def test_the_shared_buffer_gives_the_growing_caches_logits(
    causal_models: Path, fixture: str
) -> None:
    """Prompt then single steps, each graph fed as it wants: the original its growing cache,
    the rewrite one capacity-sized buffer bound as past and present."""
    onnx = needs_extra("onnx")
    import onnxruntime as ort

    from shellfish.store.attention import share_kv_buffer

    path = causal_models / fixture / "model.onnx"
    model = onnx.load(str(path))
    assert share_kv_buffer(model) == 2
    cpu = ["CPUExecutionProvider"]
    growing = ort.InferenceSession(str(path), providers=cpu)
    shared = ort.InferenceSession(model.SerializeToString(), providers=cpu)
    pasts = [i.name for i in growing.get_inputs() if i.name.startswith("past_key_values.")]
    presents = [name.replace("past_key_values", "present") for name in pasts]
    capacity = 24
    cache = {name: np.zeros((1, 4, 0, 16), np.float32) for name in pasts}
    buffers = {
        name: ort.OrtValue.ortvalue_from_numpy(np.zeros((1, 4, capacity, 16), np.float32))
        for name in pasts
    }
    binding = shared.io_binding()
    for past, present in zip(pasts, presents, strict=True):
        binding.bind_ortvalue_input(past, buffers[past])
        binding.bind_ortvalue_output(present, buffers[past])
    ids, total = np.array([[5, 17, 99, 3, 42, 7]], np.int64), 0
    for _step in range(8):
        total += ids.shape[1]
        feeds = {"input_ids": ids, "attention_mask": np.ones((1, total), np.int64)}
        if fixture == "gpt2-positions":
            feeds["position_ids"] = np.arange(total - ids.shape[1], total, dtype=np.int64)[None]
        expected = growing.run(None, {**feeds, **cache})
        cache = dict(zip(pasts, expected[1:], strict=True))
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output("logits", "cpu")
        shared.run_with_iobinding(binding)
        logits = binding.get_outputs()[-1].numpy()
        np.testing.assert_allclose(logits, expected[0], atol=1e-4, rtol=1e-4)
        ids = np.array([[int(expected[0][0, -1].argmax())]], np.int64)
    # the new positions were written into the bound buffer itself
    written = buffers[pasts[0]].numpy()[:, :, :total]
    np.testing.assert_allclose(written, cache[pasts[0]], atol=1e-5)


@pytest.mark.parametrize("fixture", [*EXPORTS, "gpt2-merged"])
def test_the_runner_binds_one_buffer_and_generates_the_same(
    causal_models: Path, tmp_path: Path, fixture: str
) -> None:
    src = causal_models / fixture
    assert rewritten_copy(src, tmp_path / "shared") == 2
    plain, shared = runner(src), runner(tmp_path / "shared")
    assert not plain.info.extra["shared_kv_buffer"]
    assert shared.info.extra["shared_kv_buffer"]  # from the graph's metadata, no genai config
    ids = plain.tokenizer.encode(REQUEST)
    greedy = GenerationConfig(max_new_tokens=24, temperature=0.0)
    want = plain.generate_ids(ids, greedy, use_prefix_cache=False, keep_logits=True)
    got = shared.generate_ids(ids, greedy, use_prefix_cache=False, keep_logits=True)
    assert got.ids == want.ids
    assert len(got.step_logits) == len(want.step_logits) == 24
    np.testing.assert_allclose(got.step_logits, want.step_logits, atol=1e-3, rtol=1e-4)
    want = want.ids
    # three rows at once, and again from the prefix cache (a resumed buffer)
    rows = GenerationConfig(max_new_tokens=12, temperature=0.0, n=3)
    for _ in range(2):
        got = shared.generate_ids(ids, rows).ids
        assert got == [want[0][:12]] * 3


def test_quantize_shares_the_buffer_and_tells_genai(causal_models: Path, tmp_path: Path) -> None:
    """`quantize_file` rewrites the attention by default (`share_kv=False`: as exported); the
    folder's genai_config then says `past_present_share_buffer`, and both graphs generate the
    same tokens."""
    onnx = needs_extra("onnx")
    from shellfish.store.attention import graph_shares_kv, mark_genai_config
    from shellfish.store.quantize import quantize_file

    src = causal_models / "gpt2-positions"
    folders = {}
    for share in (True, False):
        dst = tmp_path / f"int8-{share}"
        shutil.copytree(src, dst)
        quantize_file(src / "model.onnx", dst / "model.onnx", bits=8, share_kv=share)
        assert graph_shares_kv(dst / "model.onnx") is share
        folders[share] = dst
    counts = [n.op_type for n in onnx.load(str(folders[True] / "model.onnx")).graph.node]
    assert counts.count("MatMulNBits") >= 9 and counts.count("GroupQueryAttention") == 2
    ids = runner(src).tokenizer.encode(REQUEST)
    greedy = GenerationConfig(max_new_tokens=16, temperature=0.0)
    outputs = [
        runner(folders[s]).generate_ids(ids, greedy, use_prefix_cache=False).ids
        for s in (True, False)
    ]
    assert outputs[0] == outputs[1]

    config = {"model": {"decoder": {"filename": "model.onnx"}}, "search": {}}
    for share, folder in folders.items():
        (folder / "genai_config.json").write_text(json.dumps(config))
        assert mark_genai_config(folder) is share
        written = json.loads((folder / "genai_config.json").read_text())
        assert written["search"].get("past_present_share_buffer", False) is share
    assert not mark_genai_config(tmp_path)  # no genai_config.json: nothing to tell


@pytest.mark.parametrize("fixture", ["gpt2-positions", "gpt2-merged"])
def test_models_quantize_installs_a_shared_buffer_model_with_its_prefill_graph(
    causal_models: Path, tmp_path: Path, fixture: str
) -> None:
    """`shellfish models quantize --int8` of an imported GPT-2 export: the manifest records
    the shared buffer, the prefill graph (written from the rewritten graph) fits the main one,
    and the first token is fp32's."""
    needs_extra("onnx")
    from shellfish.engine.loader import load_model
    from shellfish.paths import get_paths
    from shellfish.store.install import import_path, quantize_int8
    from shellfish.store.store import Store

    env = {"SHELLFISH_HOME": str(tmp_path / "home")}
    store = Store(get_paths(env))
    fp32 = import_path(store, causal_models / fixture, name="tiny", environ=env)
    int8 = quantize_int8(store, "tiny")
    assert int8.manifest["quantization"]["kv_buffer"].startswith("shared")
    assert "kv_buffer" not in fp32.manifest.get("quantization", {})
    loaded, _warnings = load_model(int8.path, prefill_graph=True, threads=1)
    assert loaded.info.extra["shared_kv_buffer"] and loaded.info.extra["prefill_graph"]
    reference, _warnings = load_model(fp32.path, threads=1)
    ids = reference.tokenizer.encode(REQUEST)
    one = GenerationConfig(max_new_tokens=1, temperature=0.0)
    want = reference.generate_ids(ids, one, use_prefix_cache=False).ids
    assert loaded.generate_ids(ids, one, use_prefix_cache=False).ids == want


def test_a_graph_that_reads_the_cache_otherwise_is_refused_whole(causal_models: Path) -> None:
    """A reader of a past input that is not a shape read (here an extra output summing it)
    would see the buffer's capacity: the rewrite is refused after it was worked out, and the
    model comes back exactly as it was."""
    onnx = needs_extra("onnx")
    from onnx import TensorProto, helper

    from shellfish.store.attention import share_kv_buffer

    model = onnx.load(str(causal_models / "gpt2" / "model.onnx"))
    model.graph.node.append(helper.make_node("ReduceSum", ["past_key_values.1.value"], ["peek"]))
    model.graph.output.append(helper.make_tensor_value_info("peek", TensorProto.FLOAT, None))
    before = model.SerializeToString()
    assert share_kv_buffer(model) == 0
    assert model.SerializeToString() == before


def test_a_merged_decoder_becomes_its_cache_branch(causal_models: Path) -> None:
    """optimum's merged decoder (an If over a no-cache and a cache graph, chosen by
    `use_cache_branch`): the cache branch, which computes the first pass too from an empty
    cache, replaces the If, and its attention is rewritten like a one-graph export's."""
    onnx = needs_extra("onnx")
    from shellfish.store.attention import share_kv_buffer

    model = onnx.load(str(causal_models / "gpt2-merged" / "decoder_model_merged.onnx"))
    assert share_kv_buffer(model) == 2
    kinds = [n.op_type for n in model.graph.node]
    assert "If" not in kinds and kinds.count("GroupQueryAttention") == 2
    assert "use_cache_branch" not in {i.name for i in model.graph.input}
    onnx.checker.check_model(model)
