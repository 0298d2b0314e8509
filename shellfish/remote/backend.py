"""The remote fallback: any OpenAI-compatible endpoint through the official `openai` client.

`RemoteBackend(settings.remote, environ, paths=paths).stream(request)` yields the same typed
events as the local engine (Status, Token..., Done) and raises `RemoteError` with a clear,
actionable message for every failure (no key, refused key, unknown model, rate limit after
retries, timeout, dropped connection, malformed reply). Everything sent is redacted first, and
the first use of an endpoint yields a Status notice showing exactly what is sent.

Retries: 429 and 5xx answers and refused connections are retried before the first token with
exponential backoff (or the server's Retry-After), at most `remote.max_retries` times. Once
text has been streamed a failure is not retried, so nothing is shown twice.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from shellfish.errors import RemoteError
from shellfish.events import Done, Event, Status, Token
from shellfish.request import TaskRequest

if TYPE_CHECKING:
    from shellfish.config import RemoteSettings
    from shellfish.paths import Paths

NO_KEY = "no-key-set"  # many local OpenAI-compatible servers need no key at all
MAX_RETRY_AFTER_S = 30.0


class RemoteBackend:
    """One configured endpoint. Constructing it does no I/O."""

    def __init__(
        self,
        settings: RemoteSettings,
        environ: Mapping[str, str],
        *,
        paths: Paths | None = None,
        redact: Callable[[str], str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.environ = environ
        self.paths = paths
        self._redact = redact
        self._sleep = sleep
        self._clock = clock

    # -- configuration ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.settings.base_url.strip().rstrip("/")

    def api_key(self) -> str | None:
        return self.environ.get(self.settings.api_key_env) or self.settings.api_key or None

    def _check_allowed(self) -> None:
        if self.settings.policy == "local":
            raise RemoteError(
                "the remote fallback is off (remote.policy = local), so nothing was sent",
                hint="allow it with `shellfish config set remote.policy auto` (or remote)",
            )
        if not self.base_url:
            raise RemoteError(
                "no remote endpoint is configured",
                hint="set one with `shellfish config set remote.base_url "
                "https://host/v1` (any OpenAI-compatible server)",
            )
        if not self.base_url.startswith(("http://", "https://")):
            raise RemoteError(
                f"remote.base_url {self.settings.base_url!r} is not an http(s) URL",
                hint="use e.g. `shellfish config set remote.base_url http://127.0.0.1:8080/v1`",
            )

    def _client(self, timeout_s: float | None = None) -> Any:
        import openai

        timeout = timeout_s if timeout_s is not None else self.settings.timeout_s
        proxy = self.settings.proxy.strip() or None
        # DefaultHttpxClient builds the HTTP client of whichever httpx flavour this openai
        # release uses; an explicit proxy replaces the *_PROXY variables.
        try:
            http_client = openai.DefaultHttpxClient(proxy=proxy, trust_env=proxy is None)
        except Exception as exc:
            raise RemoteError(
                f"remote.proxy {self.settings.proxy!r} is not a usable proxy URL ({exc})",
                hint="use e.g. http://proxy:3128, or clear it with "
                "`shellfish config set remote.proxy ''`",
            ) from exc
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=self.api_key() or NO_KEY,
            timeout=timeout,
            max_retries=0,  # retried here, so that each retry is visible as a Status event
            http_client=http_client,
        )

    # -- what is sent -----------------------------------------------------------------------

    def payload(self, request: TaskRequest, *, streaming: bool = True) -> dict[str, Any]:
        """The request body exactly as it will be sent (redacted)."""
        from shellfish.remote.messages import chat_messages
        from shellfish.shell.redact import exchange_redactor, redact, redact_obj

        raw = chat_messages(request)
        # Earlier answers in a conversation may repeat a secret of an earlier question.
        messages = redact_obj(raw, exchange_redactor(raw, self._redact or redact))
        body: dict[str, Any] = {
            "model": request.options.get("remote_model") or self.settings.model,
            "messages": messages,
            "stream": streaming,
        }
        gen = request.generation
        if gen.get("temperature") is not None:
            body["temperature"] = float(gen["temperature"])
        if gen.get("top_p") is not None:
            body["top_p"] = float(gen["top_p"])
        if gen.get("max_new_tokens") is not None:
            body["max_tokens"] = int(gen["max_new_tokens"])
        if gen.get("seed") is not None:
            body["seed"] = int(gen["seed"])
        if gen.get("stop"):
            body["stop"] = list(gen["stop"])[:4]
        return body

    # -- streaming --------------------------------------------------------------------------

    def stream(
        self,
        request: TaskRequest,
        *,
        cancel: threading.Event | None = None,
        streaming: bool = True,
    ) -> Iterator[Event]:
        """Yield Status / Token events then one Done; raise RemoteError on any failure."""
        self._check_allowed()
        body = self.payload(request, streaming=streaming)
        if self.paths is not None:
            from shellfish.remote.notice import first_use_notice, is_first_use, remember_use

            if is_first_use(self.paths.data, self.base_url):
                yield first_use_notice(self.base_url, body)
                remember_use(self.paths.data, self.base_url)
        yield Status(
            f"asking {body['model']} at {self.base_url}",
            {"backend": "remote", "model": body["model"]},
        )
        client = self._client()
        try:
            yield from self._exchange(client, body, cancel)
        finally:
            client.close()

    def _exchange(
        self, client: Any, body: dict[str, Any], cancel: threading.Event | None
    ) -> Iterator[Event]:
        start = self._clock()
        attempt = 0
        while True:
            try:
                response = client.chat.completions.create(**body)
                break
            except Exception as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise self._translate(exc, retries=attempt) from exc
                attempt += 1
                yield Status(
                    f"{_short_reason(exc)}; retrying in {delay:.2f} s "
                    f"({attempt}/{self.settings.max_retries})",
                    {"retry": attempt, "delay_s": delay},
                )
                self._sleep(delay)
        if not body["stream"]:
            yield from self._whole(response, body, start, attempt)
            return
        yield from self._chunks(response, body, start, attempt, cancel)

    def _whole(
        self, response: Any, body: dict[str, Any], start: float, retries: int
    ) -> Iterator[Event]:
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
            finish = choice.finish_reason or "stop"
        except (AttributeError, IndexError, TypeError) as exc:
            raise _malformed(self.base_url, "the reply has no choices") from exc
        elapsed = (self._clock() - start) * 1000
        yield Token(text)
        usage = getattr(response, "usage", None)
        yield Done(
            texts=[text],
            model=str(getattr(response, "model", "") or body["model"]),
            backend="remote",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            first_token_ms=elapsed,
            total_ms=elapsed,
            finish_reason=_finish(finish),
            extra={"endpoint": self.base_url, "retries": retries},
        )

    def _chunks(
        self,
        stream: Any,
        body: dict[str, Any],
        start: float,
        retries: int,
        cancel: threading.Event | None,
    ) -> Iterator[Event]:
        parts: list[str] = []
        first_ms = 0.0
        finish: str | None = None
        model = body["model"]
        usage = None
        chunks = 0
        try:
            with stream:
                for chunk in stream:
                    if cancel is not None and cancel.is_set():
                        finish = "cancelled"
                        break
                    model = getattr(chunk, "model", None) or model
                    usage = getattr(chunk, "usage", None) or usage
                    for choice in getattr(chunk, "choices", None) or []:
                        delta = getattr(choice, "delta", None)
                        text = getattr(delta, "content", None) if delta is not None else None
                        if text and getattr(choice, "index", 0) == 0:
                            if not parts:
                                first_ms = (self._clock() - start) * 1000
                            parts.append(text)
                            chunks += 1
                            yield Token(text)
                        if getattr(choice, "finish_reason", None) and choice.index == 0:
                            finish = choice.finish_reason
        except GeneratorExit:
            raise
        except Exception as exc:
            raise self._translate(exc, retries=retries, midstream=bool(parts)) from exc
        if finish is None:
            raise RemoteError(
                f"the remote endpoint {self.base_url} ended the answer early "
                f"({len(parts)} pieces received, no finish reason)",
                hint="try again; if it keeps happening, check the server's logs",
            )
        yield Done(
            texts=["".join(parts)],
            model=str(model),
            backend="remote",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or chunks),
            first_token_ms=first_ms,
            total_ms=(self._clock() - start) * 1000,
            finish_reason=_finish(finish),
            extra={"endpoint": self.base_url, "retries": retries},
        )

    # -- failures ---------------------------------------------------------------------------

    def _retry_delay(self, exc: Exception, attempt: int) -> float | None:
        """Seconds to wait before retrying after `exc`, or None when it is not retried."""
        import openai

        if attempt >= self.settings.max_retries:
            return None
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code != 429 and exc.status_code < 500:
                return None
            after = _retry_after(exc.response.headers)
            if after is not None:
                return min(after, MAX_RETRY_AFTER_S)
        elif not isinstance(exc, openai.APIConnectionError) or isinstance(
            exc, openai.APITimeoutError
        ):
            return None  # a timeout already waited long enough; malformed replies won't heal
        # Exponential backoff with jitter: 0.5 s, 1 s, 2 s, ... (at most 8 s).
        return float(min(8.0, 0.5 * 2**attempt) * (0.75 + 0.5 * random.random()))

    def _translate(
        self, exc: Exception, *, retries: int = 0, midstream: bool = False
    ) -> RemoteError:
        import openai

        url = self.base_url
        if isinstance(exc, RemoteError):
            return exc
        if isinstance(exc, openai.APITimeoutError) or _httpx_error(exc, "TimeoutException"):
            return RemoteError(
                f"no answer from {url} within {self.settings.timeout_s:g} s",
                hint="check the server, or raise the limit with "
                "`shellfish config set remote.timeout_s 60`",
            )
        if isinstance(exc, openai.AuthenticationError):
            key = self.settings.api_key_env
            what = "the API key was refused" if self.api_key() else "an API key is needed"
            return RemoteError(
                f"{url}: {what} (HTTP 401)",
                hint=f"put a valid key in ${key} or `shellfish config set remote.api_key KEY`",
            )
        if isinstance(exc, openai.PermissionDeniedError):
            return RemoteError(
                f"{url}: this key may not use model {self.settings.model!r} (HTTP 403)",
                hint="check the key's permissions or choose another remote.model",
            )
        if isinstance(exc, openai.NotFoundError):
            return RemoteError(
                f"{url}: not found (HTTP 404) - wrong URL or unknown model {self.settings.model!r}",
                hint="remote.base_url usually ends in /v1; check remote.model",
            )
        if isinstance(exc, openai.RateLimitError):
            return RemoteError(
                f"{url}: rate limited (HTTP 429), gave up after {retries} retries",
                hint="wait a moment and try again, or raise remote.max_retries",
            )
        if isinstance(exc, openai.APIStatusError):
            detail = _server_message(exc)
            return RemoteError(
                f"{url}: the server answered HTTP {exc.status_code}"
                + (f": {detail}" if detail else "")
                + (f" (after {retries} retries)" if retries else ""),
                hint="check remote.model and the request, or the server's logs",
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            if midstream or _httpx_error(cause, "RemoteProtocolError"):
                return _dropped(url)
            return RemoteError(
                f"cannot connect to {url} ({_cause_text(cause) or exc.message})",
                hint="is the server running? check remote.base_url and remote.proxy",
            )
        if _httpx_error(exc, "RemoteProtocolError", "NetworkError"):
            return _dropped(url)
        if isinstance(exc, (openai.APIResponseValidationError, ValueError, KeyError, TypeError)):
            return _malformed(url, _cause_text(exc))
        if isinstance(exc, openai.APIError):
            return RemoteError(
                f"{url}: {exc.message}", hint="check remote.model and the server's logs"
            )
        if _httpx_error(exc, "HTTPError"):
            return RemoteError(f"{url}: {exc}", hint="check remote.base_url and remote.proxy")
        return RemoteError(
            f"{url}: unexpected failure ({type(exc).__name__}: {exc})",
            hint="try again; report it if it persists",
        )

    # -- doctor -----------------------------------------------------------------------------

    def check(self, timeout_s: float = 3.0) -> str:
        """Whether the endpoint answers at all (GET /models); a line to show, or RemoteError."""
        import openai

        if not self.base_url:
            self._check_allowed()
        client = self._client(timeout_s)
        try:
            models = client.models.list()
            names = [m.id for m in getattr(models, "data", [])][:5]
            return f"{self.base_url} answers; models: {', '.join(names) or 'none listed'}"
        except openai.NotFoundError:
            return f"{self.base_url} answers (it does not list models)"
        except Exception as exc:
            raise self._translate(exc) from exc
        finally:
            client.close()


def _httpx_error(exc: BaseException | None, *names: str) -> bool:
    """Whether `exc` is one of httpx's (or httpx2's) exception classes named `names`."""
    if exc is None:
        return False
    return any(
        cls.__name__ in names and cls.__module__.split(".")[0] in ("httpx", "httpx2")
        for cls in type(exc).__mro__
    )


def _finish(reason: str) -> str:
    return {"stop": "stop", "length": "length", "cancelled": "cancelled"}.get(reason, reason)


def _retry_after(headers: Any) -> float | None:
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        seconds = headers.get("retry-after")
        if seconds is not None:
            return max(0.0, float(seconds))
    except (TypeError, ValueError):
        return None
    return None


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:200]
        if isinstance(err, str):
            return err[:200]
    return ""


def _short_reason(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    if status == 429:
        return "rate limited (HTTP 429)"
    if status:
        return f"server error (HTTP {status})"
    return "connection failed"


def _cause_text(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _dropped(url: str) -> RemoteError:
    return RemoteError(
        f"{url} closed the connection in the middle of the answer",
        hint="try again; if it keeps happening, check the server or proxy",
    )


def _malformed(url: str, detail: str) -> RemoteError:
    return RemoteError(
        f"{url} sent a malformed reply (not the OpenAI chat format)"
        + (f": {detail}" if detail else ""),
        hint="check that remote.base_url points at an OpenAI-compatible /v1 endpoint",
    )
