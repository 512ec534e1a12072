"""Backend-aware batch writes to Redis: faster than a cache's generic ``set_many``.

Django's ``RedisCache.set_many`` sends MULTI, one MSET, one EXPIRE per key and EXEC: two commands
and two replies per key for redis-py to pack and parse, in a transaction a warm does not need (each
key stands alone). Here a batch goes out as ONE command:

- with a TTL: one call of a small Lua script that runs ``SET key value EX ttl`` (``PX`` for
  django-redis, which counts in milliseconds) for every key of the batch, on the server. A batch
  has one TTL (``timeout_jitter`` is drawn once per batch, as for every backend), so the script
  takes it once, not once per key: one argument per key besides the key itself. Setting value
  and TTL in one ``SET`` inside one script call, no key can be left without its TTL;
- without a TTL (``timeout=None``): one ``MSET``, Redis' own variadic write, which also clears a
  TTL the key had, as ``SET`` does.

A batch is sent without waiting for its reply (``start_write``): the engine reads the reply later,
while the server has stored the batch and the engine has gathered the next one. The script is loaded
once per adapter (``SCRIPT LOAD``), so a batch goes out as ``EVALSHA``; a server that lost it
(``NOSCRIPT``) gets the batch again with the script. Where the server refuses scripts (an ACL
without ``@scripting``, a managed service that disables ``EVAL``), a non-transactional pipeline of
``SET ... EX`` is used instead, for the rest of the adapter's life. Which reply parser redis-py
uses (hiredis or its own) is the cache's choice; the commands are the same.

Whatever a value raises on its way into the cache (serializing, a server's "no" to that one item)
fails that key alone; only a cache that no longer answers stops a run. The warmer tells the two
apart with a probe (``CacheIO.answers``), not with a list of exception types.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from django_cachewarmers.backends.base import DjangoCacheAdapter
from django_cachewarmers.core.cache_io import jittered, not_cacheable
from django_cachewarmers.core.collector import WRITES_IN_FLIGHT
from django_cachewarmers.core.config import DEFAULT_TIMEOUT

logger = logging.getLogger("django_cachewarmers")

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
_hiredis_packer: type | None
_python_packer: type | None
try:
    from redis.connection import PythonRespSerializer
except ImportError:  # redis-py is not installed: this adapter is never used
    _python_packer = None
else:
    _python_packer = PythonRespSerializer
try:
    from hiredis import pack_command
    from redis.connection import HiredisRespSerializer
except ImportError:  # redis-py packs in Python
    _hiredis_pack = _hiredis_packer = None
else:
    _hiredis_pack, _hiredis_packer = pack_command, HiredisRespSerializer


#: The smallest write pool (``max_connections``) the fast path borrows from: the batches in
#: flight and the one being sent each hold a connection until their reply is read
#: (``core.collector.WRITES_IN_FLIGHT``), and they may take at most half of the pool, which the
#: process's requests share. A smaller pool keeps the cache's own ``set_many`` (one at a time).
ROOMY_POOL = 2 * (WRITES_IN_FLIGHT + 1)

#: KEYS: the full cache keys; ARGV[1]: 'EX' (seconds) or 'PX' (milliseconds), ARGV[2]: the
#: batch's TTL, ARGV[2 + i]: the value of KEYS[i].
SET_MANY_SCRIPT = """
local unit, ttl = ARGV[1], ARGV[2]
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 2], unit, ttl)
end
return #KEYS
"""


class RedisWriter(DjangoCacheAdapter):
    """What Django's ``RedisCache`` and django-redis share: a batch as one script call (or one
    ``MSET`` without a TTL), a pipeline where scripts are refused, a read-back as one ``MGET``.

    A subclass says how its cache encodes a value (``encoder``), makes a key, which redis-py
    client writes, and how its TTLs are counted (``ttl_argument``).
    """

    #: ``SET``'s TTL option: ``"EX"`` (seconds) or ``"PX"`` (milliseconds).
    ttl_unit = "EX"

    def __init__(self, cache: Any) -> None:
        super().__init__(cache)
        self.use_script = True
        self._usable: bool | None = None
        self._client: Any = None
        self._reader: Any = None
        self._script: Any = None
        self._script_sha: str | None = None

    # -- what a subclass provides ---------------------------------------------------------------

    def usable(self) -> bool:
        """False when this cache object cannot take the fast path (the engine uses ``set_many``
        and ``get_many``): its classes write or read in their own way (``writes_as_backend``),
        or its write pool is too small to lend the connections the batches in flight hold
        (``ROOMY_POOL``). Decided once per adapter."""
        usable = self._usable
        if usable is None:
            usable = self._usable = self.writes_as_backend() and self._roomy_pool()
        return usable

    def writes_as_backend(self) -> bool:
        """Whether the cache's classes write, read, make keys and pick servers as the backend's
        own do (what the fast path reproduces)."""
        return True

    def _roomy_pool(self) -> bool:
        pool = getattr(self._write_client(), "connection_pool", None)
        limit = getattr(pool, "max_connections", None)
        return not isinstance(limit, int) or limit >= ROOMY_POOL

    def encoder(self) -> Callable[[Any], Any]:
        """The cache's own ``value -> bytes`` (serializer, compressor)."""
        raise NotImplementedError

    def encode_all(self, values: Iterable[Any]) -> list[Any]:
        """``encoder()`` of each value, in order; raises what it raises."""
        encode = self.encoder()
        return [encode(value) for value in values]

    def decoder(self) -> Callable[[Any], Any]:
        """The cache's own ``bytes -> value``, as its ``get`` decodes a reply."""
        raise NotImplementedError

    def full_key(self, key: Any) -> str:
        """The key as the cache makes it (prefix, version, key function)."""
        return str(self.cache.make_key(key))

    def write_client(self) -> Any:
        """The redis-py client the cache writes with."""
        raise NotImplementedError

    def read_client(self) -> Any:
        """The redis-py client the cache reads with."""
        raise NotImplementedError

    def default_timeout(self) -> float | None:
        """The cache's own ``TIMEOUT`` (seconds, or None: never expire)."""
        timeout: float | None = self.cache.default_timeout
        return timeout

    def reads_where_it_writes(self) -> bool:
        """Whether the cache reads from the server it writes to (one ``LOCATION``). With more,
        Django's ``RedisCache`` and django-redis read from the replicas: only a read there tells
        what a request gets."""
        return True

    def ttl_argument(self, timeout: float) -> int:
        """A timeout in seconds as ``SET`` takes it, as the cache's own ``set`` rounds it (Django:
        whole seconds, at least 1 here since 0 would mean "don't cache")."""
        return max(1, int(timeout))

    # -- the fast path ----------------------------------------------------------------------------

    def write(
        self,
        values: Mapping[Any, Any],
        timeout: object,
        jitter: float,
        full_keys: Mapping[Any, str] | None = None,
    ) -> dict[Hashable, str] | None:
        """Write ``values`` with one TTL for the batch; return the keys that failed, or None to
        ask for ``set_many``: ``start_write`` and its answer at once."""
        finish = self.start_write(values, timeout, jitter, full_keys)
        return None if finish is None else finish()

    def start_write(
        self,
        values: Mapping[Any, Any],
        timeout: object,
        jitter: float,
        full_keys: Mapping[Any, str] | None = None,
    ) -> Callable[[], dict[Hashable, str] | None] | None:
        """Send ``values`` as one command (the script call, or ``MSET`` without a TTL) on a
        connection of the cache's write pool, without waiting for the reply; return the function
        that reads the reply, gives the connection back and returns the keys that failed. None to
        ask for ``set_many`` (timeout 0, or a cache object that cannot take the fast path).

        ``timeout``: seconds, None (never expire) or ``DEFAULT_TIMEOUT`` (the cache's own);
        ``jitter``: the batch's TTL is up to this fraction longer (drawn once per batch);
        ``full_keys`` the keys as the cache made them, if the caller has them already. Raises
        (now or from the function) what redis-py raises when the server cannot be reached or
        refuses the batch. Where the server refuses scripts, the batch goes out as a pipeline
        of ``SET``, answered at once.
        """
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout()
        assert timeout is None or isinstance(timeout, (int, float))
        if timeout is not None and timeout <= 0:
            return None  # "don't cache": the cache's own set_many deletes, as Django does
        if not self.usable():
            return None
        failed: dict[Hashable, str] = {}
        try:
            # The common case at full speed: every value encodes.
            data = self.encode_all(values.values())
            keys = list(values)
        except Exception:
            encode = self.encoder()
            data, keys = [], []
            for key, value in values.items():
                try:
                    data.append(encode(value))
                except Exception as exc:
                    # Encoding does no I/O: whatever it raises is about this value alone.
                    failed[key] = not_cacheable(exc)
                    continue
                keys.append(key)
        if not keys:
            return lambda: failed
        if full_keys is not None:
            names = [full_keys[key] for key in keys]
        else:
            names = [self.full_key(key) for key in keys]
        client = self._write_client()
        if timeout is None:
            # MSET: no TTL, and a TTL the key had is cleared (as SET without EX clears it).
            pairs = [part for pair in zip(names, data, strict=True) for part in pair]
            return self._send(client, ("MSET", *pairs), failed, None)
        ttl = self.ttl_argument(jittered(timeout, jitter) if jitter > 0 else timeout)
        if self.use_script and self._script_loaded(client):
            command = ("EVALSHA", self._script.sha, len(names), *names, self.ttl_unit, ttl, *data)
            return self._send(client, command, failed, (names, ttl, data))
        self._pipeline(client, names, ttl, data)
        return lambda: failed

    def _write_client(self) -> Any:
        """``write_client()``, made once per adapter, with the script registered on it."""
        client = self._client
        if client is None:
            client = self._client = self.write_client()
            self._script = client.register_script(SET_MANY_SCRIPT)
        return client

    def _script_loaded(self, client: Any) -> bool:
        """Load the script into the server once per adapter (so that a batch can go out as
        ``EVALSHA`` without waiting for its reply); False, for the rest of the adapter's life,
        when the server refuses scripts. Raises what redis-py raises for an outage."""
        if self._script_sha is not None:
            return True
        try:
            self._script_sha = client.script_load(SET_MANY_SCRIPT)
        except Exception as exc:
            if not _is_refused_command(exc):
                raise
            self._refused(exc)
            return False
        return True

    def _refused(self, exc: BaseException) -> None:
        self.use_script = False
        logger.info("Redis refused the warming script (%s); using a pipeline", exc)

    def _send(
        self,
        client: Any,
        command: tuple[Any, ...],
        failed: dict[Hashable, str],
        script_call: tuple[list[str], int, list[Any]] | None,
    ) -> Callable[[], dict[Hashable, str] | None]:
        """Send ``command`` on a connection of ``client``'s pool; the function that reads its
        reply. ``script_call`` (names, TTL, data): what to send again if the server lost the
        script (``NOSCRIPT``: restarted, failed over, ``SCRIPT FLUSH``) or refuses it now."""
        pool = client.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command(_pack(connection, command))
        except BaseException:
            pool.release(connection)
            raise

        def finish() -> dict[Hashable, str] | None:
            try:
                connection.read_response()
            except Exception as exc:
                if script_call is None or not _is_response_error(exc):
                    raise  # an outage, or a value the server refused: the caller decides
                error = exc
            else:
                return failed
            finally:
                pool.release(connection)
            names, ttl, data = script_call
            if _is_no_script(error):
                self._script(keys=names, args=[self.ttl_unit, ttl, *data], client=client)
            elif _is_refused_command(error):
                self._refused(error)
                self._pipeline(client, names, ttl, data)
            else:
                raise error
            return failed

        return finish

    def _pipeline(self, client: Any, names: list[str], ttl: int, data: list[Any]) -> None:
        """The fallback where scripts are refused: a pipeline (no MULTI) of ``SET`` per key."""
        pipeline = client.pipeline(transaction=False)
        unit = self.ttl_unit
        for name, value in zip(names, data, strict=True):
            pipeline.execute_command("SET", name, value, unit, ttl)
        pipeline.execute()

    def read(self, full_keys: list[str]) -> tuple[list[Any], Callable[[Any], Any]] | None:
        """One ``MGET`` of ``full_keys`` on a read client, as the cache's ``get_many`` sends it:
        the raw replies (None for a miss) and the cache's own decoder to decode each one as
        ``cache.get`` would. None when this cache object cannot take the fast path.

        ``get_many`` would make and validate every key again and decode all replies or raise for
        all; the read-back needs each key's own answer. Raises what redis-py raises.
        """
        if not self.usable():
            return None
        if not self.reads_where_it_writes():
            # Replicas: a read client per read, as the cache picks one (at random) per command.
            return list(self.read_client().mget(full_keys)), self.decoder()
        client = self._reader
        if client is None:
            # One per adapter (Django builds one per command); they share the pool.
            client = self._reader = self.read_client()
        return list(client.mget(full_keys)), self.decoder()


