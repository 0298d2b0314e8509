"""How close a quantised decoder graph stays to its fp32 original, position by position.

    python benchmarks/quant_agreement.py FP32.onnx QUANT.onnx [QUANT2.onnx ...]

Feeds the same tokens to every graph (8 rows x 64 positions, no past: the shipped NL2Bash train
requests encoded with the tokenizer.json beside the first graph, or random ids, seed 0, when
there is none) and prints, against the first: top-1 agreement over all positions, the largest
logit difference relative to the largest fp32 logit, and the smallest cosine similarity of a
position's logits.
Teacher-forced, so one early difference does not decide the rest (unlike greedy agreement).
For single-graph decoders (optimum `model.onnx` / `decoder_model_merged.onnx`, genai
`model.onnx`); 2 threads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROWS, LENGTH = 8, 64
REPO = Path(__file__).resolve().parents[1]


def feeds(
    session: ort.InferenceSession, ids: np.ndarray, kv_dims: dict[str, tuple[int, int]]
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for item in session.get_inputs():
        if item.name == "input_ids":
            out[item.name] = ids
        elif item.name == "attention_mask":
            out[item.name] = np.ones_like(ids)
        elif item.name == "position_ids":
            out[item.name] = np.tile(np.arange(ids.shape[1]), (ids.shape[0], 1))
        elif item.name == "use_cache_branch":
            out[item.name] = np.array([False])
        elif item.name.startswith("past"):
            # (batch, kv heads, 0 positions, head size); genai graphs name every dimension
            heads, size = kv_dims.get(item.name, (item.shape[1], item.shape[3]))
            shape = [ids.shape[0], heads, 0, size]
            out[item.name] = np.zeros(shape, np.float32)
    return out


def text_ids(folder: Path) -> np.ndarray | None:
    """ROWS x LENGTH token ids of real text: the shipped NL2Bash train requests, in order."""
    if not (folder / "tokenizer.json").is_file():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    text = (REPO / "shellfish" / "data" / "knowledge" / "nl2bash-train.nl").read_text()
    ids = tokenizer.encode(text[:20000]).ids[: ROWS * LENGTH]
    return np.array(ids, dtype=np.int64).reshape(ROWS, LENGTH)


def kv_shape(path: str, session: ort.InferenceSession) -> dict[str, tuple[int, int]]:
    """KV heads and head size per past input, from genai_config.json beside a genai graph."""
    config = Path(path).parent / "genai_config.json"
    if not config.is_file():
        return {}
    decoder = json.loads(config.read_text())["model"]["decoder"]
    dims = (int(decoder["num_key_value_heads"]), int(decoder["head_size"]))
    return {i.name: dims for i in session.get_inputs() if i.name.startswith("past")}


def main(paths: list[str]) -> int:
    if len(paths) < 2:
        print(__doc__)
        return 2
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    sessions = [ort.InferenceSession(p, options, providers=["CPUExecutionProvider"]) for p in paths]
    vocab = sessions[0].get_outputs()[0].shape[-1]
    vocab = vocab if isinstance(vocab, int) else 1000
    ids = text_ids(Path(paths[0]).parent)
    if ids is None:  # no tokenizer beside the graph: random ids (harsher on real weights)
        ids = np.random.default_rng(0).integers(0, vocab, (ROWS, LENGTH)).astype(np.int64)
    kv = kv_shape(paths[0], sessions[0])  # the quantised graphs have the same inputs
    ref = sessions[0].run(["logits"], feeds(sessions[0], ids, kv))[0]
    for path, session in zip(paths[1:], sessions[1:], strict=True):
        got = session.run(["logits"], feeds(session, ids, kv))[0]
        top1 = float((ref.argmax(-1) == got.argmax(-1)).mean())
        rel = float(np.abs(ref - got).max() / np.abs(ref).max())
        cos = (ref * got).sum(-1) / np.linalg.norm(ref, axis=-1) / np.linalg.norm(got, axis=-1)
        print(
            f"{path}: top-1 {top1:.3f}, max |diff| / max |fp32| {rel:.4f}, "
            f"min cosine {cos.min():.5f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
