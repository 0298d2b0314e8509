"""Weight-only quantisation of fp32 ONNX graphs: every constant-weight matmul -> MatMulNBits.

`shellfish models quantize NAME --int8` and `benchmarks/make_models.py` (the bench's int8 and
int4 rows) use it; on the way a GPT-2 export's attention becomes GroupQueryAttention over one
shared KV buffer (`store/attention.py`). MatMulNBits keeps the weights in 8 (or 4) bits per
value with a scale per block of `block_size` input rows; at accuracy level 4 onnxruntime
multiplies them with int8 activations (quantised per block as they arrive), so the work is
int8 GEMMs without the DynamicQuantizeLinear / MatMulInteger / dequantise operators around
every matmul that dynamic quantisation adds. Measured on random-weight gpt2 at 2 threads
(README "Engine speed"): 5.8 ms/token against CTranslate2 int8's 12.3 (dynamic int8, which
this replaces: 15.2; with the shared KV buffer, a later table: 3.8 against 11.9); block 128
decoded 5-15 % faster than block 32 at about the same agreement with fp32, and stays much
closer to fp32 than dynamic int8 (`benchmarks/quant_agreement.py`: 91 % against 52 % top-1 on
the real SmolLM2).

The quantiser only sees `MatMul(x, constant)`. Exporters also write `Gemm(x, W, b)` (GPT-2's
Conv1D layers, transposed or not) and `MatMul(x, Transpose(constant))` (a tied output layer);
`prepare` rewrites both into that form first, inside If/Loop branches too (merged decoders keep
their weights in the outer graph), and the result computes the same values in fp32.

A seq2seq *encoder* at int8 is written in another form (`int8_gemm_file`): its matmuls always
multiply the whole prompt at once, where MatMulNBits is not the fastest kernel (it is for a
decode step's single row). Each becomes an int8 GEMM - the rows of x quantised to int8 with a
scale per row as they arrive, MatMulIntegerToFloat with the weights in int8 per column -, the
form of the default model's prefill graph (store/prefill.py). Time to first token at a
128-token context (`shellfish bench --engines shellfish-int8,ct2-int8 --contexts 16,128
--rounds 5`, only the encoder file swapped): flan-t5-small 36.4 -> 20.9 ms, flan-t5-base
104.4 -> 69.6 ms. Its outputs differ from fp32 by 4.6-4.7 % of their largest value there
(MatMulNBits: 3.4-3.8 %).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from shellfish.store.prefill import Int8Gemms, default_opset, graphs, subgraphs

if TYPE_CHECKING:
    import onnx

INT8_BLOCK = 128
INT4_BLOCK = 32
ACCURACY_LEVEL = 4  # int8 compute
# Tensors of at least this many bytes go to the graph's `.data` file (see `_save`).
EXTERNAL_DATA_FROM = 1024


def quantize_file(
    src: Path, dst: Path, *, bits: int, block_size: int | None = None, share_kv: bool = True
) -> int:
    """Write `src` with its constant-weight matmuls in `bits` bits to `dst`; returns how many.

    With `share_kv`, a GPT-2-style decoder's attention also becomes GroupQueryAttention over a
    shared KV buffer (`store/attention.py`; other graphs are left as they are).
    Raises whatever onnx / onnxruntime raise on a graph they cannot read; callers turn that into
    their own error (nothing is written to `dst` before the quantised graph is complete).
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from shellfish.store.attention import share_kv_buffer

    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, not {bits}")
    model = onnx.load(str(src))
    prepare(model)
    if share_kv:
        share_kv_buffer(model)
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=bits,
        block_size=block_size or (INT8_BLOCK if bits == 8 else INT4_BLOCK),
        is_symmetric=True,
        accuracy_level=ACCURACY_LEVEL,
    )
    quantizer.process()
    out = quantizer.model.model
    count = sum(1 for graph in graphs(out.graph) for n in graph.node if n.op_type == "MatMulNBits")
    _save(out, dst)
    return count


def _save(model: onnx.ModelProto, dst: Path) -> None:
    """Write `model` to `dst` with its weights in `dst.name + ".data"` beside it: onnxruntime
    maps that file instead of parsing the weights out of the graph, so a session loads faster
    and with less memory (gpt2 int8, `benchmarks/session_load.py`: 746 -> 402 ms, peak RSS
    633 -> 360 MB), a prefill graph reads the same file (store/prefill.py), and no graph meets
    protobuf's 2 GB cap."""
    import onnx

    dst.parent.mkdir(parents=True, exist_ok=True)
    data = dst.with_name(dst.name + ".data")
    data.unlink(missing_ok=True)  # onnx appends to it
    onnx.save(
        model,
        str(dst),
        save_as_external_data=True,
        location=data.name,
        all_tensors_to_one_file=True,
        size_threshold=EXTERNAL_DATA_FROM,
    )


