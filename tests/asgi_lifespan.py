"""The ASGI lifespan recipe of docs/deployment.md: warming starts at the server's startup event."""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.server_settings")
django_application = get_asgi_application()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "lifespan":
        await django_application(scope, receive, send)
        return
    from django_cachewarmers import autostart

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            autostart.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            autostart.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
