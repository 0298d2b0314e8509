"""Test helpers: a real interactive shell in a pty, and a deterministic stand-in daemon.

`PtyShell` runs `zsh -f -i` (or `bash --norc -i`) in a pseudo-terminal with a sentinel
prompt; tests type into it like a person and read the edit buffer back through a dump key
bound by the test setup (so a 10,000-character or multi-line buffer is read back exactly).

`FakeDaemon` listens on a real Unix socket, reads one JSON request line per connection, and
answers with marker lines from a script the test provides: that is the daemon protocol's
`lines` reply format, without a model. It records requests and whether the client hung up.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
ZSH_SCRIPT = REPO / "shell-hooks" / "shellfish.zsh"
BASH_SCRIPT = REPO / "shell-hooks" / "shellfish.bash"
PROMPT = "SFPROMPT> "
DUMP_KEY_ZSH = "^G"
DUMP_BYTES = b"\x07"  # Ctrl+G (a single key: no prefix to race with replies)
SUGGEST_BYTES = b"\x18\x01"  # Ctrl+X Ctrl+A (the default suggest key)
FIX_BYTES = b"\x18\x17"  # Ctrl+X Ctrl+W (the default fix key)
UNDO_BYTES = b"\x1f"  # Ctrl+_


def require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} not installed (apt-get install -y {program})")
    return path


def _terminal_signals() -> None:
    """Ctrl+C and Ctrl+\\ as a terminal delivers them. A test run started in the background
    (`make check &`, `nohup`) inherits SIGINT ignored, and a shell started with a signal ignored
    may not trap it: the widgets' Ctrl+C tests then fail for a reason no user has."""
    for number in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(number, signal.SIG_DFL)


class PtyShell:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, dump: Path) -> None:
        self.dump = dump
        self.output = bytearray()
        self._lock = threading.Lock()
        pid, fd = pty.fork()
        if pid == 0:  # child
            try:
                os.chdir(cwd)
                _terminal_signals()
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
        self._stop = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.1)
                if ready:
                    data = os.read(self.fd, 65536)
                    if not data:
                        return
                    with self._lock:
                        self.output.extend(data)
            except OSError:
                return

    def text(self) -> str:
        with self._lock:
            return self.output.decode("utf-8", "replace")

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        # Type in small chunks, as a person (and zle) would see keys arrive.
        for i in range(0, len(data), 512):
            os.write(self.fd, data[i : i + 512])

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(
            f"timed out waiting for {what or predicate}; screen tail:\n{self.text()[-1500:]}"
        )

    def wait_output(self, needle: str, timeout: float = 10.0, since: int = 0) -> None:
        self.wait_for(lambda: needle in self.text()[since:], timeout, f"{needle!r} on screen")

    def mark(self) -> int:
        return len(self.text())

    def prompt_ready(self, since: int = 0, timeout: float = 10.0) -> None:
        self.wait_output(PROMPT, timeout, since)

    def run(self, line: str, timeout: float = 10.0) -> None:
        """Type a command line, press Enter and wait for the next prompt."""
        start = self.mark()
        self.send(line.encode("utf-8", "surrogateescape") + b"\r")
        self.prompt_ready(start + 1, timeout)

    def buffer(self, timeout: float = 10.0) -> str:
        """The edit buffer, via the dump key (exact, including newlines and long text)."""
        self.dump.unlink(missing_ok=True)
        self.send(DUMP_BYTES)
        self.wait_for(self.dump.exists, timeout, "the buffer dump")
        return self.dump.read_bytes().decode("utf-8", "surrogateescape")

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGHUP)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            os.close(self.fd)


