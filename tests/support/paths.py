"""Where the project's files are, for tests that read or copy them."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Public data kept beside the checkout (../shared/data); the tests that read it skip without it.
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
