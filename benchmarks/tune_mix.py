"""Write the warm-start training mix of docs/quality.md ("Everyday requests"), seeded.

    python benchmarks/tune_mix.py OUT_DIR [OTHER_TLDR] [NL2BASH]     # defaults 800 1600

OUT_DIR/mix.nl and OUT_DIR/mix.cm (aligned lines) hold every shipped tldr example (common +
linux) whose program is an everyday one (`shellfish.tune.data.implicit_programs` over the
NL2Bash train pairs: ls, tar, find, ...), OTHER_TLDR examples of other programs and NL2Bash
train pairs (replayed so the tuned default does not forget them), shuffled with seed 0. The
run it was made for:

    shellfish tune qwen2.5-coder-0.5b-instruct --name qwen-mix --no-shipped \\
        --pairs OUT_DIR/mix.nl OUT_DIR/mix.cm \\
        --init-adapter models/adapters/qwen2.5-coder-0.5b-shellfish.safetensors \\
        --examples 3 --lr 1e-4 --max-steps 300 --save-every 20 --seed 0
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shellfish.knowledge.shipped import shipped_pairs, shipped_tldr  # noqa: E402
from shellfish.tune.data import (  # noqa: E402
    Collected,
    first_word,
    implicit_programs,
    read_pairs,
    read_tldr,
)


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):  # `--help` is no output directory
        print(__doc__)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    out = Path(argv[0])
    n_other = int(argv[1]) if len(argv) > 1 else 800
    n_nl2bash = int(argv[2]) if len(argv) > 2 else 1600
    pairs, tldr = shipped_pairs(), shipped_tldr()
    if pairs is None or tldr is None:
        print("the shipped NL2Bash pairs or tldr pages are missing", file=sys.stderr)
        return 1
    collected = Collected()
    read_pairs(collected, *pairs, source="nl2bash")
    everyday = implicit_programs(p.command for p in collected.pairs)
    read_tldr(collected, tldr, ("common", "linux"), everyday)
    rng = random.Random(0)
    nl2bash = [p for p in collected.pairs if p.source == "nl2bash"]
    tldr_pairs = [p for p in collected.pairs if p.source == "tldr"]
    common = [p for p in tldr_pairs if first_word(p.command) in everyday]
    other = [p for p in tldr_pairs if first_word(p.command) not in everyday]
    mix = common + rng.sample(other, n_other) + rng.sample(nl2bash, n_nl2bash)
    rng.shuffle(mix)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mix.nl").write_text("".join(p.request + "\n" for p in mix), encoding="utf-8")
    (out / "mix.cm").write_text("".join(p.command + "\n" for p in mix), encoding="utf-8")
    print(f"{len(common)} everyday tldr + {n_other} other tldr + {n_nl2bash} NL2Bash = {len(mix)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
