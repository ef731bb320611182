"""The ASGI entry point for servers: ``uvicorn ichigen.web.asgi:app``."""

from __future__ import annotations

from ichigen.web.app import create_app

app = create_app()
