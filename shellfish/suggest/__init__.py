"""The suggest (and fix) path: words in, one checked shell command out.

Stages, in the order `run_suggest` runs them, and where each lives:

1. retrieve (`retrieval`): search the local knowledge index (tldr pages, the user's redacted
   history, a configured NL->command pairs file, local `--help` / man pages) for examples,
   option lines and neighbour commands.
2. prompt (`prompts`): an instruction (OS, shell, cwd), the examples
   as earlier turns, the request.
3. generate (`pipeline`): the model's answer(s); the first streams as `Token` events.
4. gather candidates (`candidates`): one command out of each answer (an unrequested `sudo`
   dropped), plus the nearest retrieved commands, duplicates merged.
5. check (`checks`): program installed, parses in the user's shell, flags documented
   locally, danger (`shellfish.shell.danger`).
6. rank (`ranking`): a vote over the candidates' programs, penalties for problems, and a
   confidence for each.
7. rewrite (`pipeline._adapt`): when a retrieved command wins, the model writes the same
   programs again with this request's own arguments.
8. answer (`pipeline`): one `Done` event.

Checks, ranking and the rewrite read a command's programs and flags with
`shellfish.shell.syntax`, the one command-line parser.

Modes (`request.options["mode"]`):
- ``zero-shot``: the instruction prompt and the model's first answer (stages 2-4, 8).
- ``retrieval``: the prompt also carries retrieved examples (and option lines, if asked).
- ``full`` (default): every stage.

Events: `Token` events of the first candidate as it streams (or `Status` events), then one
`Done` whose `texts` are the ranked commands (best first) and whose `extra` holds
``candidates`` (command, valid, problems, danger, score, certainty, confidence), ``warnings``
(for the best, a low confidence included) and ``retrieved`` (ids of the examples used).
"""

from __future__ import annotations

from shellfish.suggest.pipeline import MODES, run_suggest

__all__ = ["MODES", "run_suggest"]
