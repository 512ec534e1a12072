"""Rendering a page through the project's own request handler, for ``loaders.render_page``."""

from __future__ import annotations

import io
import sys
import threading
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http.request import split_domain_port, validate_host

from django_cachewarmers.middleware import RENDER_MARKER


class PageNotWarmed(Exception):
    """The page could not be rendered, or did not answer 2xx."""


_lock = threading.Lock()
_handler: WSGIHandler | None = None


def _get_handler() -> WSGIHandler:
    global _handler
    with _lock:
        if _handler is None:
            _handler = WSGIHandler()  # loads the project's MIDDLEWARE once
        return _handler


@receiver(setting_changed)
def _reload_handler(*, setting: str, **kwargs: Any) -> None:
    global _handler
    if setting in ("MIDDLEWARE", "ROOT_URLCONF"):
        _handler = None


def environ_for(url: str) -> dict[str, Any]:
    """The WSGI environ of an anonymous GET for ``url`` (no cookies, no query string)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PageNotWarmed(f"not an http(s) URL: {url!r}")
    if parts.query or parts.fragment:
        raise PageNotWarmed(f"page keys have no query string or fragment: {url!r}")
    host = parts.netloc
    domain, port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS or (
        [".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else []
    )
    if not domain or not validate_host(domain, allowed):
        raise PageNotWarmed(f"host {host!r} is not in ALLOWED_HOSTS")
    secure = parts.scheme == "https"
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(parts.path or "/").decode("iso-8859-1"),
        "QUERY_STRING": "",
        "SERVER_NAME": domain,
        "SERVER_PORT": port or ("443" if secure else "80"),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": parts.scheme,
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        RENDER_MARKER: True,
    }


def render(url: str) -> int:
    """Render ``url`` with the full middleware stack, as an anonymous visitor; return the status.

    ``cache_page`` views and the per-site cache middleware store the response under the key a real
    anonymous request for that URL looks up. Raises ``PageNotWarmed`` unless the page answers 2xx.
    """
    environ = environ_for(url)
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    body = _get_handler()(environ, start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()  # sends request_finished, as a server would
    code = int(statuses[0].split(" ", 1)[0]) if statuses else 0
    if not 200 <= code < 300:
        raise PageNotWarmed(f"{url} answered {statuses[0] if statuses else 'nothing'}")
    return code
