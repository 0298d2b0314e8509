"""The stream renderer: plain and live (rich) output, errors, Ctrl-C mid-stream."""

from __future__ import annotations

import io
import threading

import pytest
from rich.console import Console

from shellfish.environment import Environment
from shellfish.events import Done, Error, Status, Token
from shellfish.ui.render import StreamFailed, StreamRenderer, _Progress, render_stream


class Producer:
    """A generator of events that records whether it was closed (its cleanup ran)."""

    def __init__(self, events, interrupt_after: int | None = None):
        self.events = events
        self.interrupt_after = interrupt_after
        self.closed = False

    def __iter__(self):
        try:
            for number, event in enumerate(self.events):
                if self.interrupt_after is not None and number == self.interrupt_after:
                    raise KeyboardInterrupt  # what SIGINT does in the consuming thread
                yield event
        finally:
            self.closed = True


def plain() -> tuple[StreamRenderer, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return StreamRenderer(Console(file=out), err, live=False), out, err


ANSWER = [
    Status("loading tiny", {"model": "tiny"}),
    Token("ls"),
    Token(" -la"),
    Done(texts=["ls -la"], model="tiny", completion_tokens=2),
]


def test_plain_output_streams_text_and_keeps_chatter_off_stdout():
    renderer, out, err = plain()
    result = renderer.render(ANSWER)
    assert out.getvalue() == "ls -la\n"
    assert err.getvalue() == ""  # ordinary status lines only with verbose
    assert result.text == "ls -la" and result.done is not None and not result.cancelled
    assert result.tokens == 2 and result.model == "tiny"


def test_notices_and_retries_always_reach_stderr():
    renderer, out, err = plain()
    renderer.render(
        [
            Status("First use of the remote endpoint X: {...}", {"notice": "remote_first_use"}),
            Status("rate limited; retrying", {"retry": 1}),
            Token("hi"),
            Done(texts=["hi"]),
        ]
    )
    assert "First use of the remote endpoint" in err.getvalue() and "retrying" in err.getvalue()
    assert out.getvalue() == "hi\n"


def test_error_event_raises_after_partial_text():
    renderer, out, _ = plain()
    with pytest.raises(StreamFailed) as info:
        renderer.render([Token("par"), Error("model crashed", code="model_error", hint="retry")])
    assert str(info.value) == "model crashed - retry" and info.value.code == "model_error"
    assert out.getvalue() == "par\n"


def test_ctrl_c_mid_stream_cancels_and_closes_the_producer():
    renderer, _out, err = plain()
    producer = Producer(
        [Token("a"), Token("b"), Token("c"), Done(texts=["abc"])], interrupt_after=2
    )
    cancel = threading.Event()
    result = renderer.render(producer, cancel=cancel)
    assert result.cancelled and cancel.is_set() and producer.closed
    assert result.text == "ab" and result.done is None
    assert "[stopped]" in err.getvalue()


def test_ctrl_c_while_the_consumer_is_busy_closes_a_suspended_producer():
    # The interrupt lands in the renderer (not inside the generator): it must close it.
    producer = Producer([Token("a"), Token("b"), Token("c"), Done(texts=["abc"])])
    out = io.StringIO()

    class Exploding(io.StringIO):
        def write(self, text):
            if text == "b":
                raise KeyboardInterrupt
            return out.write(text)

    renderer = StreamRenderer(Console(file=Exploding()), io.StringIO(), live=False)
    result = renderer.render(iter(producer))
    assert result.cancelled and producer.closed


def test_live_view_shows_markdown_and_a_status_line():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, color_system=None)
    ticks = iter([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0])
    renderer = StreamRenderer(console, io.StringIO(), live=True, clock=lambda: next(ticks))
    answer = "Use:\n\n```bash\nfind . -size +100M\n```\n"
    result = renderer.render(
        [
            Status("asking", {"model": "tiny", "backend": "remote"}),
            Token(answer),
            Done(texts=[answer], model="tiny", backend="remote"),
        ]
    )
    shown = out.getvalue()
    assert "find . -size +100M" in shown and "```" not in shown  # rendered as Markdown
    assert "tiny · remote" in shown and "1 tokens" in shown
    assert "tok/s" not in shown  # one token: no rate to speak of
    assert result.text == answer


def test_progress_line_computes_tokens_per_second():
    # The tokens after the first over the time after the first (prefill is not decoding).
    progress = _Progress(clock=lambda: 0.0, start=0.0, first_token=1.0, tokens=21, model="m")
    assert progress.line(now=3.0) == "m · 21 tokens · 10.0 tok/s · 3.0s"


def test_a_burst_of_tokens_shows_no_absurd_rate():
    """A remote reply delivered in one chunk used to read as 206739.7 tok/s."""
    progress = _Progress(clock=lambda: 0.0, start=0.0, first_token=1.0, tokens=40, model="m")
    assert progress.line(now=1.0002) == "m · 40 tokens · 1.0s"


def test_an_answer_cut_at_the_token_limit_says_so():
    env = Environment(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    done = Done(texts=["a b"], completion_tokens=64, finish_reason="length")
    render_stream([Token("a b"), done], env)
    assert env.stderr.getvalue() == "(stopped at 64 tokens, --max-tokens to raise)\n"
    env = Environment(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    render_stream([Token("a b"), Done(texts=["a b"], completion_tokens=2)], env)
    assert env.stderr.getvalue() == ""


def test_render_stream_reraises_ctrl_c_for_exit_130():
    env = Environment(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    producer = Producer([Token("a"), Token("b")], interrupt_after=1)
    with pytest.raises(KeyboardInterrupt):
        render_stream(producer, env)
    assert producer.closed
    env = Environment(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    done = render_stream([Token("ok"), Done(texts=["ok"])], env)
    assert done is not None and env.stdout.getvalue() == "ok\n"


def test_verbose_rate_leaves_loading_and_prefill_out():
    from shellfish.cli.generate import _drain

    env = Environment(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    done = Done(
        texts=["ls"],
        model="m",
        completion_tokens=11,
        first_token_ms=1000.0,
        total_ms=2000.0,
        finish_reason="length",
    )
    assert _drain(iter([done]), env, verbose=True) is done
    err = env.stderr.getvalue()
    # 10 tokens in the second after the first token, not 11 tokens over 2 s.
    assert "10.0 tok/s after the first token" in err and "5.5" not in err
    assert "(stopped at 11 tokens, --max-tokens to raise)" in err


def test_the_length_note_with_several_samples_names_no_sum():
    from shellfish.ui.render import length_note

    done = Done(texts=["a", "b"], completion_tokens=128, finish_reason="length")
    assert length_note(done) == "(a sample stopped at the token limit, --max-tokens to raise)"