class TmuxShell(PtyShell):
    """The same interface as PtyShell, but the shell runs in a real tmux pane (its own tmux
    server on a socket in the test's directory). `text()` is everything the shell wrote to
    the pane (tmux's pipe-pane log, so offsets from `mark()` stay valid); `screen()` is what
    the pane shows now."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, dump: Path) -> None:
        self.dump = dump
        self.log = cwd / "tmux-pane.log"
        self.log.write_bytes(b"")
        self.tmux = [require("tmux"), "-S", str(cwd / "tmux.sock"), "-f", "/dev/null"]
        environ = [f"{k}={v}" for k, v in env.items()]
        # the shell waits for a key before it starts, so the log misses nothing
        start = f"read -r _; exec env -i {' '.join(map(shlex.quote, environ + argv))}"
        size = ["-x", "200", "-y", "50"]
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", "t", *size, "-c", str(cwd), "sh", "-c", start],
            check=True,
            env={**os.environ, "TMUX": ""},
            preexec_fn=_terminal_signals,  # the tmux server, and so the pane's shell
        )
        subprocess.run(
            [*self.tmux, "pipe-pane", "-t", "t", "-o", f"cat >> {shlex.quote(str(self.log))}"],
            check=True,
        )
        subprocess.run([*self.tmux, "send-keys", "-t", "t", "Enter"], check=True)
        pane_pid = subprocess.run(
            [*self.tmux, "display-message", "-p", "-t", "t", "#{pane_pid}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        self.pid = int(pane_pid)

    def text(self) -> str:
        return self.log.read_bytes().decode("utf-8", "replace")

    def screen(self) -> str:
        proc = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", "t"], capture_output=True, check=False
        )
        return proc.stdout.decode("utf-8", "replace")

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        for i in range(0, len(data), 256):  # as hex key codes: control keys included
            chunk = data[i : i + 256]
            subprocess.run([*self.tmux, "send-keys", "-t", "t", "-H", *(f"{b:02x}" for b in chunk)])

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def shell_env(home: Path, tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "TERM": "xterm",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "SHELLFISH_HOME": str(home),
        "TMPDIR": str(tmp),
    }
    env.update(extra)
    return env


def start_zsh(
    tmp: Path, home: Path, *, pre: str = "", tmux: bool = False, **extra: str
) -> PtyShell:
    """`zsh -f -i` with the integration loaded, a sentinel prompt and a dump key (in a pty,
    or in a tmux pane with `tmux=True`)."""
    zsh = require("zsh")
    dump = tmp / "buffer.dump"
    setup = tmp / "setup.zsh"
    setup.write_text(
        "zmodload -F zsh/files b:zf_mv\n"
        f"PS1={PROMPT!r}\nPROMPT_EOL_MARK=''\nunsetopt beep\nsetopt ignoreeof\n"
        f"{pre}\n"
        f"source {ZSH_SCRIPT}\n"
        '_t_dump() { print -rn -- "$BUFFER" >| $_T_DUMP.tmp && zf_mv -f $_T_DUMP.tmp $_T_DUMP }\n'
        f"_T_DUMP={str(dump)!r}\nzle -N _t_dump\nbindkey '{DUMP_KEY_ZSH}' _t_dump\n"
    )
    kind = TmuxShell if tmux else PtyShell
    sh = kind([zsh, "-f", "-i"], shell_env(home, tmp, **extra), tmp, dump)
    sh.send(f". {setup}\r")
    sh.wait_for(lambda: sh.text().count(PROMPT) >= 1, 15, "the sentinel prompt")
    return sh


class FakeDaemon:
    """A Unix-socket server that answers each request line with scripted marker lines.

    `script(request) -> list` of str lines or float delays (seconds) or None (hang up now).
    """

    def __init__(self, path: Path, script: Callable[[dict[str, Any]], list[Any]]) -> None:
        self.path = path
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.hangups = 0  # clients that went away before the reply was complete
        self.replied = threading.Event()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(1 << 20)
                if not chunk:
                    return
                data += chunk
            self.raw.append(data)
            request = json.loads(data.decode("utf-8"))  # must be valid UTF-8 JSON
            self.requests.append(request)
            for step in self.script(request):
                if step is None:
                    conn.shutdown(socket.SHUT_RDWR)
                    self.replied.set()
                    return
                if isinstance(step, (int, float)):
                    # wait, but notice a client that hangs up (a cancel)
                    ready, _, _ = select.select([conn], [], [], step)
                    if ready and not conn.recv(1):
                        self.hangups += 1
                        return
                    continue
                try:
                    conn.sendall(step.encode() + b"\n")
                except OSError:
                    self.hangups += 1
                    return
            self.replied.set()

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def start_bash(tmp: Path, home: Path, *, pre: str = "", **extra: str) -> PtyShell:
    """`bash --norc -i` with the integration loaded, a sentinel prompt and a dump key."""
    bash = require("bash")
    dump = tmp / "buffer.dump"
    setup = tmp / "setup.bash"
    setup.write_text(
        f"PS1={PROMPT!r}\nset -o ignoreeof\nbind 'set bell-style none'\n"
        f"{pre}\n"
        f"source {BASH_SCRIPT}\n"
        f"_t_dump() {{ printf '%s' \"$READLINE_LINE\" > {str(dump)!r}.tmp && "
        f"command mv -f {str(dump)!r}.tmp {str(dump)!r}; }}\n"
        "bind -x '\"\\C-g\": _t_dump'\n"
    )
    sh = PtyShell([bash, "--norc", "--noprofile", "-i"], shell_env(home, tmp, **extra), tmp, dump)
    sh.send(f". {setup}\r")
    sh.wait_for(lambda: sh.text().count(PROMPT) >= 1, 15, "the sentinel prompt")
    return sh
