"""Django's ``DatabaseCache``: one ``INSERT ... ON CONFLICT DO UPDATE`` per batch.

``DatabaseCache.set_many`` calls ``set`` per key, and each ``set`` runs a ``SELECT COUNT(*)``, a
``SELECT`` of the key and an ``INSERT`` or ``UPDATE``, in a transaction of its own. On SQLite and
PostgreSQL (both take ``ON CONFLICT (cache_key) DO UPDATE``; SQLite since 3.24) a batch goes out as
one multi-row upsert instead (split only where the database caps a statement's parameters), in one
transaction, through Django's own connection for the cache table (``router.db_for_write``), its
quoting and its datetime adaptation. Rows are what ``DatabaseCache.set`` writes: the value pickled
with the cache's ``pickle_protocol`` and base64-encoded, ``expires`` the expiry to the second
(``datetime.max`` for a None timeout). Culling is Django's too: before a write the table is counted
and, when it holds more than ``MAX_ENTRIES`` rows, culled by the cache's own ``_cull``; a batch is
cut so that the table never holds more than ``MAX_ENTRIES + 1`` rows, as with ``set``. Other
databases (MySQL, Oracle) get ``set_many``.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Callable, Hashable, Mapping
from datetime import datetime, timezone
from typing import Any

from django.conf import settings
from django.db import connections, models, router, transaction
from django.utils.timezone import now as tz_now

from django_cachewarmers.backends.base import CullingCacheAdapter
from django_cachewarmers.core.cache_io import jittered, not_cacheable
from django_cachewarmers.core.config import DEFAULT_TIMEOUT

#: Databases whose SQL has ``INSERT ... ON CONFLICT (column) DO UPDATE``.
UPSERT_VENDORS = frozenset({"sqlite", "postgresql"})
#: Rows per statement where the database sets no limit on a statement's parameters.
MAX_ROWS_PER_STATEMENT = 1000


class DatabaseCacheAdapter(CullingCacheAdapter):
    """Django's ``DatabaseCache``: its ``MAX_ENTRIES``, and a batched upsert on SQLite and
    PostgreSQL."""

    def write(
        self,
        values: Mapping[Any, Any],
        timeout: object,
        jitter: float,
        full_keys: Mapping[Any, str] | None,
    ) -> dict[Hashable, str] | None:
        """Upsert ``values`` as ``DatabaseCache.set`` would store them; return the keys that
        failed (a value that does not pickle), or None to have the engine use ``set_many`` (a
        database without ``ON CONFLICT``, or timeout 0).

        ``timeout``: seconds, None (never expire) or ``DEFAULT_TIMEOUT`` (the cache's own).
        Raises what the database driver raises (the engine then writes the batch key by key and
        stops only if the cache no longer answers).
        """
        cache = self.cache
        if timeout is DEFAULT_TIMEOUT:
            timeout = cache.default_timeout
        if timeout == 0:
            return None  # Django's "don't cache": leave its exact behaviour to set_many
        assert timeout is None or isinstance(timeout, (int, float))
        db = router.db_for_write(cache.cache_model_class)
        connection = connections[db]
        if connection.vendor not in UPSERT_VENDORS:
            return None
        failed: dict[Hashable, str] = {}
        rows: dict[str, tuple[str, str, Any]] = {}  # by full key: the last value wins, as in set
        protocol = cache.pickle_protocol
        tz = timezone.utc if settings.USE_TZ else None
        adapt = connection.ops.adapt_datetimefield_value
        never = adapt(datetime.max.replace(microsecond=0)) if timeout is None else None
        adapted: dict[int, Any] = {}
        for key, value in values.items():
            try:
                pickled = pickle.dumps(value, protocol)
            except Exception as exc:
                # Pickling does no I/O: whatever it raises is about this value alone.
                failed[key] = not_cacheable(exc)
                continue
            full_key = full_keys[key] if full_keys is not None else cache.make_key(key)
            if timeout is None:
                expires = never
            else:
                ttl = jittered(timeout, jitter) if jitter > 0 else timeout
                # DatabaseCache.get_backend_timeout: now + ttl, as an absolute timestamp; Django
                # keeps it to the second, so a batch has few distinct expiries: adapt each once.
                stamp = int(cache.get_backend_timeout(ttl))
                expires = adapted.get(stamp)
                if expires is None:
                    expires = adapted[stamp] = adapt(datetime.fromtimestamp(stamp, tz=tz))
            rows[full_key] = (full_key, base64.b64encode(pickled).decode("latin1"), expires)
        if rows:
            self._upsert(db, list(rows.values()))
        return failed

    def _upsert(self, db: str, rows: list[tuple[str, str, Any]]) -> None:
        cache = self.cache
        connection = connections[db]
        quote_name = connection.ops.quote_name
        table = quote_name(cache._table)
        key_col, value_col, expires_col = (quote_name(c) for c in ("cache_key", "value", "expires"))
        max_params = connection.features.max_query_params
        per_statement = max_params // 3 if max_params else MAX_ROWS_PER_STATEMENT
        limit: int = cache._max_entries
        with transaction.atomic(using=db), connection.cursor() as cursor:
            start = 0
            count: int | None = None  # rows in the table at most (an upsert may only update)
            while start < len(rows):
                if count is None or count >= limit:
                    cursor.execute(f"SELECT COUNT(*) FROM {table}")
                    count = cursor.fetchone()[0]
                    assert count is not None
                if count > limit:
                    # DatabaseCache._base_set's rule, with its own cull (expired rows first,
                    # then 1 / CULL_FREQUENCY of the rest).
                    cache._cull(db, cursor, tz_now().replace(microsecond=0), count)
                    cursor.execute(f"SELECT COUNT(*) FROM {table}")
                    count = cursor.fetchone()[0]
                # At most MAX_ENTRIES + 1 rows after this chunk, as set() keeps it.
                room = max(1, limit + 1 - count)
                chunk = rows[start : start + min(room, per_statement)]
                start += len(chunk)
                count += len(chunk)
                placeholders = ", ".join(["(%s, %s, %s)"] * len(chunk))
                cursor.execute(
                    f"INSERT INTO {table} ({key_col}, {value_col}, {expires_col}) "
                    f"VALUES {placeholders} ON CONFLICT ({key_col}) DO UPDATE SET "
                    f"{value_col} = EXCLUDED.{value_col}, {expires_col} = EXCLUDED.{expires_col}",
                    [param for row in chunk for param in row],
                )

    def read(self, full_keys: list[str]) -> tuple[list[Any], Callable[[Any], Any]] | None:
        """On SQLite and PostgreSQL: the ``SELECT`` that ``DatabaseCache.get_many`` runs (on
        ``router.db_for_read``, in statements of at most the database's parameter limit), each
        row's ``expires`` converted by Django's converters and compared with now as ``get_many``
        does; the raw values (None for a missing or expired row) and the decoding of one value
        as ``get_many`` decodes it (base64, then unpickling). None elsewhere (the engine reads
        back through ``get_many``). ``get_many`` would make and validate every key again and
        decode every row or raise for all; the read-back needs each key's own answer. Raises what
        the database driver raises."""
        cache = self.cache
        db = router.db_for_read(cache.cache_model_class)
        connection = connections[db]
        if connection.vendor not in UPSERT_VENDORS:
            return None
        quote_name = connection.ops.quote_name
        key_col, value_col, expires_col = (quote_name(c) for c in ("cache_key", "value", "expires"))
        table = quote_name(cache._table)
        per_statement = connection.features.max_query_params or MAX_ROWS_PER_STATEMENT
        found: dict[str, tuple[Any, Any]] = {}
        with connection.cursor() as cursor:
            for start in range(0, len(full_keys), per_statement):
                part = full_keys[start : start + per_statement]
                cursor.execute(
                    f"SELECT {key_col}, {value_col}, {expires_col} FROM {table} "
                    f"WHERE {key_col} IN ({', '.join(['%s'] * len(part))})",
                    part,
                )
                found.update((key, (value, expires)) for key, value, expires in cursor.fetchall())
        expression = models.Expression(output_field=models.DateTimeField())
        converters = connection.ops.get_db_converters(expression) + expression.get_db_converters(
            connection
        )
        now = tz_now()
        replies: list[Any] = []
        for key in full_keys:
            row = found.get(key)
            if row is None:
                replies.append(None)
                continue
            value, expires = row
            for converter in converters:
                expires = converter(expires, expression, connection)
            replies.append(None if expires < now else connection.ops.process_clob(value))
        return replies, _loads


def _loads(value: str) -> Any:
    """A row's value as ``DatabaseCache.get`` decodes it."""
    return pickle.loads(base64.b64decode(value.encode()))
