"""Tuning worker: LoRA fine-tuning of a causal LM on prompt -> completion pairs, then merge.

Like `store/convert_worker.py`, this file runs as a *script* inside the export environment
(torch, transformers, safetensors; not necessarily shellfish), so it imports nothing from
shellfish except its sibling script `convert_worker.py` (GGUF -> transformers, the ONNX build).

    python worker.py train --base HF_DIR --data train.jsonl --work DIR [--rank 16] [--alpha 32]
                           [--lr 2e-4] [--epochs 1] [--max-steps N] [--batch-tokens 2048]
                           [--seed 0] [--save-every 50] [--device cpu] [--bf16]
    python worker.py merge --base HF_DIR --adapter DIR --out HF_OUT
    python worker.py hf-from-gguf --input FILE.gguf --out HF_DIR

`train.jsonl` holds one {"prompt": ..., "completion": ...} object a line; the loss covers the
completion tokens only, and the output layer runs only at those positions (the vocabulary
projection is most of the cost of a small model's step). Training checkpoints into `--work`
(`checkpoint.pt`, written atomically) every `--save-every` steps and when interrupted (SIGINT,
SIGTERM), and resumes from it when the same run is started again. A run started again with
more steps (`--max-steps`, `--epochs`) and everything else the same extends the finished or
interrupted one: it goes on from the saved step with a schedule for the new length, and
`adapter.json` lists each stretch (`schedules`). The adapter ends up in `--work/adapter/` as
`adapter.safetensors` (fp16) + `adapter.json`.

Protocol with the parent: `@@progress {json}` lines on stderr (step, steps, tokens, loss,
tokens_per_s), `@@error KIND message` before a non-zero exit (KIND: oom, missing, data), one
JSON line on stdout at the end. Exit 130 after an interrupt (the checkpoint is saved).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

# Linear layers of Llama/Qwen2-style decoders that get an adapter (every one but the LM head).
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
MAX_SEQUENCE = 1024  # tokens; longer examples are skipped (and counted)
# Steps in a row whose loss or gradient is not a finite number before the run gives up. One such
# step is skipped (no update: a single NaN would poison every weight it reaches, and the adapter
# after it); many in a row mean the run diverged.
MAX_NONFINITE_IN_ROW = 20


def report(kind: str, payload: dict[str, Any] | str) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    print(f"@@{kind} {text}", file=sys.stderr, flush=True)


def fail(kind: str, message: str) -> int:
    report("error", f"{kind} {message}")
    return EXIT_ERROR


class Interrupt:
    """Turns SIGINT / SIGTERM into a flag the training loop checks after each step."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True


# -- LoRA ---------------------------------------------------------------------------------------
def add_lora(model: Any, rank: int, alpha: float, seed: int) -> dict[str, Any]:
    """Wrap every target linear layer with a low-rank adapter; returns {module name: wrapper}.

    y = W x + (alpha / rank) * B A x, with A random and B zero, so the wrapped model starts out
    computing exactly what the base model does. Only A and B train.
    """
    import torch

    class LoRALinear(torch.nn.Module):
        def __init__(self, base: Any) -> None:
            super().__init__()
            self.base = base
            self.scale = alpha / rank
            self.lora_a = torch.nn.Parameter(torch.empty(rank, base.in_features))
            self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            torch.nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

        def forward(self, x: Any) -> Any:
            delta = (x.to(self.lora_a.dtype) @ self.lora_a.t()) @ self.lora_b.t()
            return self.base(x) + (delta * self.scale).to(x.dtype)

    torch.manual_seed(seed)
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped: dict[str, Any] = {}
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in TARGETS and isinstance(child, torch.nn.Linear):
                lora = LoRALinear(child)
                setattr(module, child_name, lora)
                wrapped[f"{name}.{child_name}" if name else child_name] = lora
    return wrapped


