"""Warming strategies and the per-warmer configuration of the core engine."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields
from typing import Final, Literal


class WarmingStrategy(str, enum.Enum):
    """When a warmer runs: at server start, on a schedule, from hot keys, or only on demand."""

    EAGER = "eager"
    LAZY = "lazy"
    SCHEDULED = "scheduled"
    ADAPTIVE = "adaptive"

    def __str__(self) -> str:
        return self.value


class _CacheDefault(enum.Enum):
    """Sentinel type: write entries with the cache's own default timeout."""

    TOKEN = "CACHE_DEFAULT"

    def __repr__(self) -> str:
        return "CACHE_DEFAULT"


#: ``WarmingConfig.cache_timeout`` value meaning "use the cache's own default TTL".
#: (``None`` keeps its Django meaning: never expire.)
CACHE_DEFAULT: Final = _CacheDefault.TOKEN

CacheTimeout = float | None | Literal[_CacheDefault.TOKEN]


#: The longest interval or timeout accepted, in seconds.
ONE_YEAR_S: Final = 365 * 24 * 3600
#: The shortest and longest ``refresh_interval`` a warmer declared in settings may have.
REFRESH_INTERVAL_RANGE: Final = (0.001, ONE_YEAR_S)


@dataclass
class WarmingConfig:
    """How a ``CacheWarmer`` runs: batch size, parallelism, retries, deadlines and entry TTL."""

    strategy: WarmingStrategy = WarmingStrategy.LAZY
    batch_size: int = 100
    max_workers: int = 4
    refresh_interval_s: float = 300.0
    warmup_timeout_s: float = 60.0
    retry_on_failure: bool = True
    max_retries: int = 3
    cache_timeout: CacheTimeout = CACHE_DEFAULT
    #: Each written batch gets a TTL up to this fraction longer (0.1 = up to +10%), so that entries
    #: warmed together do not all expire in the same second.
    timeout_jitter: float = 0.0
    #: The first retry waits about this long, each next one twice as long (jittered), up to a cap.
    retry_backoff_s: float = 0.1
    retry_backoff_max_s: float = 10.0

    def __post_init__(self) -> None:
        try:
            self.strategy = WarmingStrategy(self.strategy)
        except ValueError:
            choices = ", ".join(s.value for s in WarmingStrategy)
            raise ValueError(
                f"strategy: {self.strategy!r} is not a warming strategy (choose from {choices})"
            ) from None
        for name in ("batch_size", "max_workers", "max_retries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}: must be an integer, got {value!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be at least 1, got {self.batch_size}")
        if self.max_workers < 1:
            raise ValueError(f"max_workers: must be at least 1, got {self.max_workers}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries: must not be negative, got {self.max_retries}")
        for name in ("refresh_interval_s", "warmup_timeout_s", "retry_backoff_s"):
            _check_seconds(name, getattr(self, name), positive=name != "retry_backoff_s")
        _check_seconds("retry_backoff_max_s", self.retry_backoff_max_s, positive=False)
        if not isinstance(self.retry_on_failure, bool):
            raise ValueError(
                f"retry_on_failure: must be True or False, got {self.retry_on_failure!r}"
            )
        if self.cache_timeout is not CACHE_DEFAULT and self.cache_timeout is not None:
            _check_seconds("cache_timeout", self.cache_timeout, positive=False)
        _check_seconds("timeout_jitter", self.timeout_jitter, positive=False)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names of every configurable field."""
        return tuple(f.name for f in fields(cls))

    @property
    def attempts(self) -> int:
        """How many times a failing key (or batch) is tried in all."""
        return 1 + self.max_retries if self.retry_on_failure else 1


def _check_seconds(name: str, value: object, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: must be a finite number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "at least 0"
        raise ValueError(f"{name}: must be {bound}, got {value!r}")
