"""Backend-aware batch writes: faster than a cache's generic ``set_many`` where we know the backend.

Django's ``RedisCache.set_many`` sends MULTI, one MSET, one EXPIRE per key and EXEC: two commands
and two replies per key for redis-py to pack and parse. A warm needs no transaction (each key stands
alone), so for Django's own ``RedisCache`` a batch goes out as ONE call of a small Lua script that
runs ``SET key value EX ttl`` for every key on the server: one command and one reply per batch, and
a TTL of its own per key (so jitter spreads expiry key by key). Where the server refuses scripts
(some managed Redis services), a non-transactional pipeline of ``SET ... EX`` is used instead. The
backend is recognised by its class, without importing Django; anything unexpected falls back to
``set_many``.

Whatever a value raises on its way into the cache (pickling, a size limit, a server's "no" to that
one item) fails that key alone; only a cache that no longer answers stops a run. The warmer tells
the two apart with a probe (``CacheWarmer._cache_answers``), not with a list of exception types.
"""

from __future__ import annotations

import logging
import pickle
import random
from collections.abc import Hashable, Mapping
from typing import Any

logger = logging.getLogger("django_cachewarmers")


def not_cacheable(exc: BaseException) -> str:
    """A failed key's reason when its value could not be stored."""
    return f"value not cacheable: {type(exc).__name__}: {exc}"


def jittered(timeout: float, jitter: float) -> float:
    """``timeout`` stretched by a random share of up to ``jitter`` (0.1: up to 10% longer)."""
    return timeout * (1.0 + random.uniform(0.0, jitter))


#: KEYS: the full cache keys; ARGV: value, ttl pairs (ttl 0: no expiry).
SET_MANY_SCRIPT = """
for i, key in ipairs(KEYS) do
  local ttl = tonumber(ARGV[2 * i])
  if ttl > 0 then
    redis.call('SET', key, ARGV[2 * i - 1], 'EX', ttl)
  else
    redis.call('SET', key, ARGV[2 * i - 1])
  end
end
return #KEYS
"""


def is_django_redis_cache(cache: object) -> bool:
    """True for ``django.core.cache.backends.redis.RedisCache`` (and subclasses)."""
    return any(
        cls.__module__ == "django.core.cache.backends.redis" and cls.__name__ == "RedisCache"
        for cls in type(cache).__mro__
    )


class RedisWriter:
    """Writes batches to one Django ``RedisCache``: a Lua script call per batch, else a pipeline."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.use_script = True
        # Django builds a new redis.Redis per get_client() call; one per writer will do (they share
        # the connection pool, which is thread-safe and renews itself after a fork).
        self._client: Any = None
        self._script: Any = None

    def write(
        self,
        values: Mapping[Any, Any],
        timeout: float | None,
        jitter: float,
        full_keys: Mapping[Any, str] | None = None,
    ) -> dict[Hashable, str] | None:
        """Write ``values``; return the keys that failed, or None to ask for ``set_many``.

        ``timeout`` is the backend timeout in seconds (None: never expire); ``full_keys`` the keys
        as the cache made them, if the caller has them already. Raises what redis-py raises when
        the server cannot be reached.
        """
        client_wrapper = getattr(self.cache, "_cache", None)
        serializer = getattr(client_wrapper, "_serializer", None)
        get_client = getattr(client_wrapper, "get_client", None)
        if serializer is None or get_client is None or timeout == 0:
            return None
        failed: dict[Hashable, str] = {}
        keys: list[str] = []
        args: list[Any] = []
        for key, value in values.items():
            try:
                data = serializer.dumps(value)
            except Exception as exc:
                # Serializing does no I/O: whatever it raises is about this value alone.
                failed[key] = not_cacheable(exc)
                continue
            keys.append(full_keys[key] if full_keys is not None else self.cache.make_key(key))
            args.append(data)
            if timeout is None:
                args.append(0)
            else:
                ttl = jittered(timeout, jitter) if jitter > 0 else timeout
                args.append(max(1, int(ttl)))
        if not keys:
            return failed
        if self._client is None:
            self._client = get_client(None, write=True)
            self._script = self._client.register_script(SET_MANY_SCRIPT)
        client = self._client
        if self.use_script:
            try:
                self._script(keys=keys, args=args, client=client)
                return failed
            except Exception as exc:
                if not _is_refused_command(exc):
                    raise  # the server is unreachable: the caller stops the run
                self.use_script = False
                logger.info("Redis refused the warming script (%s); using a pipeline", exc)
        pipeline = client.pipeline(transaction=False)
        for index, full_key in enumerate(keys):
            data, ttl = args[2 * index], args[2 * index + 1]
            if ttl:
                pipeline.set(full_key, data, ex=ttl)
            else:
                pipeline.set(full_key, data)
        pipeline.execute()
        return failed

    def read(self, full_keys: list[str]) -> tuple[list[Any], Any] | None:
        """One ``MGET`` of ``full_keys`` on a read client, as ``RedisCache.get_many`` sends it:
        the raw replies (None for a miss) and the cache's own deserializer (``loads``) to decode
        each one as ``cache.get`` would. None when this is not a cache we know the insides of.

        ``get_many`` would make and validate every key again and decode all replies or raise for
        all; the read-back needs each key's own answer. Raises what redis-py raises.
        """
        client_wrapper = getattr(self.cache, "_cache", None)
        serializer = getattr(client_wrapper, "_serializer", None)
        get_client = getattr(client_wrapper, "get_client", None)
        loads = getattr(serializer, "loads", None)
        if loads is None or get_client is None:
            return None
        if type(serializer).__module__ == "django.core.cache.backends.redis":
            loads = _django_redis_loads(loads)
        return list(get_client(None).mget(full_keys)), loads


def _django_redis_loads(loads: Any) -> Any:
    """Django's ``RedisSerializer.loads``, minus its ``int(data)`` attempt on data that is a pickle.

    ``RedisSerializer`` stores an int as its digits and anything else as a pickle (protocol 2 and
    up: first byte 0x80), and ``loads`` tries ``int(data)`` first; on a pickle that always raises
    ``ValueError``, which costs more than the unpickling itself. Same result, a third of the time.
    """

    def fast_loads(data: Any) -> Any:
        if data[:1] == b"\x80":
            return pickle.loads(data)
        return loads(data)

    return fast_loads


def _is_refused_command(exc: BaseException) -> bool:
    # redis.exceptions.ResponseError (and NoPermissionError etc.): the server answered "no" to the
    # command itself (an ACL without scripting, a service that disables EVAL), not to one value or
    # for lack of memory (OOM), which a pipeline would not fix.
    if not any(cls.__name__ == "ResponseError" for cls in type(exc).__mro__):
        return False
    message = str(exc).lower()
    if message.startswith("oom"):
        return False
    return any(cls.__name__ == "NoPermissionError" for cls in type(exc).__mro__) or any(
        word in message for word in ("noperm", "unknown command", "not allowed", "disabled")
    )
