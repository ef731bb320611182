"""Activities: request and response shapes."""

from __future__ import annotations