#: The methods of Django's ``RedisCache`` whose behaviour the fast path reproduces.
CACHE_METHODS = (
    "set", "set_many", "get", "get_many", "make_key", "make_and_validate_key",
    "get_backend_timeout",
)  # fmt: skip
#: The same for its client class (``RedisCacheClient``): how a value is written and read, and
#: which server a command goes to.
CLIENT_METHODS = ("set", "set_many", "get", "get_many", "get_client")


def _writes_as_django(cache: Any, wrapper: Any) -> bool:
    from django.core.cache.backends.redis import RedisCache, RedisCacheClient

    if getattr(wrapper, "_serializer", None) is None or not isinstance(wrapper, RedisCacheClient):
        return False
    cache_class, client_class = type(cache), type(wrapper)
    return all(
        getattr(cache_class, name, None) is getattr(RedisCache, name) for name in CACHE_METHODS
    ) and all(
        getattr(client_class, name, None) is getattr(RedisCacheClient, name)
        for name in CLIENT_METHODS
    )


class RedisAdapter(RedisWriter):
    """Django's own ``RedisCache`` (and its subclasses that keep its methods): its serializer,
    its client pools."""

    def _wrapper(self) -> Any:
        return getattr(self.cache, "_cache", None)

    def writes_as_backend(self) -> bool:
        """A ``RedisCache`` whose class and client class (its ``_class``, a ``RedisCacheClient``)
        read, write, make keys and route to servers with Django's own methods
        (``CACHE_METHODS``, ``CLIENT_METHODS``), with a serializer. A subclass that overrides any
        of them (an envelope around values, a client sharding by key) keeps its own
        ``set_many`` and ``get_many``."""
        return _writes_as_django(self.cache, self._wrapper())

    def reads_where_it_writes(self) -> bool:
        """One server in ``LOCATION`` (with more, Django reads from the others)."""
        return len(getattr(self._wrapper(), "_servers", ())) <= 1

    def encoder(self) -> Callable[[Any], Any]:
        """The cache's serializer's ``dumps`` (Django's: ints as digits, the rest pickled)."""
        dumps: Callable[[Any], Any] = self._wrapper()._serializer.dumps
        return dumps

    def encode_all(self, values: Iterable[Any]) -> list[Any]:
        """The serializer's ``dumps`` of each value; for Django's own serializer, what its
        ``dumps`` does (an int as itself, anything else pickled with its protocol) without a
        call of it per value."""
        serializer = self._wrapper()._serializer
        if type(serializer).__module__ != "django.core.cache.backends.redis":
            return super().encode_all(values)
        dumps, protocol = pickle.dumps, serializer.protocol
        return [value if type(value) is int else dumps(value, protocol) for value in values]

    def decoder(self) -> Callable[[Any], Any]:
        """The cache's serializer's ``loads``; for Django's own serializer, without its
        ``int()`` attempt on data that is a pickle (same result, a third of the time)."""
        serializer = self._wrapper()._serializer
        loads: Callable[[Any], Any] = serializer.loads
        if type(serializer).__module__ == "django.core.cache.backends.redis":
            fast: Callable[[Any], Any] = _django_redis_loads(loads)
            return fast
        return loads

    def write_client(self) -> Any:
        """A ``redis.Redis`` on the cache's write pool. Django builds a new one per
        ``get_client()`` call; one per adapter will do (they share the pool, which is thread-safe
        and renews itself after a fork)."""
        return self._wrapper().get_client(None, write=True)

    def read_client(self) -> Any:
        """A ``redis.Redis`` on one of the cache's read pools, as ``get_many`` picks it."""
        return self._wrapper().get_client(None)

    def default_timeout(self) -> float | None:
        """``RedisCache.get_backend_timeout()``: its ``TIMEOUT``, None for never."""
        timeout: float | None = self.cache.get_backend_timeout()
        return timeout


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


