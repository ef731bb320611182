"""Forecasting: exchange rates, quotas, forecast per period, win rate and other sales figures."""

from __future__ import annotations
