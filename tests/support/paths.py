"""Where the repository and the tests' data are, wherever a test module sits in the tree."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ROOT", "TESTS"]

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