def _pack(connection: Any, command: tuple[Any, ...]) -> Any:
    """``command`` in the wire format, as ``connection.pack_command`` packs it, faster for these
    commands (str, bytes and int arguments): with hiredis, packed by hiredis directly (redis-py
    first walks every argument in Python to turn bytearrays and memoryviews into bytes); without
    it, each argument encoded as redis-py's ``Encoder`` does (str in the connection's encoding,
    an int as its digits) and the whole command joined once, where redis-py's Python packer
    concatenates the growing buffer argument by argument."""
    packer = type(getattr(connection, "_command_packer", None))
    if _hiredis_pack is not None and packer is _hiredis_packer:
        try:
            return [_hiredis_pack(command)]
        except TypeError:
            # An argument hiredis does not take (a serializer's bytearray or memoryview):
            # redis-py's own packing turns it into bytes first.
            return connection.pack_command(*command)
    encoder = getattr(connection, "encoder", None)
    if packer is _python_packer and encoder is not None:
        encoding, errors = encoder.encoding, encoder.encoding_errors
        encoded: list[bytes] = []
        for arg in command:
            kind = type(arg)
            if kind is bytes:
                encoded.append(arg)
            elif kind is str:
                encoded.append(arg.encode(encoding, errors))
            elif kind is int:
                encoded.append(b"%d" % arg)
            else:  # anything else as redis-py packs (or refuses) it
                return connection.pack_command(*command)
        body = b"".join([b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in encoded])
        return [b"*%d\r\n" % len(encoded) + body]
    return connection.pack_command(*command)


