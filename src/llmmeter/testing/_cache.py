"""Prompt caching as the fake server reports it in ``cached_tokens``/``cache_write_tokens``.

Automatic caching (every request): the prompt's canonical text is cut into blocks of
512 characters (128 tokens at 4 characters a token). A block counts as cached when an
earlier request for the same model and ``prompt_cache_key`` had the same text up to the
end of that block. Like the real API, nothing is reported below 1024 tokens, and the
result is a multiple of 128 that never exceeds the prompt.

Explicit caching (``prompt_cache_options.mode == "explicit"``): the prefix up to the last
part carrying ``prompt_cache_breakpoint`` (or the whole prompt) is written on first
sight (``cache_write_tokens``) and read on every later request (``cached_tokens``).
"""

from __future__ import annotations

import hashlib
import threading

from ._text import Prompt

BLOCK_CHARS = 512
BLOCK_TOKENS = 128
MIN_CACHED_TOKENS = 1024
#: Bound on remembered blocks; the store starts over when it is full.
MAX_ENTRIES = 200_000


class PromptCache:
    """Thread-safe memory of prompt prefixes seen by one server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocks: set[bytes] = set()
        self._explicit: set[bytes] = set()

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._explicit.clear()

    def automatic(self, scope: str, prompt: Prompt) -> int:
        """Cached tokens for ``prompt``; remembers its blocks for later requests."""
        text = prompt.text
        digest = hashlib.sha256(scope.encode())
        keys: list[bytes] = []
        for start in range(0, len(text) - BLOCK_CHARS + 1, BLOCK_CHARS):
            digest.update(text[start : start + BLOCK_CHARS].encode())
            keys.append(digest.copy().digest())
        with self._lock:
            matched = 0
            for key in keys:
                if key not in self._blocks:
                    break
                matched += 1
            if len(self._blocks) + len(keys) > MAX_ENTRIES:
                self._blocks.clear()
            self._blocks.update(keys)
        ceiling = prompt.total // BLOCK_TOKENS * BLOCK_TOKENS
        cached = min(matched * BLOCK_TOKENS, ceiling)
        return cached if cached >= MIN_CACHED_TOKENS else 0

    def explicit(self, scope: str, prompt: Prompt) -> tuple[int, int]:
        """``(cached_tokens, cache_write_tokens)`` for an explicitly cached prefix."""
        text = prompt.text
        chars = prompt.breakpoint_chars if prompt.breakpoint_chars is not None else len(text)
        tokens = prompt.breakpoint_tokens if prompt.breakpoint_tokens is not None else prompt.total
        key = hashlib.sha256(f"{scope}\x00{text[:chars]}".encode()).digest()
        with self._lock:
            if key in self._explicit:
                return tokens, 0
            if len(self._explicit) >= MAX_ENTRIES:
                self._explicit.clear()
            self._explicit.add(key)
        return 0, tokens
