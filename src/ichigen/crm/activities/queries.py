"""Activities: reusable select() builders."""

from __future__ import annotations
