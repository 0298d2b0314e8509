"""The interactive REPL: prompt_toolkit for input, the stream renderer for answers.

Everything it touches comes in as a parameter, so tests drive it with prompt_toolkit's pipe
input, a `DummyOutput`, a rich console writing into a buffer and a stream function of their
own: `Repl(env, stream=..., input=..., output=..., console=...)`.

Keys: Enter sends, Esc Enter (Alt+Enter) inserts a newline, Tab completes slash commands,
Up/Down walk the persistent history, Ctrl-C clears the line (or stops a streaming answer and
keeps the session), Ctrl-D on an empty line exits.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shellfish.errors import ExitStatus, ShellfishError
from shellfish.events import Event
from shellfish.request import TaskRequest

if TYPE_CHECKING:
    from prompt_toolkit.completion import Completer, Completion
    from prompt_toolkit.document import Document
    from prompt_toolkit.input import Input
    from prompt_toolkit.output import Output
    from rich.console import Console

    from shellfish.environment import Environment


class StreamFn(Protocol):
    def __call__(
        self,
        request: TaskRequest,
        env: Environment,
        *,
        backend: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Event]: ...


COMMANDS: dict[str, str] = {
    "/help": "show this help",
    "/model": "/model NAME: answer with this model (/model default: routed by task)",
    "/temperature": "/temperature X: sampling temperature (0 = greedy)",
    "/max-tokens": "/max-tokens N: longest answer in tokens (/max-tokens default: the model's)",
    "/remote": "use the remote endpoint (needs remote.policy auto or remote)",
    "/local": "use local models only",
    "/context": "/context [on|off]: attach shell context (cwd, recent commands); no arg: show it",
    "/clear": "forget the conversation so far",
    "/run": "/run [N]: run the suggested command N (asks first, shows danger warnings)",
    "/edit": "/edit [N]: edit the suggested command, then run it (asks first)",
    "/copy": "/copy [N]: copy the suggested command to the clipboard",
    "/exit": "leave (Ctrl-D works too)",
}
ALIASES = {"/quit": "/exit", "/q": "/exit", "/?": "/help"}
MAX_TURNS = 20  # conversation messages kept for the next request


@dataclass
class ReplState:
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    backend: str | None = None  # None: settings.remote.policy; "local" / "remote"
    use_context: bool = True
    messages: list[dict[str, str]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # from the last answer


def extract_commands(text: str) -> list[str]:
    """Commands suggested by an answer: fenced code blocks, else a lone one-line answer."""
    blocks = re.findall(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)```", text, flags=re.DOTALL)
    out = []
    for lang, body in blocks:
        if lang.lower() not in ("", "sh", "bash", "zsh", "shell", "console", "shell-session"):
            continue
        lines = [re.sub(r"^\$\s+", "", line) for line in body.strip().splitlines()]
        command = "\n".join(lines).strip()
        if command:
            out.append(command)
    if out or blocks:
        return out
    stripped = text.strip().strip("`").strip()
    if stripped and "\n" not in stripped:
        return [re.sub(r"^\$\s+", "", stripped)]
    return []


def danger_warnings(command: str, cwd: str | None = None, home: str | None = None) -> list[str]:
    """What the command could destroy if run here, from `shellfish.shell.danger`.

    Paths are judged against `cwd` and `home` (default: this process's), so `rm -rf /home/me/*`
    typed in /home/me is the home directory, not some path.
    """
    from shellfish.shell.danger import dangers

    where = cwd if cwd is not None else os.getcwd()
    return [d.message for d in dangers(command, where, home or os.path.expanduser("~"))]


def run_in_shell(command: str, env: Environment) -> int:
    """Run `command` in the user's shell, attached to the terminal; returns its exit status."""
    shell = env.environ.get("SHELL") or shutil.which("sh") or "/bin/sh"
    try:
        return subprocess.run([shell, "-c", command], check=False).returncode
    except OSError as exc:
        raise ShellfishError(f"cannot start {shell}: {exc.strerror}", hint="check $SHELL") from exc


def copy_to_clipboard(text: str, env: Environment) -> str:
    """Copy with the first clipboard tool found; else an OSC 52 sequence to the terminal."""
    tools = (["wl-copy"], ["xclip", "-selection", "clipboard"], ["xsel", "-bi"], ["pbcopy"])
    for tool in tools:
        if shutil.which(tool[0]):
            try:
                subprocess.run(tool, input=text, text=True, check=True, timeout=5)
                return f"copied with {tool[0]}"
            except (OSError, subprocess.SubprocessError):
                continue
    import base64

    payload = base64.b64encode(text.encode("utf-8")).decode("ascii")
    env.stdout.write(f"\x1b]52;c;{payload}\x07")
    env.stdout.flush()
    return "sent to the terminal's clipboard (OSC 52)"


class Repl:
    def __init__(
        self,
        env: Environment,
        *,
        stream: StreamFn | None = None,
        input: Input | None = None,
        output: Output | None = None,
        console: Console | None = None,
        history_path: Path | None = None,
        live: bool | None = None,
        run_command: Callable[[str], int] | None = None,
        copy: Callable[[str], str] | None = None,
        context: Callable[[], dict[str, Any] | None] | None = None,
        model_names: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.env = env
        self.stream = stream or _client_stream
        self.input = input
        self.output = output
        self.console = console or env.console
        self.history_path = history_path or env.paths.data / "repl_history"
        self.live = live
        self.run_command = run_command or (lambda cmd: run_in_shell(cmd, env))
        self.copy = copy or (lambda text: copy_to_clipboard(text, env))
        self.context = context or (lambda: _shell_context(env))
        self.model_names = model_names or (lambda: ())
        self.state = ReplState()
        self._session: Any = None
        self._asker: Any = None

    # -- prompt_toolkit -----------------------------------------------------------------------

    def _key_bindings(self) -> Any:
        from prompt_toolkit.key_binding import KeyBindings

        kb = KeyBindings()

        @kb.add("escape", "enter")
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        return kb

    def _make_session(self) -> Any:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        history: Any
        try:
            self.history_path.parent.mkdir(parents=True, exist_ok=True)
            history = FileHistory(str(self.history_path))
        except OSError as exc:
            self._warn(f"cannot keep the REPL history in {self.history_path}: {exc.strerror}")
            history = InMemoryHistory()
        return PromptSession(
            history=history,
            completer=slash_completer(self.model_names),
            complete_while_typing=True,
            key_bindings=self._key_bindings(),
            multiline=False,
            prompt_continuation="... ",
            bottom_toolbar=self._toolbar,
            input=self.input,
            output=self.output,
        )

    def _ask(self, message: str, default: str = "") -> str:
        """A one-off question (confirmation, edit) that stays out of the REPL history."""
        from prompt_toolkit import PromptSession

        if self._asker is None:
            self._asker = PromptSession(input=self.input, output=self.output)
        return str(self._asker.prompt(message, default=default))

    def _toolbar(self) -> str:
        s = self.state
        backend = s.backend or self.env.settings.remote.policy
        temp = "default" if s.temperature is None else f"{s.temperature:g}"
        return (
            f" model: {s.model or 'auto'} | backend: {backend} | temperature: {temp} | "
            f"context: {'on' if s.use_context else 'off'} | /help"
        )

    # -- output -------------------------------------------------------------------------------

    def _say(self, text: str, style: str | None = None) -> None:
        self.console.print(text, style=style, markup=False, highlight=False)

    def _warn(self, text: str) -> None:
        self.console.print(text, style="yellow", markup=False, highlight=False)

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        """Read, answer, repeat until /exit or Ctrl-D. Returns an exit status."""
        self._session = self._make_session()
        self._say("shellfish REPL - /help for commands, Esc Enter for a new line, Ctrl-D to leave")
        while True:
            try:
                line = self._session.prompt("shellfish> ")
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line
            except EOFError:
                break
            if not self.handle(line):
                break
        return int(ExitStatus.OK)

    def handle(self, line: str) -> bool:
        """Handle one input; False when the REPL should end."""
        text = line.strip()
        if not text:
            return True
        try:
            if text.startswith("/"):
                return self._command(text)
            self._answer(text)
        except ShellfishError as exc:
            self._say(f"error: {exc}", style="red")
        except (KeyboardInterrupt, EOFError):
            self._say("cancelled", style="dim")
        return True

    # -- slash commands -----------------------------------------------------------------------

    def _command(self, text: str) -> bool:
        name, _, arg = text.partition(" ")
        name = ALIASES.get(name.lower(), name.lower())
        arg = arg.strip()
        if name == "/exit":
            return False
        handler = (
            getattr(self, "_cmd_" + name[1:].replace("-", "_"), None) if name in COMMANDS else None
        )
        if handler is None:
            self._warn(f"unknown command {name} - type /help for the list")
            return True
        handler(arg)
        return True

    def _cmd_help(self, arg: str) -> None:
        width = max(len(c) for c in COMMANDS)
        for command, help_text in COMMANDS.items():
            self._say(f"{command.ljust(width)}  {help_text}")
        self._say("Esc Enter: new line; Ctrl-C: stop an answer; Ctrl-D: leave", style="dim")

    def _cmd_model(self, arg: str) -> None:
        if not arg:
            self._say(f"model: {self.state.model or 'auto (routed by task)'}")
            return
        self.state.model = None if arg in ("default", "auto") else arg
        self._say(f"model: {self.state.model or 'auto (routed by task)'}")

    def _cmd_temperature(self, arg: str) -> None:
        if not arg:
            temp = self.state.temperature
            self._say(f"temperature: {'model default' if temp is None else f'{temp:g}'}")
            return
        if arg == "default":
            self.state.temperature = None
            self._say("temperature: model default")
            return
        try:
            value = float(arg)
        except ValueError:
            value = -1.0
        if not 0 <= value <= 5:
            self._warn(f"temperature must be a number from 0 to 5, not {arg!r}")
            return
        self.state.temperature = value
        self._say(f"temperature: {value:g}")

    def _cmd_max_tokens(self, arg: str) -> None:
        if arg in ("", "default"):
            if arg == "default":
                self.state.max_tokens = None
            limit = self.state.max_tokens
            self._say(f"max tokens: {'model default' if limit is None else limit}")
            return
        if not arg.isdigit() or int(arg) < 1:
            self._warn(f"max tokens must be a whole number of at least 1, not {arg!r}")
            return
        self.state.max_tokens = int(arg)
        self._say(f"max tokens: {self.state.max_tokens}")

    def _cmd_remote(self, arg: str) -> None:
        remote = self.env.settings.remote
        if remote.policy == "local":
            self._warn(
                "remote.policy is local, so nothing is ever sent - allow the remote fallback "
                "with `shellfish config set remote.policy auto`"
            )
            return
        if not remote.base_url:
            self._warn("no remote endpoint - `shellfish config set remote.base_url URL`")
            return
        self.state.backend = "remote"
        self._say(f"backend: remote ({remote.base_url}, model {remote.model})")

    def _cmd_local(self, arg: str) -> None:
        self.state.backend = "local"
        self._say("backend: local models only")

    def _cmd_context(self, arg: str) -> None:
        if arg in ("on", "off"):
            self.state.use_context = arg == "on"
            self._say(f"context: {arg}")
            return
        if arg:
            self._warn("usage: /context [on|off]")
            return
        ctx = self.context() if self.state.use_context else None
        if not ctx:
            self._say("context: off" if not self.state.use_context else "context: none available")
            return
        import json

        self._say("context sent with each request:")
        self._say(json.dumps(ctx, indent=2, ensure_ascii=False, default=str))

    def _cmd_clear(self, arg: str) -> None:
        self.state.messages.clear()
        self.state.commands.clear()
        self._say("conversation cleared")

    def _pick(self, arg: str) -> str | None:
        commands = self.state.commands
        if not commands:
            self._warn("no suggested command yet - ask for one first")
            return None
        try:
            number = int(arg) if arg else 1
        except ValueError:
            number = 0
        if not 1 <= number <= len(commands):
            self._warn(f"pick a command from 1 to {len(commands)}")
            return None
        return commands[number - 1]

    def _confirm_and_run(self, command: str) -> None:
        self._say(f"$ {command}", style="bold")
        for warning in danger_warnings(command):
            self._warn(f"warning: {warning}")
        answer = self._ask("Run it? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            self._say("not run")
            return
        status = self.run_command(command)
        if status != 0:
            self._warn(f"exit status {status}")

    def _cmd_run(self, arg: str) -> None:
        command = self._pick(arg)
        if command is not None:
            self._confirm_and_run(command)

    def _cmd_edit(self, arg: str) -> None:
        command = self._pick(arg)
        if command is None:
            return
        edited = self._ask("edit> ", default=command).strip()
        if not edited:
            self._say("nothing to run")
            return
        self._confirm_and_run(edited)

    def _cmd_copy(self, arg: str) -> None:
        command = self._pick(arg)
        if command is not None:
            self._say(self.copy(command))

    # -- answers ------------------------------------------------------------------------------

    def _request(self, text: str) -> TaskRequest:
        generation: dict[str, Any] = {}
        if self.state.temperature is not None:
            generation["temperature"] = self.state.temperature
        if self.state.max_tokens is not None:
            generation["max_new_tokens"] = self.state.max_tokens
        context = self.context() if self.state.use_context else None
        return TaskRequest(
            task="chat",
            text=text,
            model=self.state.model,
            generation=generation,
            context=context,
            options={"messages": list(self.state.messages[-MAX_TURNS:])},
        )

    def _answer(self, text: str) -> None:
        from shellfish.ui.render import StreamRenderer, length_note
        from shellfish.ui.typeahead import HeldTyping

        request = self._request(text)
        cancel = threading.Event()
        renderer = StreamRenderer(self.console, self.env.stderr, live=self.live, stop_notice=False)
        events = self.stream(request, self.env, backend=self.state.backend, cancel=cancel)
        app_input = getattr(getattr(self._session, "app", None), "input", None)
        # Keys typed while the answer streams are held (not echoed into it) for the next prompt.
        with HeldTyping(app_input) as held:
            result = renderer.render(
                held.polling(events), cancel=cancel, model=self.state.model or ""
            )
        if result.cancelled:
            self._say("(answer stopped)", style="dim")
            return
        note = length_note(result.done, "/max-tokens") if result.done else None
        if note:
            self._say(note, style="dim")
        answer = result.text
        self.state.messages += [
            {"role": "user", "content": text},
            {"role": "assistant", "content": answer},
        ]
        self.state.commands = extract_commands(answer)
        if self.state.commands:
            hint = "/run, /edit or /copy" if len(self.state.commands) == 1 else "/run N"
            self._say(f"({hint} to use the suggested command)", style="dim")


def slash_completions(
    text: str, model_names: Callable[[], Iterable[str]]
) -> list[tuple[str, int, str | None]]:
    """(completion, start position, description) for the text before the cursor."""
    if not text.startswith("/") or "\n" in text:
        return []  # plain prompts get no completion
    name, space, arg = text.partition(" ")
    if not space:
        return [
            (command, -len(name), help_text)
            for command, help_text in COMMANDS.items()
            if command.startswith(name.lower())
        ]
    options: Iterable[str] = ()
    if name == "/context":
        options = ("on", "off")
    elif name == "/model":
        try:
            options = ["default", *model_names()]
        except Exception:  # a broken model store must not break typing
            options = ("default",)
    elif name == "/temperature":
        options = ("0", "0.2", "0.7", "1.0", "default")
    return [(option, -len(arg), None) for option in options if option.startswith(arg)]


def slash_completer(model_names: Callable[[], Iterable[str]]) -> Completer:
    """A prompt_toolkit completer for slash commands and their arguments."""
    from prompt_toolkit.completion import Completer, Completion

    class _SlashCompleter(Completer):
        def get_completions(self, document: Document, complete_event: Any) -> Iterator[Completion]:
            for text, start, meta in slash_completions(document.text_before_cursor, model_names):
                yield Completion(text, start_position=start, display_meta=meta)

    return _SlashCompleter()


def _client_stream(
    request: TaskRequest,
    env: Environment,
    *,
    backend: str | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[Event]:
    from shellfish.client import stream

    return stream(request, env, backend=backend, cancel=cancel)


def _shell_context(env: Environment) -> dict[str, Any] | None:
    """Shell context from `shellfish.shell.context` (cwd only when it is unavailable)."""
    if not env.settings.context.capture:
        return None
    try:
        from shellfish.shell.context import current_context
    except ImportError:
        return {"cwd": os.getcwd()}
    try:
        ctx = current_context(env)
    except ShellfishError:
        return {"cwd": os.getcwd()}
    return ctx if isinstance(ctx, dict) else None
