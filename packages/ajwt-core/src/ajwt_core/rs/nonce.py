"""Server-issued DPoP nonces (RFC 9449 §8): stateless, rotating, HMAC-authenticated.

A nonce is ``<window>.<mac>`` where ``window`` counts ``lifetime``-second periods; the
current and previous windows are accepted, so every worker sharing the secret agrees
without shared state.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from ajwt_core.keys import b64url


class NonceManager:
    """
    >>> nonces = NonceManager(b"k" * 32, lifetime=60, clock=lambda: 1000.0)
    >>> nonce = nonces.issue()
    >>> nonces.is_valid(nonce), nonces.is_valid("16.forged"), nonces.is_valid("16.é")
    (True, False, False)
    """

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        lifetime: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._lifetime = lifetime
        self._clock = clock

    def _window(self) -> int:
        return int(self._clock() // self._lifetime)

    def _mac(self, window: int) -> str:
        return b64url(hmac.new(self._secret, str(window).encode(), hashlib.sha256).digest()[:16])

    def issue(self) -> str:
        window = self._window()
        return f"{window}.{self._mac(window)}"

    def is_valid(self, nonce: str) -> bool:
        """Whether ``nonce`` (the proof's, so anyone's text) was issued here recently."""
        window_text, _, mac = nonce.partition(".")
        # ASCII digits only: str.isdigit() also admits "²" or "٣", which int() refuses.
        if not (window_text.isascii() and window_text.isdigit()) or len(window_text) > 20:
            return False
        window = int(window_text)
        if window not in (self._window(), self._window() - 1):
            return False
        # Bytes: compare_digest refuses a str holding non-ASCII characters.
        given = mac.encode("utf-8", "surrogatepass")
        return hmac.compare_digest(given, self._mac(window).encode("ascii"))
