"""The systemd unit as shipped: systemd's own tools judge it (``systemd-analyze`` from the systemd package).

What an operator notices: the unit passes ``systemd-analyze verify``, and ``systemd-analyze security`` rates its
exposure 2.0 or lower. (The guide's own install, with ``verify`` on the installed unit, runs in .ci/run.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "hubbridge.service"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def test_the_unit_is_rated_2_or_lower_by_systemd_analyze_security() -> None:
    """`systemd-analyze security --offline=yes` rates the unit 2.0 or lower ("OK")."""
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)], capture_output=True, text=True, check=False
    )
    m = re.search(r"Overall exposure level for hubbridge.service: (\d+\.\d+)", out.stdout)
    assert m, out.stdout + out.stderr
    assert float(m.group(1)) <= 2.0, out.stdout


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing wrong (the unit's hubbridge path pointed at this checkout's)."""
    hubbridge = Path(sys.executable).with_name("hubbridge")
    assert hubbridge.exists(), "the package is installed (pip install -e .)"
    unit = tmp_path / "hubbridge.service"
    text = UNIT.read_text(encoding="utf-8")
    assert text.count("/opt/hubbridge/bin/hubbridge") == 3
    unit.write_text(text.replace("/opt/hubbridge/bin/hubbridge", str(hubbridge)), encoding="utf-8")
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


def test_the_unit_loads_credentials_so_that_missing_ones_are_not_fatal() -> None:
    """Every LoadCredential= has a SetCredential= fallback of the same name, so a missing token file is not fatal."""
    text = UNIT.read_text(encoding="utf-8")
    loaded = re.findall(r"^LoadCredential=([^:]+):", text, re.MULTILINE)
    fallback = re.findall(r"^SetCredential=([^:]+):", text, re.MULTILINE)
    assert loaded and loaded == fallback
    assert re.search(r"^Type=notify$", text, re.MULTILINE) and re.search(r"^WatchdogSec=\d+", text, re.MULTILINE)
    assert re.search(r"^UMask=0077$", text, re.MULTILINE) and re.search(r"^DynamicUser=yes$", text, re.MULTILINE)
