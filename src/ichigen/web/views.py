"""The web UI's routes (sign-in, the application shell, and each feature's pages)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse


def ui_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def home() -> RedirectResponse:
        return RedirectResponse("/docs")

    return router
