"""JSON API for exchange rates, quotas, the forecast and sales figures."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["forecasting"])
