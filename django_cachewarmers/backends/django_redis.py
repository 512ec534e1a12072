"""django-redis (``django_redis.cache.RedisCache``): the Redis fast path, in its own format.

django-redis's ``set_many`` is a pipeline (a transaction, ``MULTI``/``EXEC``) of one
``SET ... PX`` per key. Here a batch is one script call (``backends.redis``), with what
django-redis's own ``set`` would store: each value through its client's ``encode`` (the
``SERIALIZER`` then the ``COMPRESSOR`` of ``OPTIONS``; an int stays its digits), each key through
its client's ``make_key`` (``KEY_FUNCTION``, ``KEY_PREFIX``, ``VERSION``), the TTL in
milliseconds as its ``set`` converts it (``int(timeout * 1000)``). The read-back decodes with the
client's own ``decode``.

Only for a client that writes as ``django_redis.client.DefaultClient`` does: a client class that
overrides how a key is written, encoded, made or routed (``HerdClient`` packs values with a herd
marker, ``ShardClient`` spreads keys over servers) keeps its own ``set_many``. With
``IGNORE_EXCEPTIONS`` a failing write or read is left to the cache's own ``set_many`` and
``get_many``, which ignore the error as the user asked (the read-back then finds the keys missing).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

from django_redis.cache import RedisCache as DjangoRedisCache
from django_redis.client import DefaultClient
from django_redis.client.default import _main_exceptions as CLIENT_ERRORS

from django_cachewarmers.backends.redis import RedisWriter

_T = TypeVar("_T")

#: The client methods whose behaviour the fast path reproduces: a client class that overrides any
#: of them writes in its own way, and gets its own ``set_many``.
WRITE_METHODS = (
    "set", "set_many", "get", "get_many", "encode", "decode", "make_key", "get_client",
)  # fmt: skip
#: The same for the cache class (``django_redis.cache.RedisCache``): a subclass that overrides
#: any of them (an envelope around values, a switch that drops writes) keeps its own methods.
CACHE_METHODS = ("set", "set_many", "get", "get_many", "make_key", "client")


def writes_as_default_client(client: object) -> bool:
    """True when ``client`` is a ``DefaultClient`` that writes, encodes, makes keys and picks its
    write connection with ``DefaultClient``'s own methods (``SentinelClient`` does: it only
    connects differently; ``HerdClient`` and ``ShardClient`` do not)."""
    cls = type(client)
    return isinstance(client, DefaultClient) and all(
        getattr(cls, name, None) is getattr(DefaultClient, name) for name in WRITE_METHODS
    )


class DjangoRedisAdapter(RedisWriter):
    """``django_redis.cache.RedisCache`` with a client that writes as ``DefaultClient`` does."""

    ttl_unit = "PX"

    def start_write(
        self,
        values: Mapping[Any, Any],
        timeout: object,
        jitter: float,
        full_keys: Mapping[Any, str] | None = None,
    ) -> Callable[[], dict[Hashable, str] | None] | None:
        """``RedisWriter.start_write`` (and so ``write``); when it, or reading its answer,
        raises an error django-redis ignores under ``IGNORE_EXCEPTIONS``, None: the cache's own
        ``set_many`` handles the batch."""
        finish = self._unless_ignored(super().start_write, values, timeout, jitter, full_keys)
        if finish is None:
            return None
        return lambda: self._unless_ignored(finish)

    def read(self, full_keys: list[str]) -> tuple[list[Any], Callable[[Any], Any]] | None:
        """``RedisWriter.read``; None (the cache's ``get_many``) under ``IGNORE_EXCEPTIONS``
        when it raises an error django-redis ignores."""
        return self._unless_ignored(super().read, full_keys)

    def _unless_ignored(self, call: Callable[..., _T], *args: Any) -> _T | None:
        """``call(*args)``; None when it raises an error django-redis ignores under
        ``IGNORE_EXCEPTIONS`` (the caller then leaves the work to the cache's own method)."""
        try:
            return call(*args)
        except CLIENT_ERRORS:
            if self.ignores_errors():
                return None
            raise

    def ignores_errors(self) -> bool:
        """The cache's ``IGNORE_EXCEPTIONS`` (its ``OPTIONS``, else the setting)."""
        return bool(getattr(self.cache, "_ignore_exceptions", False))

    def writes_as_backend(self) -> bool:
        """Whether the cache's class keeps django-redis's own methods (``CACHE_METHODS``) and its
        client writes as ``DefaultClient`` (else: its ``set_many`` and ``get_many``)."""
        cache_class = type(self.cache)
        return all(
            getattr(cache_class, name, None) is getattr(DjangoRedisCache, name)
            for name in CACHE_METHODS
        ) and writes_as_default_client(self.cache.client)

    def encoder(self) -> Callable[[Any], Any]:
        """The client's ``encode``: serializer, then compressor (an int stays an int)."""
        encode: Callable[[Any], Any] = self.cache.client.encode
        return encode

    def decoder(self) -> Callable[[Any], Any]:
        """The client's ``decode``, as its ``get`` decodes a reply."""
        decode: Callable[[Any], Any] = self.cache.client.decode
        return decode

    def full_key(self, key: Any) -> str:
        """The client's ``make_key`` (the cache's ``KEY_FUNCTION``, prefix and version)."""
        return str(self.cache.client.make_key(key))

    def write_client(self) -> Any:
        """The client's write connection (``get_client(write=True)``: the primary)."""
        return self.cache.client.get_client(write=True)

    def read_client(self) -> Any:
        """A read connection, as the client's ``get_many`` picks it."""
        return self.cache.client.get_client(write=False)

    def reads_where_it_writes(self) -> bool:
        """One server in ``LOCATION`` (with more, django-redis reads from the others)."""
        return len(getattr(self.cache.client, "_server", ())) <= 1

    def ttl_argument(self, timeout: float) -> int:
        """Milliseconds, as django-redis's ``set`` converts a timeout (``int(timeout * 1000)``),
        at least 1."""
        return max(1, int(timeout * 1000))
