"""Fixtures of the pipeline tests (their helpers: tests/support/pipelines.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.pipelines import load_sources


@pytest.fixture()
def problem_sources() -> dict[str, list[dict[str, Any]]]:
    """The three fixture sources (MATH-, GSM8K- and code-style) as the catalog loads them."""
    return load_sources()