def int8_gemm_file(src: Path, dst: Path) -> int:
    """Write `src` with its constant-weight matmuls as int8 GEMMs (activations quantised per
    row at run time, weights per column from their fp32 values) to `dst`; returns how many.

    Only the top-level graph's matmuls are rewritten (an encoder has no branches). A graph
    below opset 13 (no per-axis QuantizeLinear) gets MatMulNBits instead.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    opset = default_opset(model)
    if opset < 13:
        return quantize_file(src, dst, bits=8)
    prepare(model)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}

    def weights_of(node: onnx.NodeProto) -> tuple[Any, str] | None:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2 or weight.data_type != onnx.TensorProto.FLOAT:
            return None
        return numpy_helper.to_array(weight), ""

    gemms = Int8Gemms(graph, opset)
    count = gemms.rewrite(weights_of)
    gemms.install(model)
    graph.initializer.extend(gemms.tensors)
    _save(model, dst)
    return count


def int8_as_gemms(rel: str, family: str) -> bool:
    """Whether `shellfish models quantize --int8` writes graph `rel` of a `family` model as
    int8 GEMMs (`int8_gemm_file`) rather than MatMulNBits: a seq2seq model's encoder."""
    return family == "seq2seq" and Path(rel).name.startswith("encoder")


def prepare(model: onnx.ModelProto) -> int:
    """Rewrite constant-weight `Gemm` and `MatMul(x, Transpose(constant))` as plain
    `MatMul(x, constant)` (+ `Add` for a bias), in place; returns how many were rewritten."""
    from onnx import helper, numpy_helper

    owners: dict[str, onnx.GraphProto] = {}  # initializer name -> the graph holding it
    tensors: dict[str, onnx.TensorProto] = {}
    transposed: dict[str, str] = {}  # initializer -> its transposed copy's name

    def transpose_of(name: str, perm: list[int] | None = None) -> str:
        if name not in transposed:
            array = numpy_helper.to_array(tensors[name])
            copy = array.transpose(perm) if perm else array.T
            new = _unique(f"{name}_transposed", tensors)
            tensor = numpy_helper.from_array(copy.copy(), new)
            owners[name].initializer.append(tensor)
            owners[new], tensors[new] = owners[name], tensor
            transposed[name] = new
        return transposed[name]

    def walk(graph: onnx.GraphProto) -> int:
        for init in graph.initializer:
            owners[init.name], tensors[init.name] = graph, init
        producers = {out: node for node in graph.node for out in node.output}
        rewritten = 0
        nodes: list[onnx.NodeProto] = []
        for node in graph.node:
            for sub in subgraphs(node):
                rewritten += walk(sub)
            if node.op_type == "Gemm" and _plain_gemm(node) and node.input[1] in tensors:
                weight, label = node.input[1], node.name or node.output[0]  # names are unique
                if _attr(node, "transB", 0):
                    weight = transpose_of(weight)
                bias = node.input[2] if len(node.input) > 2 and node.input[2] else ""
                product = f"{node.output[0]}_matmul" if bias else node.output[0]
                nodes.append(
                    helper.make_node(
                        "MatMul", [node.input[0], weight], [product], name=f"{label}_MatMul"
                    )
                )
                if bias:
                    nodes.append(
                        helper.make_node(
                            "Add", [product, bias], [node.output[0]], name=f"{label}_Add"
                        )
                    )
                rewritten += 1
                continue
            source = producers.get(node.input[1]) if node.op_type == "MatMul" else None
            if (
                source is not None
                and source.op_type == "Transpose"
                and source.input[0] in tensors
                and len(tensors[source.input[0]].dims) == 2
            ):
                node.input[1] = transpose_of(source.input[0], _attr(source, "perm", None))
                rewritten += 1
            nodes.append(node)
        del graph.node[:]
        graph.node.extend(nodes)
        return rewritten

    rewritten = walk(model.graph)
    drop_unused(model.graph)
    return rewritten


def _plain_gemm(node: onnx.NodeProto) -> bool:
    return (
        _attr(node, "alpha", 1.0) == 1.0
        and _attr(node, "beta", 1.0) == 1.0
        and not _attr(node, "transA", 0)
    )


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return list(value) if name == "perm" else value
    return default


def _unique(name: str, taken: dict[str, Any]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def drop_unused(root: onnx.GraphProto) -> None:
    """Remove nodes whose outputs nothing reads, then initializers nothing reads (the weights
    the rewrite replaced by transposed copies), in every graph; graph outputs stay."""
    all_graphs = list(graphs(root))
    removed = True
    while removed:  # until a pass removes nothing: then `read` is what the graphs read
        read = {name for g in all_graphs for n in g.node for name in n.input}
        read |= {o.name for g in all_graphs for o in g.output}
        removed = False
        for g in all_graphs:
            keep = [n for n in g.node if any(o in read for o in n.output) or not n.output]
            if len(keep) != len(g.node):
                del g.node[:]
                g.node.extend(keep)
                removed = True
    for g in all_graphs:
        keep_init = [t for t in g.initializer if t.name in read]
        if len(keep_init) != len(g.initializer):
            del g.initializer[:]
            g.initializer.extend(keep_init)
