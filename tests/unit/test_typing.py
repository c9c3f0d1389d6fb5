"""The whole code base stays fully typed: mypy --strict over gateway, transcode and peer.

What mypy checks, and how strictly, is the ``[tool.mypy]`` section of
pyproject.toml, so ``python -m mypy`` by hand checks exactly what this test
checks; the first test keeps that section from quietly shrinking.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.support.gateway import ROOT

PACKAGES = {"gateway", "transcode", "peer"}


def test_mypy_config_is_strict_over_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert config["strict"] is True
    assert set(config["files"]) == PACKAGES
    # Untyped libraries may be Any; our own modules may not opt out.
    for override in config.get("overrides", []):
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        assert not any(m.split(".")[0] in PACKAGES for m in modules), override


def test_packages_pass_mypy_strict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
