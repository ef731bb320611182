"""Activities: the rules for every read and write that others may call."""

from __future__ import annotations
