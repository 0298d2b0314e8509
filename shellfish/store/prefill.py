"""A second decoder graph for long prefills: int8 activations per row, int8 GEMMs.

onnxruntime's MatMulNBits (the weight-only int8/int4 matmul of genai graphs) is the fastest
kernel for a decode step, where a matmul multiplies one row, but not for a prefill: on this
project's 2-core CPU (AVX-512 VNNI), in a 232-token prefill of the default model, its matmuls
took 260 ms as MatMulNBits (int8 weights, accuracy level 4) and 114 ms as int8 GEMMs, the whole
pass 294 against 181 ms (`benchmarks/op_profile.py DIR --tokens 232`, with `--graph
model-prefill.onnx` for the second).

`write_prefill_graph` writes `model-prefill.onnx` beside a genai model: the same graph, with
every constant-weight MatMulNBits outside the LM head replaced by

    the rows of x quantised to int8, one scale per row (QuantizeLinear per axis)
    -> MatMulIntegerToFloat with the weights requantised to int8, one scale per column
    -> times each row's scale

Per row, not per tensor: on 20 suggestion prompts (`benchmarks/prefill_agreement.py`) per-row
scales kept the first token of all 20 (relative logit error 5 %); a hand-built variant with
onnxruntime's DynamicQuantizeLinear (one scale for the whole activation) changed 4 (21 %).
Everything else - embedding, norms, attention, the LM head, the KV cache inputs and outputs -
is the main graph's, read from the main graph's data file; only the requantised weights are
new (359 MB for Qwen2.5-Coder-0.5B). One more change: its LM head reads the last position
only (`_last_row_logits`), so its logits are `[batch, 1, vocab]` whatever the main graph gives.
The engine (`engine.causal`) runs it, in long-lived processes, for passes of
`PREFILL_MIN_TOKENS` or more new tokens that need the last position's logits only (a prompt),
and the main graph for the rest; both write the same KV cache.

It needs `onnx`, which the runtime install does not have: `models pull` and `tune` run this file
as a script in the conversion environment (`python prefill.py MODEL_DIR` prints one JSON line,
`{"matmuls": N}`), so it imports nothing from shellfish.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import onnx

    # A matmul's float weights `[K, N]`, or a function that makes them (called only if needed);
    # found for a node: those weights and the name of the tensor they come from ("" for none).
    Weights = np.ndarray | Callable[[], np.ndarray]
    WeightsFound = tuple[Weights, str]

PREFILL_FILE = "model-prefill.onnx"  # = engine.causal.PREFILL_FILE (a test checks)
METADATA_KEY = "shellfish.prefill_graph_of"
_ALIGN = 4096


def prefill_path(model_dir: Path) -> Path:
    return Path(model_dir) / PREFILL_FILE


def prefill_source(model_dir: Path) -> str | None:
    """The decoder graph of `model_dir` a prefill graph is written for: a causal model's one
    graph (optimum's merged decoder or `model.onnx`, genai's), or None."""
    return next(
        (f for f in ("decoder_model_merged.onnx", "model.onnx") if (Path(model_dir) / f).is_file()),
        None,
    )


def dequantize_nbits(q: np.ndarray, scales: np.ndarray, *, bits: int, k: int) -> np.ndarray:
    """MatMulNBits weights (`[N, blocks, blob]` uint8, symmetric, default zero point) as the
    float `[K, N]` matrix they stand for."""
    import numpy as np

    n, blocks = q.shape[0], q.shape[1]
    if bits == 8:
        values = q.astype(np.float32) - 128.0
    elif bits == 4:
        low = (q & 0x0F).astype(np.float32)
        high = (q >> 4).astype(np.float32)
        values = np.stack([low, high], axis=-1).reshape(n, blocks, -1) - 8.0
    else:
        raise ValueError(f"bits must be 4 or 8, not {bits}")
    weights = values * scales.reshape(n, blocks, 1).astype(np.float32)
    return np.ascontiguousarray(weights.reshape(n, -1)[:, :k].T)


def quantize_columns(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per column: (int8 `[K, N]`, float32 scale per column)."""
    import numpy as np

    scale = np.abs(weights).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.round(weights / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


class Int8Gemms:
    """Builds the int8-GEMM form of matmuls into a graph's node list (see the module text):

        rows of x -> int8, one scale per row -> MatMulIntegerToFloat(int8 weights, one scale
        per column) -> times the row scales -> x's leading shape

    Each activation is quantised once however many matmuls read it (q, k and v share it).
    `nodes` is the new node list; `tensors` the weights made, for the caller to store.
    A branch of an If (a merged decoder's) is built with `outer=` the top-level builder: its
    constants and weights go to the outer graph, one copy per source weight for both branches.
    """

    def __init__(
        self, graph: onnx.GraphProto, opset: int, *, outer: Int8Gemms | None = None
    ) -> None:
        self.graph = graph
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self._rows: dict[str, tuple[str, str, str]] = {}
        self._outer = outer
        if outer is None:
            self.tensors: list[onnx.TensorProto] = []
            self._constants: set[str] = set()
            # source weight -> (int8 weight, column scales, K, N)
            self._weights: dict[str, tuple[str, str, int, int]] = {}
        else:
            self.tensors, self._constants = outer.tensors, outer._constants
            self._weights = outer._weights

    def const(self, name: str, value: Any) -> str:
        import numpy as np
        from onnx import numpy_helper

        if name not in self._constants:
            home = self._outer.graph if self._outer is not None else self.graph
            home.initializer.append(numpy_helper.from_array(np.asarray(value), name))
            self._constants.add(name)
        return name

    def rewrite(self, weights_of: Callable[[onnx.NodeProto], WeightsFound | None]) -> int:
        """Build `nodes` from the graph's nodes: each node `weights_of` finds the weights of (W
        or a maker of W, and their source's name - "" for none) as an int8 GEMM, the others as
        they are; returns how many were rewritten."""
        count = 0
        for node in self.graph.node:
            found = weights_of(node)
            if found is None:
                self.nodes.append(node)
            else:
                self.matmul(node, *found)
                count += 1
        return count

    def rows_of(self, x: str, k: int) -> tuple[str, str, str]:
        """Quantise activation `x` ([..., K]) per row once; (int8 rows, row scales, shape)."""
        import numpy as np
        from onnx import helper, numpy_helper

        const = self.const
        if x not in self._rows:
            p = f"{x}/shellfish_rows"
            self.nodes.extend(
                [
                    helper.make_node("Shape", [x], [f"{p}/shape"], name=f"{p}/Shape"),
                    helper.make_node(
                        "Reshape",
                        [x, const(f"shellfish/rows_of_{k}", np.array([-1, k], np.int64))],
                        [f"{p}/2d"],
                        name=f"{p}/Reshape",
                    ),
                    helper.make_node("Abs", [f"{p}/2d"], [f"{p}/abs"], name=f"{p}/Abs"),
                    helper.make_node(
                        "ReduceMax",
                        [f"{p}/abs", const("shellfish/axis1", np.array([1], np.int64))],
                        [f"{p}/absmax"],
                        keepdims=0,
                        name=f"{p}/ReduceMax",
                    )
                    if self.opset >= 18  # axes became an input
                    else helper.make_node(
                        "ReduceMax",
                        [f"{p}/abs"],
                        [f"{p}/absmax"],
                        axes=[1],
                        keepdims=0,
                        name=f"{p}/ReduceMax",
                    ),
                    helper.make_node(
                        "Mul",
                        [f"{p}/absmax", const("shellfish/inv127", np.float32(1 / 127))],
                        [f"{p}/scale0"],
                        name=f"{p}/Scale",
                    ),
                    # an all-zero row keeps a positive scale (and quantises to zeros)
                    helper.make_node(
                        "Max",
                        [f"{p}/scale0", const("shellfish/tiny", np.float32(1e-30))],
                        [f"{p}/scale"],
                        name=f"{p}/Max",
                    ),
                    helper.make_node("Shape", [f"{p}/scale"], [f"{p}/rows"], name=f"{p}/ShapeRows"),
                    helper.make_node(
                        "ConstantOfShape",
                        [f"{p}/rows"],
                        [f"{p}/zero"],
                        value=numpy_helper.from_array(np.array([128], np.uint8)),
                        name=f"{p}/Zero",
                    ),
                    helper.make_node(
                        "QuantizeLinear",
                        [f"{p}/2d", f"{p}/scale", f"{p}/zero"],
                        [f"{p}/q"],
                        axis=0,
                        name=f"{p}/Quantize",
                    ),
                    helper.make_node(
                        "Unsqueeze",
                        [f"{p}/scale", const("shellfish/axis1", np.array([1], np.int64))],
                        [f"{p}/scale2d"],
                        name=f"{p}/Unsqueeze",
                    ),
                ]
            )
            self._rows[x] = (f"{p}/q", f"{p}/scale2d", f"{p}/shape")
        return self._rows[x]

    def matmul(self, node: onnx.NodeProto, weights: Weights, source: str = "") -> None:
        """Append `node` (y = x @ W, W float `[K, N]`) in the int8-GEMM form. `weights` may be
        a function that makes W, called only for a `source` (the weight's name) not seen yet:
        the branches of a merged decoder share one int8 copy."""
        import numpy as np
        from onnx import helper, numpy_helper

        const = self.const
        label = node.name or node.output[0]
        if source in self._weights:
            w_name, s_name, k, n = self._weights[source]
        else:
            matrix = weights() if callable(weights) else weights
            k, n = matrix.shape
            weights_q, column_scale = quantize_columns(matrix)
            w_name, s_name = f"{label}/shellfish_int8_weight", f"{label}/shellfish_int8_scale"
            self.tensors += [
                numpy_helper.from_array(weights_q, w_name),
                numpy_helper.from_array(column_scale, s_name),
            ]
            if source:
                self._weights[source] = (w_name, s_name, k, n)
        aq, row_scale, shape = self.rows_of(node.input[0], k)
        y = node.output[0]
        self.nodes.extend(
            [
                helper.make_node(
                    "MatMulIntegerToFloat",
                    [
                        aq,
                        w_name,
                        const("shellfish/one", np.float32(1.0)),
                        s_name,
                        const("shellfish/zero128", np.uint8(128)),
                    ],
                    [f"{y}/shellfish_2d"],
                    domain="com.microsoft",
                    name=f"{label}/shellfish_MatMulIntegerToFloat",
                ),
                helper.make_node(
                    "Mul",
                    [f"{y}/shellfish_2d", row_scale],
                    [f"{y}/shellfish_rows"],
                    name=f"{label}/shellfish_RowScale",
                ),
                helper.make_node(
                    "Slice",
                    [
                        shape,
                        const("shellfish/zero_i", np.array([0], np.int64)),
                        const("shellfish/minus1", np.array([-1], np.int64)),
                    ],
                    [f"{y}/shellfish_lead"],
                    name=f"{label}/shellfish_Lead",
                ),
                helper.make_node(
                    "Concat",
                    [f"{y}/shellfish_lead", const(f"shellfish/n_{n}", np.array([n], np.int64))],
                    [f"{y}/shellfish_shape"],
                    axis=0,
                    name=f"{label}/shellfish_Shape",
                ),
                helper.make_node(
                    "Reshape",
                    [f"{y}/shellfish_rows", f"{y}/shellfish_shape"],
                    [y],
                    name=f"{label}/shellfish_Reshape",
                ),
            ]
        )

    def install(self, model: onnx.ModelProto) -> None:
        """Put the new node list in the graph, declare the com.microsoft domain and drop the
        initializers no node reads any more (the replaced weights)."""
        from onnx import helper

        graph = self.graph
        del graph.node[:]
        graph.node.extend(self.nodes)
        if not any(op.domain == "com.microsoft" for op in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        used = {name for g in graphs(graph) for nd in g.node for name in nd.input}
        kept = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)


def default_opset(model: onnx.ModelProto) -> int:
    """The model's version of the default ONNX domain (0 when it imports none)."""
    return next((op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), 0)


def write_prefill_graph(model_dir: Path, filename: str = "model.onnx") -> int:
    """Write `model-prefill.onnx` (+ `.data`) for the decoder graph `model_dir/filename` (genai,
    optimum's one-graph `model.onnx`, or a merged decoder, whose If branches it rewrites).

    Returns how many matmuls the prefill graph computes as int8 GEMMs; 0 writes nothing (a
    graph without MatMulNBits has no faster prefill to offer). Tensors it shares with the main
    graph stay in the main graph's data file.
    """
    import onnx

    model_dir = Path(model_dir)
    model = onnx.load(str(model_dir / filename), load_external_data=False)
    graph = model.graph
    opset = default_opset(model)
    if opset < 13:  # per-axis QuantizeLinear, Unsqueeze's axes input
        return 0
    inits = {t.name: t for t in graph.initializer}
    gemms = Int8Gemms(graph, opset)
    count = gemms.rewrite(_nbits_weights(graph, inits, model_dir))
    for node in graph.node:  # a merged decoder: both branches of its If, weights shared
        for branch in subgraphs(node) if node.op_type == "If" else ():
            inner = Int8Gemms(branch, opset, outer=gemms)
            rewritten = inner.rewrite(_nbits_weights(branch, inits, model_dir))
            if rewritten:
                count += rewritten
                del branch.node[:]
                branch.node.extend(inner.nodes)
    if not count:
        return 0
    gemms.install(model)
    _last_row_logits(model, gemms)
    _check_data_files(graph, model_dir)

    out = prefill_path(model_dir)
    data_name = out.name + ".data"
    offset = 0
    with open(model_dir / data_name, "wb") as data:
        for tensor in gemms.tensors:
            raw = tensor.raw_data
            pad = -offset % _ALIGN
            data.write(b"\0" * pad)
            offset += pad
            data.write(raw)
            tensor.ClearField("raw_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (
                ("location", data_name),
                ("offset", str(offset)),
                ("length", str(len(raw))),
            ):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            offset += len(raw)
            graph.initializer.append(tensor)
    meta = model.metadata_props.add()
    meta.key, meta.value = METADATA_KEY, filename
    onnx.save(model, str(out))
    return count


def _nbits_weights(
    graph: onnx.GraphProto, inits: dict[str, onnx.TensorProto], model_dir: Path
) -> Callable[[onnx.NodeProto], WeightsFound | None]:
    """For `Int8Gemms.rewrite`: the float weights of each rewritable MatMulNBits of `graph`
    (`inits`: the top-level initializers, which a branch's nodes read too), keyed by their
    quantised tensor's name so that two branches share one int8 copy."""
    outputs = {o.name for o in graph.output}

    def weights_of(node: onnx.NodeProto) -> WeightsFound | None:
        plan = _rewritable(node, inits, outputs)
        if plan is None:
            return None
        k, _n, bits = plan

        def weights() -> np.ndarray:
            q = _read(inits[node.input[1]], model_dir)
            scales = _read(inits[node.input[2]], model_dir)
            return dequantize_nbits(q, scales, bits=bits, k=k)

        return weights, node.input[1]

    return weights_of


def _last_row_logits(model: onnx.ModelProto, gemms: Int8Gemms) -> None:
    """Feed the LM head the last position's hidden state only: a prefill needs one row of
    logits, and an unpruned head (optimum's GPT-2 export, the genai builder's default) would
    compute one per prompt token - 14 of 30 ms in a 128-token prefill of distilgpt2 at int8.
    The logits output is declared `[batch, 1, vocab]`; a graph whose head takes one row
    already (the builder's pruned head) is left as it is; a merged decoder's head is sliced in
    both branches of its If. Without a recognisable head - the logits made by a matmul of a
    3-d hidden state - nothing changes."""
    graph = model.graph
    logits = next((o for o in graph.output if o.name == "logits"), None)
    dims = logits.type.tensor_type.shape.dim if logits is not None else []
    if logits is None or len(dims) != 3 or dims[1].HasField("dim_value"):
        return
    producer = next((n for n in graph.node if logits.name in n.output), None)
    if producer is not None and producer.op_type == "If":  # a merged decoder: in both branches
        index = list(producer.output).index(logits.name)
        branches = list(subgraphs(producer))
        heads = [_head(b, b.output[index].name) for b in branches]
        if all(heads):
            for branch, head in zip(branches, heads, strict=True):
                assert head is not None
                _last_row_head(branch, *head, gemms)
                _one_row(branch.output[index])
            _one_row(logits)
    elif (head := _head(graph, logits.name)) is not None:
        _last_row_head(graph, *head, gemms)
        _one_row(logits)


def _head(graph: onnx.GraphProto, logits: str) -> tuple[int, onnx.NodeProto] | None:
    """(position, node) of the matmul that makes `logits` in `graph`; None if no matmul does."""
    for i, node in enumerate(graph.node):
        if logits in node.output:
            return (i, node) if node.op_type in ("MatMul", "MatMulNBits") else None
    return None


def _one_row(value: onnx.ValueInfoProto) -> None:
    """Declare `value`'s second dimension (positions) 1, where it declares one."""
    dims = value.type.tensor_type.shape.dim
    if len(dims) >= 2:
        dims[1].Clear()
        dims[1].dim_value = 1


def _last_row_head(
    graph: onnx.GraphProto, position: int, head: onnx.NodeProto, gemms: Int8Gemms
) -> None:
    """Slice the input of `head` (the LM head, node `position` of `graph`: `_head`) to its last
    position."""
    import numpy as np
    from onnx import helper

    const = gemms.const
    hidden = head.input[0]
    last = f"{hidden}/shellfish_last_row"
    graph.node.insert(
        position,
        helper.make_node(
            "Slice",
            [
                hidden,
                const("shellfish/minus1", np.array([-1], np.int64)),
                const("shellfish/int64_max", np.array([np.iinfo(np.int64).max], np.int64)),
                const("shellfish/axis1", np.array([1], np.int64)),
            ],
            [last],
            name=f"{head.name}/shellfish_last_row",
        ),
    )
    head.input[0] = last


def _rewritable(
    node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], outputs: set[str]
) -> tuple[int, int, int] | None:
    """(K, N, bits) of a MatMulNBits the prefill graph computes as an int8 GEMM, else None.

    Only symmetric weights without zero points, group indices or bias, outside the LM head
    (a prefill's logits are one row: nothing to gain) and not a graph output."""
    from onnx import helper

    if node.op_type != "MatMulNBits" or node.domain != "com.microsoft":
        return None
    if len(node.input) != 3 or any(i not in inits for i in node.input[1:]):
        return None
    if "lm_head" in node.name or any(o in outputs for o in node.output):
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    bits = int(attrs.get("bits", 4))
    if bits not in (4, 8):
        return None
    return int(attrs["K"]), int(attrs["N"]), bits