# -- data -----------------------------------------------------------------------------------------
def load_examples(path: Path, tokenizer: Any) -> tuple[list[tuple[list[int], int]], int]:
    """Token ids of prompt + completion, and where the completion starts; skipped count."""
    examples: list[tuple[list[int], int]] = []
    skipped = 0
    eos = tokenizer.eos_token_id
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                item = json.loads(line)
                prompt, completion = str(item["prompt"]), str(item["completion"])
            except (ValueError, KeyError, TypeError):
                skipped += 1
                continue
            p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
            if eos is not None:
                c_ids = [*c_ids, eos]
            if not completion.strip() or len(p_ids) + len(c_ids) > MAX_SEQUENCE:
                skipped += 1
                continue
            examples.append(([*p_ids, *c_ids], len(p_ids)))
    return examples, skipped


def batches(
    examples: list[tuple[list[int], int]], batch_tokens: int, seed: int, epoch: int
) -> list[list[int]]:
    """Example indices grouped by similar length (little padding), in a seeded order."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    out: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = len(examples[i][0])
        if current and max(longest, n) * (len(current) + 1) > batch_tokens:
            out.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        out.append(current)
    random.Random(seed * 1000 + epoch).shuffle(out)
    return out


def collate(examples: list[tuple[list[int], int]], idx: list[int], pad: int) -> tuple[Any, ...]:
    import torch

    length = max(len(examples[i][0]) for i in idx)
    ids = torch.full((len(idx), length), pad, dtype=torch.long)
    mask = torch.zeros((len(idx), length), dtype=torch.long)
    target = torch.zeros((len(idx), length), dtype=torch.bool)  # token t is a completion token
    for row, i in enumerate(idx):
        tokens, start = examples[i]
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
        target[row, start : len(tokens)] = True
    return ids, mask, target


def completion_loss(model: Any, ids: Any, mask: Any, target: Any) -> Any:
    """Mean cross-entropy of the completion tokens; the LM head runs at those positions only."""
    import torch.nn.functional as F

    hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    predicts = target[:, 1:]  # position t predicts token t + 1
    h = hidden[:, :-1][predicts]
    logits = model.get_output_embeddings()(h)
    return F.cross_entropy(logits.float(), ids[:, 1:][predicts])


# -- train ----------------------------------------------------------------------------------------
def run_key(args: argparse.Namespace, data_sha: str) -> str:
    """What must match for a checkpoint to be resumed or extended (same base, data,
    hyper-parameters; the run's length may differ)."""
    fields = [
        str(args.base.resolve()),
        data_sha,
        args.rank,
        args.alpha,
        args.lr,
        args.batch_tokens,
        args.seed,
    ]
    if args.init_adapter is not None:  # a run that starts from another adapter is another run
        fields.append(sha256_of(args.init_adapter))
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_atomic(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    interrupt = Interrupt()
    args.work.mkdir(parents=True, exist_ok=True)
    key = run_key(args, sha256_of(args.data))
    tokenizer = AutoTokenizer.from_pretrained(str(args.base))
    examples, skipped = load_examples(args.data, tokenizer)
    if not examples:
        return fail("data", f"no usable training example in {args.data} ({skipped} skipped)")
    model = AutoModelForCausalLM.from_pretrained(str(args.base), torch_dtype=torch.float32)
    if not hasattr(model, "base_model") or model.get_output_embeddings() is None:
        return fail("data", "this model has no separate decoder and LM head to tune")
    wrapped = add_lora(model, args.rank, args.alpha, args.seed)
    if not wrapped:
        return fail(
            "data",
            f"no layer named {', '.join(TARGETS)}: only Llama/Qwen2-style models can be tuned",
        )
    model.to(args.device)
    params = [p for w in wrapped.values() for p in (w.lora_a, w.lora_b)]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    order = (0, batches(examples, args.batch_tokens, args.seed, 0))  # (epoch, its batches)
    per_epoch = len(order[1])
    total = per_epoch * args.epochs
    if args.max_steps:
        total = min(total, args.max_steps)

    def lr_at(step: int) -> float:  # linear warm-up, then linear decay to 10 %, per stretch
        span = total - first
        warmup = max(1, span // 20)
        at = step - first
        if at < warmup:
            return args.lr * (at + 1) / warmup
        return args.lr * max(0.1, 1 - (at - warmup) / max(1, span - warmup))

    step, tokens_seen = 0, 0
    # Each stretch of the run: the step it started at and the length its schedule was made for.
    schedules: list[dict[str, int]] = [{"from": 0, "total": total}]
    checkpoint = args.work / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state.get("key") == key:
            for name, w in wrapped.items():
                w.lora_a.data.copy_(state["lora"][f"{name}.lora_a"])
                w.lora_b.data.copy_(state["lora"][f"{name}.lora_b"])
            optimizer.load_state_dict(state["optimizer"])
            step, tokens_seen = int(state["step"]), int(state["tokens"])
            schedules = list(state.get("schedules") or [{"from": 0, "total": total}])
            if schedules[-1]["total"] != total:
                if step > total:
                    return fail(
                        "data",
                        f"this run already took {step} steps, more than the {total} asked for;"
                        f" ask for more steps, or remove {checkpoint} to start over",
                    )
                schedules.append({"from": step, "total": total})
                report("extended", {"step": step, "steps": total})
            else:
                report("resumed", {"step": step})
    if step == 0 and args.init_adapter is not None:
        problem = init_from(wrapped, args.init_adapter)
        if problem:
            return fail("data", problem)
        report("initialised", {"adapter": str(args.init_adapter)})
    first = schedules[-1]["from"]  # where the current schedule's warm-up begins
    losses: list[float] = []
    nonfinite, in_row = 0, 0  # skipped steps: in all, and in a row now

    def save(done: bool) -> None:
        lora = {}
        for name, w in wrapped.items():
            lora[f"{name}.lora_a"] = w.lora_a.detach().cpu().clone()
            lora[f"{name}.lora_b"] = w.lora_b.detach().cpu().clone()
        state = {"key": key, "lora": lora, "optimizer": optimizer.state_dict()}
        progress = {"step": step, "tokens": tokens_seen, "done": done, "schedules": schedules}
        save_atomic({**state, **progress}, checkpoint)

    model.train()
    started, seen_at_start = time.monotonic(), tokens_seen
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    while step < total:
        epoch, position = divmod(step, per_epoch)
        if order[0] != epoch:
            order = (epoch, batches(examples, args.batch_tokens, args.seed, epoch))
        idx = order[1][position]
        ids, mask, target = (t.to(args.device) for t in collate(examples, idx, pad))
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        try:
            with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.bf16):
                loss = completion_loss(model, ids, mask, target)
            finite = bool(torch.isfinite(loss))
            if finite:
                loss.backward()
        except (torch.OutOfMemoryError, MemoryError) as exc:
            return fail("oom", f"out of memory at step {step}: {exc}".splitlines()[0])
        if finite:
            norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            finite = bool(torch.isfinite(norm))
        if finite:
            optimizer.step()
            in_row = 0
        else:
            nonfinite += 1
            in_row += 1
            report("nonfinite", {"step": step, "in_row": in_row, "total": nonfinite})
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += int(mask.sum())
        if finite:
            losses.append(float(loss))
        if in_row >= MAX_NONFINITE_IN_ROW:
            return fail(
                "data",
                f"training diverged: the loss or its gradient was not a finite number for"
                f" {in_row} steps in a row (up to step {step}); try a lower --lr",
            )
        rate = (tokens_seen - seen_at_start) / max(1e-6, time.monotonic() - started)
        report(
            "progress",
            {
                "step": step,
                "steps": total,
                "tokens": tokens_seen,
                "loss": round(float(loss), 4) if finite else None,
                "tokens_per_s": round(rate, 1),
            },
        )
        if interrupt.requested:
            save(done=False)
            report("interrupted", {"step": step})
            return EXIT_INTERRUPTED
        if args.save_every and step % args.save_every == 0:
            save(done=False)
    save(done=True)
    write_adapter(wrapped, args, step, skipped, len(examples), schedules, nonfinite)
    print(
        json.dumps(
            {
                "steps": step,
                "tokens": tokens_seen,
                "skipped": skipped,
                "examples": len(examples),
                "nonfinite_steps": nonfinite,
                "first_loss": losses[0] if losses else None,
                "last_loss": losses[-1] if losses else None,
            }
        )
    )
    return 0


def init_from(wrapped: dict[str, Any], path: Path) -> str:
    """Start the adapter at the weights of a saved one (`write_adapter`'s file, same targets and
    rank): "" when done, else what does not fit."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        return f"cannot read the adapter {path}: {exc}"
    for name, w in wrapped.items():
        for part, param in (("lora_a", w.lora_a), ("lora_b", w.lora_b)):
            tensor = tensors.get(f"{name}.{part}")
            if tensor is None or tuple(tensor.shape) != tuple(param.shape):
                found = "missing" if tensor is None else f"shape {tuple(tensor.shape)}"
                return (
                    f"the adapter {path} does not fit this model: {name}.{part} is {found}, "
                    f"expected {tuple(param.shape)} (same base model and --rank?)"
                )
            param.data.copy_(tensor.to(param.dtype))
    return ""


def write_adapter(
    wrapped: dict[str, Any],
    args: argparse.Namespace,
    steps: int,
    skipped: int,
    n: int,
    schedules: list[dict[str, int]],
    nonfinite: int = 0,
) -> None:
    import torch
    from safetensors.torch import save_file

    out = args.work / "adapter"
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, w in wrapped.items():
        tensors[f"{name}.lora_a"] = w.lora_a.detach().to(torch.float16).cpu().contiguous()
        tensors[f"{name}.lora_b"] = w.lora_b.detach().to(torch.float16).cpu().contiguous()
    save_file(tensors, str(out / "adapter.safetensors"))
    meta = {
        "rank": args.rank,
        "alpha": args.alpha,
        "targets": list(TARGETS),
        "steps": steps,
        "schedules": schedules,
        "examples": n,
        "skipped": skipped,
        "nonfinite_steps": nonfinite,
        "adapter_sha256": sha256_of(out / "adapter.safetensors"),
    }
    (out / "adapter.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _convert_worker() -> Any:
    """store/convert_worker.py, which merges adapters and reads GGUFs for every path."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "store"))
    import convert_worker

    return convert_worker


def merge(args: argparse.Namespace) -> int:
    try:
        n = _convert_worker().merged_checkpoint(args.base, args.adapter, args.out)
    except ValueError as exc:
        return fail("data", str(exc))
    print(json.dumps({"merged_layers": n, "out": str(args.out)}))
    return 0


def hf_from_gguf(args: argparse.Namespace) -> int:
    _convert_worker().gguf_to_hf(args.input, args.out)
    print(json.dumps({"out": str(args.out)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tune_worker")
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("train")
    t.add_argument("--base", required=True, type=Path)
    t.add_argument("--data", required=True, type=Path)
    t.add_argument("--work", required=True, type=Path)
    t.add_argument("--rank", type=int, default=16)
    t.add_argument("--alpha", type=float, default=32.0)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--max-steps", type=int, default=0)
    t.add_argument("--batch-tokens", type=int, default=2048)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save-every", type=int, default=50)
    t.add_argument("--device", default="cpu")
    t.add_argument("--bf16", action="store_true")
    t.add_argument("--init-adapter", type=Path, help="start from this adapter.safetensors")
    m = sub.add_parser("merge")
    m.add_argument("--base", required=True, type=Path)
    m.add_argument("--adapter", required=True, type=Path)
    m.add_argument("--out", required=True, type=Path)
    g = sub.add_parser("hf-from-gguf")
    g.add_argument("--input", required=True, type=Path)
    g.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        return fail("missing", f"{exc.name or exc} is not installed in this environment")
    if args.mode == "train":
        return train(args)
    if args.mode == "merge":
        return merge(args)
    return hf_from_gguf(args)


if __name__ == "__main__":
    sys.exit(main())