def _error_classes(exc: BaseException) -> set[str]:
    """The names of ``exc``'s classes (redis-py's exception classes, not imported here)."""
    return {cls.__name__ for cls in type(exc).__mro__}


def _is_response_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the server's error reply (``redis.exceptions.ResponseError``)."""
    return "ResponseError" in _error_classes(exc)


def _is_no_script(exc: BaseException) -> bool:
    """Whether the server no longer knows the script (``NOSCRIPT``: restarted, failed over,
    ``SCRIPT FLUSH``). redis-py raises ``NoScriptError`` and strips the code from the message
    ("No matching script. Please use EVAL.")."""
    message = str(exc).lower()
    return (
        "NoScriptError" in _error_classes(exc)
        or "noscript" in message
        or "no matching script" in message
    )


def _is_refused_command(exc: BaseException) -> bool:
    # redis.exceptions.ResponseError (and NoPermissionError etc.): the server answered "no" to the
    # command itself (an ACL without scripting, a service that disables EVAL), not to one value or
    # for lack of memory (OOM), which a pipeline would not fix. redis-py strips the error code
    # from the message of the classes it has for them (OutOfMemoryError: "command not allowed
    # when used memory > 'maxmemory'.").
    classes = _error_classes(exc)
    if "ResponseError" not in classes:
        return False
    message = str(exc).lower()
    if "OutOfMemoryError" in classes or message.startswith("oom") or "maxmemory" in message:
        return False
    if message.startswith("misconf") or "stop-writes-on-bgsave-error" in message:
        return False  # a failing disk save blocks every write, scripted or not, for a while
    return "NoPermissionError" in classes or any(
        word in message for word in ("noperm", "unknown command", "not allowed", "disabled")
    )
