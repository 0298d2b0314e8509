from __future__ import annotations

import subprocess
import sys

from shellfish.cli import main
from shellfish.errors import ExitStatus


def test_empty_prompt_is_a_clear_usage_error(make_env) -> None:
    env = make_env("")
    status = main(["prompt"], env)
    assert status == ExitStatus.USAGE
    err = env.stderr.getvalue()
    assert err.startswith("shellfish: error: nothing to do: the request is empty")
    assert "Traceback" not in err


def test_help_lists_the_main_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shellfish", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("suggest", "prompt", "translate", "explain", "ask"):
        assert command in out


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = (
        "import sys, shellfish.cli; shellfish.cli.build_parser(); "
        "names = ('onnxruntime', 'numpy', 'openai', 'torch', 'prompt_toolkit'); "
        "heavy = [m for m in names if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_the_hidden_widget_command_is_in_no_usage_list(make_env) -> None:
    from shellfish.cli import HIDDEN_COMMANDS, build_parser

    parser = build_parser()
    assert "widget" in HIDDEN_COMMANDS
    assert "widget" not in parser.format_help()
    proc = subprocess.run(
        [sys.executable, "-m", "shellfish", "no-such-command"], capture_output=True, text=True
    )
    assert proc.returncode == ExitStatus.USAGE
    assert "invalid choice: 'no-such-command'" in proc.stderr and "'suggest'" in proc.stderr
    assert "widget" not in proc.stderr
    # ...and it still works for the widgets.
    assert parser.parse_args(["widget", "suggest"]).task == "suggest"
