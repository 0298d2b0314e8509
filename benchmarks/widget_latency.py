"""Key press to line replaced: the zsh widget's suggestion latency, timed in a real shell.

Not a test. Starts a daemon on a scratch SHELLFISH_HOME (models and index linked from --home,
as benchmarks/suggest_stages.py does), warms it with one request (model load, not counted),
then runs `zsh -f -i` in a pseudo-terminal with shell-hooks/shellfish.zsh loaded and, for each
request, types it, presses the suggest key (Ctrl+X Ctrl+A) and waits for the edit buffer to
change. zsh itself writes the time of every buffer change (`$EPOCHREALTIME`: typing, from a
`line-pre-redraw` hook; the suggestion, right after the widget's reply handler has put it on
the line and redrawn it), so the figure is key bytes written -> new line drawn: the widget's
request over zsh's socket module, the daemon, the reply, zle. Each request is new to the
daemon.

    python benchmarks/widget_latency.py --home /work/cache/shellfish-home -n 30
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import pty
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from suggest_stages import checked_requests, request_args, scratch_home

from shellfish.bench.stages import ask

REPO = Path(__file__).resolve().parents[1]
PROMPT = "WLPROMPT> "
SUGGEST_KEY = b"\x18\x01"  # Ctrl+X Ctrl+A, the default
KILL_LINE = b"\x15"  # Ctrl+U


class Shell:
    """zsh in a pty; its buffer changes are read back from the log its hook writes."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.log = tmp / "buffer.log"
        setup = tmp / "setup.zsh"
        setup.write_text(
            f"PS1={PROMPT!r}\nPROMPT_EOL_MARK=''\nunsetopt beep\n"
            f"source {REPO / 'shell-hooks' / 'shellfish.zsh'}\n"
            "zmodload zsh/datetime\nautoload -Uz add-zle-hook-widget\n"
            f"_wl_log={str(self.log)!r}\n_wl_last=''\n"
            "_wl_watch() {\n"
            '  [[ "$BUFFER" == "$_wl_last" ]] && return\n'  # quoted: literal, not a pattern
            "  _wl_last=$BUFFER\n"
            "  print -r -- \"$EPOCHREALTIME ${BUFFER//$'\\n'/ }\" >> $_wl_log\n"
            "}\n"
            "add-zle-hook-widget line-pre-redraw _wl_watch\n"
            # a reply's handler redraws without that hook: log after it has drawn the line
            "functions -c _shellfish_finish _wl_finish\n"
            '_shellfish_finish() { _wl_finish "$@"; _wl_watch }\n'
        )
        zsh = shutil.which("zsh")
        if zsh is None:
            raise SystemExit("zsh is not installed (apt-get install -y zsh)")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # no rc files (-f): the setup is typed in as the first line
            os.chdir(tmp)
            os.execve(zsh, [zsh, "-f", "-i"], env)
        self.output = b""
        self.send(f"source {setup}\r".encode())
        self.wait(lambda: PROMPT.encode() in self.output, 20, "the prompt")

    def pump(self, seconds: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], seconds)
        if ready:
            with contextlib.suppress(OSError):  # the shell has gone
                self.output += os.read(self.fd, 65536)

    def wait(self, done: Callable[[], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}: {self.output[-400:]!r}")
            self.pump(0.005)

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def changes(self) -> list[tuple[float, str]]:
        if not self.log.exists():
            return []
        rows = []
        for line in self.log.read_text(errors="replace").splitlines():
            stamp, _, buffer = line.partition(" ")
            rows.append((float(stamp), buffer))
        return rows

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, signal.SIGHUP)
            os.waitpid(self.pid, 0)


def suggest(shell: Shell, text: str, timeout: float) -> tuple[float, str]:
    """Type `text`, press the key; (ms from the key to the new buffer, the new buffer)."""
    seen = len(shell.changes())
    shell.send(text.encode())
    shell.wait(lambda: any(b == text for _, b in shell.changes()[seen:]), 10, "the typed line")
    seen = len(shell.changes())
    started = time.time()
    shell.send(SUGGEST_KEY)
    shell.wait(lambda: len(shell.changes()) > seen, timeout, "the suggestion")
    stamp, buffer = shell.changes()[seen]
    seen = len(shell.changes())
    shell.send(KILL_LINE)
    shell.wait(lambda: any(b == "" for _, b in shell.changes()[seen:]), 10, "an empty line")
    return (stamp - started) * 1000, buffer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    request_args(parser)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per suggestion")
    args = parser.parse_args()
    texts, source = checked_requests(parser, args)
    with tempfile.TemporaryDirectory(prefix="shellfish-widget-") as tmp_dir:
        tmp = Path(tmp_dir)
        home = tmp / "home"
        scratch_home(args.home, home)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp),
            "TERM": "xterm",
            "LANG": "C.UTF-8",
            "SHELLFISH_HOME": str(home),
            "SHELLFISH_HISTORY_ENABLED": "false",
        }
        run = {**os.environ, **env}
        start = os.getloadavg()
        print(f"load average at start: {start[0]:.2f} {start[1]:.2f} {start[2]:.2f}", flush=True)
        subprocess.run([sys.executable, "-m", "shellfish", "daemon", "start"], env=run,
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        shell = None
        try:
            ask(home / "run" / "daemon.sock", "show the current date", "warm-up")
            shell = Shell(env, tmp)
            times = []
            for text in texts:
                ms, line = suggest(shell, text, args.timeout)
                times.append(ms)
                print(f"{ms:8.0f} ms  {text[:50]!r} -> {line[:50]!r}", flush=True)
        finally:
            if shell is not None:
                shell.close()
            subprocess.run([sys.executable, "-m", "shellfish", "daemon", "stop"], env=run,
                           stdout=subprocess.DEVNULL)  # fmt: skip
    end = os.getloadavg()
    times.sort()
    p90 = times[max(0, math.ceil(0.9 * len(times)) - 1)]  # nearest rank
    print(f"\n{len(times)} requests ({source}), key press to line replaced: "
          f"p50 {statistics.median(times):.0f} ms, p90 {p90:.0f} ms, "
          f"max {times[-1]:.0f} ms")  # fmt: skip
    print(f"load average at end: {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
