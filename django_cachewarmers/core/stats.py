"""The result of one warming run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar


@dataclass
class WarmingStats:
    """Counts, timing and (bounded) errors of one warming run."""

    MAX_ERRORS: ClassVar[int] = 50
    MAX_ERROR_LENGTH: ClassVar[int] = 500

    keys_warmed: int = 0
    keys_failed: int = 0
    total_time_ms: float = 0.0
    #: When the run ended (UTC), as ``WarmingRun.finished_at``.
    finished_at: datetime | None = None
    #: "key: message" strings, at most ``MAX_ERRORS`` of them (``errors_omitted`` counts the rest).
    errors: list[str] = field(default_factory=list)
    errors_omitted: int = 0
    #: Set when the run as a whole could not proceed (e.g. the key provider raised, or nothing
    #: that was written read back).
    run_error: str | None = None
    #: Read-back verification: written keys read back after the run's last write (all of them up
    #: to 10,000, a random sample above), and how many of those were not in the cache. Lost keys
    #: are counted in ``keys_failed``, not in ``keys_warmed``.
    keys_verified: int = 0
    keys_lost: int = 0

    @property
    def keys_attempted(self) -> int:
        """Keys the run tried to warm."""
        return self.keys_warmed + self.keys_failed

    @property
    def success_rate(self) -> float:
        """Warmed keys / attempted keys; 1.0 when nothing was attempted."""
        attempted = self.keys_attempted
        return self.keys_warmed / attempted if attempted else 1.0

    @property
    def ok(self) -> bool:
        """True when every attempted key warmed and the run itself did not fail."""
        return self.keys_failed == 0 and self.run_error is None

    def add_error(self, key: object, message: str) -> None:
        """Record one failure, keeping the list bounded."""
        if len(self.errors) >= self.MAX_ERRORS:
            self.errors_omitted += 1
            return
        self.add_error_text(f"{_short(key)}: {message}")

    def add_error_text(self, text: str) -> None:
        """Record one failure already written as ``"key: message"`` (another run's error)."""
        if len(self.errors) >= self.MAX_ERRORS:
            self.errors_omitted += 1
            return
        if len(text) > self.MAX_ERROR_LENGTH:
            text = text[: self.MAX_ERROR_LENGTH - 1] + "…"
        self.errors.append(text)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the run's numbers and errors."""
        return {
            "keys_warmed": self.keys_warmed,
            "keys_failed": self.keys_failed,
            "success_rate": self.success_rate,
            "total_time_ms": round(self.total_time_ms, 3),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "errors": list(self.errors),
            "errors_omitted": self.errors_omitted,
            "run_error": self.run_error,
            "keys_verified": self.keys_verified,
            "keys_lost": self.keys_lost,
        }


def _short(key: object, limit: int = 200) -> str:
    text = key if isinstance(key, str) else repr(key)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_duration(ms: float) -> str:
    """A run's duration for people: ``850 ms`` below a second, ``12.35 s`` from one second on."""
    if round(ms) < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s"


def exception_text(exc: BaseException) -> str:
    """``"TypeName: message"``, how a failed key's exception is reported."""
    return f"{type(exc).__name__}: {exc}"