def _read(tensor: onnx.TensorProto, model_dir: Path) -> np.ndarray:
    """A tensor's values, read from its external data file when it has one."""
    import numpy as np
    from onnx import helper, numpy_helper

    if tensor.data_location != tensor.EXTERNAL:
        return numpy_helper.to_array(tensor)
    info = {entry.key: entry.value for entry in tensor.external_data}
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
    count = int(np.prod(tensor.dims)) if tensor.dims else 1
    with open(model_dir / info["location"], "rb") as f:
        f.seek(int(info.get("offset", 0)))
        raw = f.read(count * dtype.itemsize)
    if len(raw) != count * dtype.itemsize:
        raise ValueError(f"{info['location']} ends inside tensor {tensor.name}")
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(tensor.dims))


def _check_data_files(graph: onnx.GraphProto, model_dir: Path) -> None:
    """The data files the kept tensors point at (the main graph's, whose references are kept
    as they are: same folder) are there."""
    for tensor in graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and not (model_dir / entry.value).is_file():
                raise FileNotFoundError(model_dir / entry.value)


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The branches / bodies of an If, Loop or Scan node."""
    for attr in node.attribute:
        if attr.HasField("g"):
            yield attr.g
        yield from attr.graphs


def graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """`graph` and every graph nested in its nodes (store/quantize.py walks them too: they
    live here because this file runs where shellfish is not installed)."""
    yield graph
    for node in graph.node:
        for sub in subgraphs(node):
            yield from graphs(sub)


def main(argv: list[str] | None = None) -> int:
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python prefill.py MODEL_DIR", file=sys.stderr)
        return 2
    print(json.dumps({"matmuls": write_prefill_graph(Path(args[0]))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
