"""Stop sequences over streamed text.

A stop string may arrive split across tokens, so the streamer holds back the tail of the text
that could still be the start of a stop string, and releases it once it cannot.
"""

from __future__ import annotations


class StopStream:
    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.text = ""  # everything accepted so far (before any stop)
        self._emitted = 0
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Add decoded text; return the part that is now safe to show."""
        if self.stopped:
            return ""
        self.text += piece
        cut = self._first_stop()
        if cut is not None:
            self.text = self.text[:cut]
            self.stopped = True
            return self._release(len(self.text))
        return self._release(len(self.text) - self._held_back())

    def flush(self) -> str:
        """At the end of generation: release everything still held back."""
        return self._release(len(self.text))

    def _first_stop(self) -> int | None:
        hits = [i for i in (self.text.find(s) for s in self.stops) if i >= 0]
        return min(hits) if hits else None

    def _held_back(self) -> int:
        """Length of the longest suffix of text that is a proper prefix of some stop string."""
        longest = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:n]):
                    longest = n
                    break
        return longest

    def _release(self, upto: int) -> str:
        upto = max(upto, self._emitted)
        out = self.text[self._emitted : upto]
        self._emitted = upto
        return out
