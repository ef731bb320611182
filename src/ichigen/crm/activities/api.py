"""JSON API for activities."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["activities"])
