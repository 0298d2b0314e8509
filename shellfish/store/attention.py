"""GPT-2's exported attention as one GroupQueryAttention per layer, with a shared KV buffer.

An optimum (or `torch.onnx`) export of GPT-2 computes attention from a dozen small operators a
layer and grows its cache by concatenation: `present = Concat(past, new)` is a new tensor every
step, so every caller binds 2 x layers caches in and as many back out each step, and copies the
whole cache while doing so. onnxruntime's `GroupQueryAttention` (with as many key/value heads as
query heads it is plain multi-head attention) writes the new positions into the past buffer in
place when past and present are the same tensor: a capacity-sized buffer bound once per
generation, as the genai graphs of the Llama/Qwen2 family already do (`engine/kvcache.py`,
"shared").

`share_kv_buffer(model)` finds each layer's pieces by the export's structure, not by names:
the `Split` of the fused QKV projection into q, k, v (each `[batch, seq, hidden]`), the
`Concat(past, k)` / `Concat(past, v)` that produce `present.N.key` / `.value`, and the tensor
where the heads are merged back (`present.N.value` -> `MatMul` -> `Transpose` -> `Reshape`)
before the output projection. Each layer becomes one node reading q, k, v and the past
buffers; the old operators and the causal mask built for them fall away. Sequence lengths come
from `attention_mask` (its sum, its width). An export without `position_ids` takes positions
from the cache's shape, which would now be the buffer's capacity: those shape reads are
answered with the shape the growing cache would have had (from the widths of
`attention_mask` and `input_ids`). Any other reader of a past input, or any mismatch, leaves
the model untouched (returns 0).

What it buys, int4 at 2 threads (`shellfish bench --model DIR --engines
shellfish-int4,ort-genai-int4 --lengths 1,64 --contexts 16 --repeats 10 --rounds 3`, the same
folders before and after): decode 2.00 -> 1.50 ms/token on random-weight distilgpt2, 3.87 ->
3.27 on gpt2, and Python per token 119 -> 62 and 198 -> 69 us (README "Engine speed").

optimum's *merged* decoder (an `If` over a no-cache and a cache graph, what the catalog's gpt2 /
distilgpt2 ship) becomes its cache branch first: with an empty cache it computes the first
pass too, and the If's switch (`use_cache_branch`) goes. Not rewritten: the two-file layout
(`decoder_model.onnx` + `decoder_with_past_model.onnx`).

The graph records `SHARED_BUFFER_MARK` in its metadata, which the loader reads
(`engine/causal.py`); `mark_genai_config` tells onnxruntime-genai the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shellfish.engine.kvcache import SHARED_BUFFER_MARK

if TYPE_CHECKING:
    import onnx

_PREFIX = "/shellfish/kv"


def shares_kv_buffer(model: onnx.ModelProto) -> bool:
    """Whether `share_kv_buffer` rewrote this graph (its metadata says so)."""
    key, value = SHARED_BUFFER_MARK
    return any(p.key == key and p.value == value for p in model.metadata_props)


def share_kv_buffer(model: onnx.ModelProto) -> int:
    """Rewrite every layer's attention as GroupQueryAttention over a shared KV buffer, in place;
    returns the number of layers, or 0 (model untouched) when the graph is not a GPT-2-style
    export this recognises. A merged decoder first becomes its cache branch (`_inline_cache_
    branch`), worked on a copy so that a refusal leaves the model as it was."""
    if shares_kv_buffer(model):
        return 0
    if _cache_branch(model.graph) is None:
        return _share(model)
    from onnx import ModelProto

    work = ModelProto()
    work.CopyFrom(model)
    if not _inline_cache_branch(work.graph) or not (layers := _share(work)):
        return 0
    model.CopyFrom(work)
    return layers


def _cache_branch(graph: onnx.GraphProto) -> onnx.NodeProto | None:
    """The `If` of an optimum merged decoder: it makes the presents, and its condition comes
    from the `use_cache_branch` input (directly or through a Squeeze / Cast / Reshape)."""
    producers = {out: node for node in graph.node for out in node.output}
    node = producers.get("present.0.key")
    if (
        node is None
        or node.op_type != "If"
        or not {"use_cache_branch"} & {i.name for i in graph.input}
    ):
        return None
    cond = node.input[0]
    while cond in producers and producers[cond].op_type in ("Squeeze", "Cast", "Reshape"):
        cond = producers[cond].input[0]
    return node if cond == "use_cache_branch" else None


def _inline_cache_branch(graph: onnx.GraphProto) -> bool:
    """Replace the merged decoder's `If` by its cache branch (with an empty past it computes
    the first pass too) and drop the `use_cache_branch` input; False if names would clash."""
    if_node = _cache_branch(graph)
    if if_node is None:
        return False
    branch = next(a.g for a in if_node.attribute if a.name == "then_branch")
    if any(a.type == a.GRAPH for n in branch.node for a in n.attribute):
        return False  # a subgraph inside the branch: not this export's shape
    rename = {out.name: name for out, name in zip(branch.output, if_node.output, strict=True)}
    outer = {out for node in graph.node for out in node.output} | {
        t.name for t in graph.initializer
    }
    inner = {out for node in branch.node for out in node.output} | {
        t.name for t in branch.initializer
    }
    if (inner - set(rename)) & outer:
        return False
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node is not if_node:
            nodes.append(node)
            continue
        for inside in branch.node:
            inside.input[:] = [rename.get(name, name) for name in inside.input]
            inside.output[:] = [rename.get(name, name) for name in inside.output]
            nodes.append(inside)
    live = _live(nodes, [o.name for o in graph.output])
    if any("use_cache_branch" in node.input for node in live):
        return False
    graph.initializer.extend(branch.initializer)
    del graph.node[:]
    graph.node.extend(live)
    kept = [i for i in graph.input if i.name != "use_cache_branch"]
    del graph.input[:]
    graph.input.extend(kept)
    return True


def _share(model: onnx.ModelProto) -> int:
    """`share_kv_buffer` on a one-graph decoder."""
    from onnx import StringStringEntryProto, TensorProto, helper

    from shellfish.store.quantize import drop_unused

    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    if "attention_mask" not in inputs or "input_ids" not in inputs:
        return 0
    layers = sum(
        1 for name in inputs if name.startswith("past_key_values.") and name.endswith(".key")
    )
    if layers == 0 or any(
        f"past_key_values.{i}.{kind}" not in inputs
        for i in range(layers)
        for kind in ("key", "value")
    ):
        return 0
    dims = inputs["past_key_values.0.key"].type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[1].dim_value or not dims[3].dim_value:
        return 0
    heads = dims[1].dim_value

    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def _source(name: str) -> str:
        """`name`, or the tensor it copies (`_is_copy`)."""
        node = producers.get(name)
        while node is not None and _is_copy(node):
            name = node.input[0]
            node = producers.get(name)
        return name

    def made_by(name: str, op: str) -> onnx.NodeProto | None:
        node = producers.get(name)
        return node if node is not None and node.op_type == op else None

    def only_consumer(name: str, op: str) -> onnx.NodeProto | None:
        found = [n for n in consumers.get(name, []) if n.op_type == op]
        return found[0] if len(found) == 1 else None

    attention: dict[int, onnx.NodeProto] = {}  # id() of a layer's Split -> its new node
    dropped: set[int] = set()  # id() of the Concat nodes that made the presents
    merged: dict[str, str] = {}  # the old merged-heads tensor -> the new node's output
    for i in range(layers):
        past_k, past_v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
        present_k, present_v = f"present.{i}.key", f"present.{i}.value"
        concat_k, concat_v = made_by(present_k, "Concat"), made_by(present_v, "Concat")
        if concat_k is None or concat_v is None:
            return 0
        if _source(concat_k.input[0]) != past_k or _source(concat_v.input[0]) != past_v:
            return 0
        new_k = made_by(concat_k.input[1], "Transpose")
        new_v = made_by(concat_v.input[1], "Transpose")
        heads_k = made_by(new_k.input[0], "Reshape") if new_k else None
        heads_v = made_by(new_v.input[0], "Reshape") if new_v else None
        split = made_by(heads_k.input[0], "Split") if heads_k else None
        if split is None or heads_v is None or len(split.output) != 3:
            return 0
        q, k, v = split.output
        if heads_k is None or heads_k.input[0] != k or heads_v.input[0] != v:
            return 0
        weighted = only_consumer(present_v, "MatMul")  # attention probabilities x values
        flat = _merged_heads(weighted.output[0], consumers) if weighted else None
        if flat is None:
            return 0
        out = f"{_PREFIX}/h.{i}/attention"
        attention[id(split)] = helper.make_node(
            "GroupQueryAttention",
            [q, k, v, past_k, past_v, f"{_PREFIX}/seqlens_k", f"{_PREFIX}/total_length"],
            [out, present_k, present_v],
            name=f"{_PREFIX}/h.{i}/GroupQueryAttention",
            domain="com.microsoft",
            num_heads=heads,
            kv_num_heads=heads,
        )
        dropped |= {id(concat_k), id(concat_v)}
        merged[flat.output[0]] = out

    # Sequence lengths for GroupQueryAttention: valid positions - 1 per row, and the total.
    lengths = [
        helper.make_node(
            "ReduceSum",
            ["attention_mask", f"{_PREFIX}/axis_1"],
            [f"{_PREFIX}/mask_sum"],
            keepdims=0,
        ),
        helper.make_node("Sub", [f"{_PREFIX}/mask_sum", f"{_PREFIX}/one"], [f"{_PREFIX}/last"]),
        helper.make_node(
            "Cast", [f"{_PREFIX}/last"], [f"{_PREFIX}/seqlens_k"], to=TensorProto.INT32
        ),
        helper.make_node("Shape", ["attention_mask"], [f"{_PREFIX}/mask_shape"]),
        helper.make_node(
            "Gather", [f"{_PREFIX}/mask_shape", f"{_PREFIX}/one"], [f"{_PREFIX}/width"], axis=0
        ),
        helper.make_node(
            "Cast", [f"{_PREFIX}/width"], [f"{_PREFIX}/total_length"], to=TensorProto.INT32
        ),
    ]
    constants = [
        helper.make_tensor(f"{_PREFIX}/axis_1", TensorProto.INT64, [1], [1]),
        helper.make_tensor(f"{_PREFIX}/one", TensorProto.INT64, [], [1]),
    ]
    nodes: list[onnx.NodeProto] = list(lengths)
    for node in graph.node:
        if id(node) in dropped:
            continue
        nodes.append(_renamed(node, merged))
        if id(node) in attention:
            nodes.append(attention[id(node)])

    # The rest of the old attention (scores, softmax, the causal mask) is read by nothing now.
    # What still reads a past input would see the buffer's capacity where it expects the
    # cache's length: an export without `position_ids` takes the positions from the cache's
    # shape. A shape read (of a past input or of a one-input copy of it) is answered with the
    # shape the cache would have, [batch, heads, width of attention_mask - new tokens, head
    # size]; any other reader is refused.
    pasts = {f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")}
    live = _live(nodes, [o.name for o in graph.output])
    copies = set(pasts)
    for node in live:  # topological order: a copy's copy comes later
        if _is_copy(node) and node.input[0] in copies:
            copies.add(node.output[0])
    shape_reads = {
        node.output[0]: f"{_PREFIX}/past_shape"
        for node in live
        if node.op_type == "Shape" and node.input[0] in copies and not node.attribute
    }
    if shape_reads:
        dims_of_past = _past_shape(heads, int(dims[3].dim_value))
        nodes = dims_of_past.nodes + [_renamed(node, shape_reads) for node in nodes]
        constants += dims_of_past.constants
        live = _live(nodes, [o.name for o in graph.output])
    for node in live:
        if node.op_type != "GroupQueryAttention" and pasts & set(node.input):
            return 0
    del graph.node[:]
    graph.node.extend(live)
    graph.initializer.extend(constants)
    drop_unused(graph)  # initializers only the removed operators read
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    for output in graph.output:  # the present buffers are as long as the past ones now
        if output.name.startswith("present."):
            output.type.tensor_type.shape.dim[2].dim_param = "total_sequence_length"
    key, value = SHARED_BUFFER_MARK
    model.metadata_props.append(StringStringEntryProto(key=key, value=value))
    return layers


def _is_copy(node: onnx.NodeProto) -> bool:
    """A one-input Concat or an Identity: what `torch.onnx` writes around a cache."""
    return node.op_type in ("Concat", "Identity") and len(node.input) == 1


def _renamed(node: onnx.NodeProto, names: dict[str, str]) -> onnx.NodeProto:
    """`node` reading `names[x]` wherever it read `x`: a copy when anything changes, so a
    refused rewrite leaves the model as it was."""
    if not any(name in names for name in node.input):
        return node
    from onnx import NodeProto

    copy = NodeProto()
    copy.CopyFrom(node)
    copy.input[:] = [names.get(name, name) for name in node.input]
    return copy


@dataclass
class _Subgraph:
    nodes: list[onnx.NodeProto]
    constants: list[onnx.TensorProto]


def _past_shape(heads: int, head_size: int) -> _Subgraph:
    """Nodes computing `{_PREFIX}/past_shape`: the shape the growing cache would have had,
    [batch, heads, attention_mask's width - input_ids' width, head_size], from the inputs."""
    from onnx import TensorProto, helper

    def name(x: str) -> str:
        return f"{_PREFIX}/past_shape/{x}"

    nodes = [
        helper.make_node("Shape", ["input_ids"], [name("ids_shape")]),
        helper.make_node("Shape", ["attention_mask"], [name("mask_shape")]),
        helper.make_node("Gather", [name("ids_shape"), name("first")], [name("batch")], axis=0),
        helper.make_node("Gather", [name("ids_shape"), name("second")], [name("new")], axis=0),
        helper.make_node("Gather", [name("mask_shape"), name("second")], [name("width")], axis=0),
        helper.make_node("Sub", [name("width"), name("new")], [name("length")]),
        helper.make_node(
            "Concat",
            [name("batch"), name("heads"), name("length"), name("head_size")],
            [f"{_PREFIX}/past_shape"],
            axis=0,
        ),
    ]
    constants = [
        helper.make_tensor(name("first"), TensorProto.INT64, [1], [0]),
        helper.make_tensor(name("second"), TensorProto.INT64, [1], [1]),
        helper.make_tensor(name("heads"), TensorProto.INT64, [1], [heads]),
        helper.make_tensor(name("head_size"), TensorProto.INT64, [1], [head_size]),
    ]
    return _Subgraph(nodes, constants)


def _merged_heads(name: str, consumers: dict[str, list[onnx.NodeProto]]) -> onnx.NodeProto | None:
    """The Reshape that merges the heads of the attention output `name` ([batch, heads, seq,
    head_size]) back into [batch, seq, hidden]: the first Reshape after the Transpose that
    swaps heads and positions, along a chain of single reshapes and transposes (optimum writes
    Transpose -> Reshape, torch.onnx a no-op Reshape first); shape reads on the way are
    ignored."""
    swapped = False
    for _ in range(4):
        found = [n for n in consumers.get(name, []) if n.op_type != "Shape"]
        if len(found) != 1 or found[0].op_type not in ("Reshape", "Transpose"):
            return None
        node = found[0]
        if node.op_type == "Transpose":
            perm = [a.ints for a in node.attribute if a.name == "perm"]
            if swapped or not perm or list(perm[0]) != [0, 2, 1, 3]:
                return None
            swapped = True
        elif swapped:
            return node
        name = node.output[0]
    return None


def _live(nodes: list[onnx.NodeProto], outputs: list[str]) -> list[onnx.NodeProto]:
    """The nodes the graph outputs depend on, in their order (a node with no outputs stays)."""
    needed = set(outputs)
    keep: list[bool] = [False] * len(nodes)
    for index in range(len(nodes) - 1, -1, -1):  # nodes are in topological order
        node = nodes[index]
        if not node.output or any(o in needed for o in node.output):
            keep[index] = True
            needed.update(name for name in node.input if name)
    return [node for node, k in zip(nodes, keep, strict=True) if k]


def graph_shares_kv(path: Path) -> bool:
    """Whether the ONNX graph at `path` was rewritten by `share_kv_buffer` (its weights are
    not read)."""
    import onnx

    return path.is_file() and shares_kv_buffer(onnx.load(str(path), load_external_data=False))


def mark_genai_config(folder: Path) -> bool:
    """If `folder`'s genai decoder graph shares its KV buffer, say so in its
    `genai_config.json` (`past_present_share_buffer`), so onnxruntime-genai binds it the same
    way; returns whether it did."""
    import json

    config_path = folder / "genai_config.json"
    if not config_path.is_file():
        return False
    config = json.loads(config_path.read_text())
    graph = folder / config.get("model", {}).get("decoder", {}).get("filename", "model.onnx")
    if not graph_shares_kv(graph):
        return False
    config.setdefault("search", {})["past_present_share_buffer"] = True
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return True
