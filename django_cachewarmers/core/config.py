"""Warming strategies and the per-warmer configuration of the core engine."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final, Literal


class WarmingStrategy(str, enum.Enum):
    """When a warmer runs: at server start, on a schedule, from hot keys, or only on demand."""

    EAGER = "eager"
    LAZY = "lazy"
    SCHEDULED = "scheduled"
    ADAPTIVE = "adaptive"

    def __str__(self) -> str:
        return self.value


class _DefaultTimeout(enum.Enum):
    """Sentinel type: write entries with the cache's own default timeout."""

    TOKEN = "DEFAULT_TIMEOUT"

    def __repr__(self) -> str:
        return "DEFAULT_TIMEOUT"


#: ``WarmingConfig.cache_timeout`` value meaning "use the cache's own default TTL" (Django's
#: ``DEFAULT_TIMEOUT``). ``None`` keeps its Django meaning: never expire.
DEFAULT_TIMEOUT: Final = _DefaultTimeout.TOKEN

CacheTimeout = float | None | Literal[_DefaultTimeout.TOKEN]


#: The longest interval or timeout accepted, in seconds.
ONE_YEAR_S: Final = 365 * 24 * 3600
#: The shortest and longest ``refresh_interval`` a warmer declared in settings may have.
REFRESH_INTERVAL_RANGE: Final = (0.001, ONE_YEAR_S)


@dataclass
class WarmingConfig:
    """How a ``CacheWarmer`` runs: batch size, parallelism, retries, deadlines and entry TTL."""

    strategy: WarmingStrategy = WarmingStrategy.EAGER
    batch_size: int = 100
    max_workers: int = 4
    refresh_interval_s: float = 300.0
    warmup_timeout_s: float = 60.0
    retry_on_failure: bool = True
    max_retries: int = 3
    cache_timeout: CacheTimeout = DEFAULT_TIMEOUT
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
        for name, minimum in (("batch_size", 1), ("max_workers", 1), ("max_retries", 0)):
            value = getattr(self, name)
            if not is_int_at_least(value, minimum):
                raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
        for name, positive in (
            ("refresh_interval_s", True),
            ("warmup_timeout_s", True),
            ("retry_backoff_s", False),
            ("retry_backoff_max_s", False),
            ("timeout_jitter", False),
        ):
            _check_seconds(name, getattr(self, name), positive=positive)
        if not isinstance(self.retry_on_failure, bool):
            raise ValueError(
                f"retry_on_failure: must be True or False, got {self.retry_on_failure!r}"
            )
        if self.cache_timeout is not DEFAULT_TIMEOUT and self.cache_timeout is not None:
            _check_seconds("cache_timeout", self.cache_timeout, positive=False)

    @property
    def attempts(self) -> int:
        """How many times a failing key (or batch) is tried in all."""
        return 1 + self.max_retries if self.retry_on_failure else 1


def is_int_at_least(value: object, minimum: int) -> bool:
    """An int (not a bool) >= ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def number_problem(value: object, *, positive: bool) -> str:
    """Why ``value`` is not a finite number (> 0 if ``positive``, else >= 0); "" if it is."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "not a number"
    try:
        as_float = float(value)
    except OverflowError:
        return "too large"
    if not math.isfinite(as_float):
        return "not finite"
    if as_float < 0 or (positive and as_float == 0):
        return "not > 0" if positive else "negative"
    return ""


def _check_seconds(name: str, value: object, *, positive: bool) -> None:
    problem = number_problem(value, positive=positive)
    if problem:
        bound = "> 0" if positive else ">= 0"
        raise ValueError(
            f"{name}: must be a finite number of seconds {bound}, got {value!r} ({problem})"
        )
