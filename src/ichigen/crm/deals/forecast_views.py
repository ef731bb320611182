"""The sales dashboard and the quota pages."""

from __future__ import annotations

from ichigen.web.templating import ui_router_for

router = ui_router_for()
