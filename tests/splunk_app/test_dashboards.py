"""The dashboards are valid Dashboard Studio definitions by Splunk's own schema, as Splunk would load them.

``splunk/tools/validate.cjs`` builds the schema with Splunk's npm packages (``@splunk/dashboard-definition`` over
the Enterprise and Cloud presets of ``@splunk/dashboard-presets``, pinned in ``splunk/tools/package-lock.json``)
and checks every view against both. ``.ci/run`` installs the packages (``npm ci --prefix splunk/tools``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from bridge.splunk_app import app_dir

TOOLS = Path(__file__).resolve().parents[2] / "splunk" / "tools"


def test_every_dashboard_passes_splunks_schema_and_a_broken_one_does_not(tmp_path: Path) -> None:
    """All six views validate against Splunk's Enterprise and Cloud schemas with every reference resolved, while a
    copy with an unknown visualization type, a mistyped option and a missing data source is refused for each."""
    assert (TOOLS / "node_modules" / "@splunk" / "dashboard-definition").is_dir(), (
        "Splunk's Dashboard Studio packages are not installed: run `npm ci --prefix splunk/tools` (as .ci/run does)"
    )
    node = shutil.which("node")
    assert node, "Node.js is needed to validate the dashboards with Splunk's packages"
    broken = tmp_path / "broken"
    shutil.copytree(app_dir() / "default" / "data" / "ui" / "views", broken / "default" / "data" / "ui" / "views")
    views = broken / "default" / "data" / "ui" / "views"
    overview = views / "hubbridge_overview.xml"
    overview.write_text(overview.read_text(encoding="utf-8").replace('"splunk.column"', '"splunk.columns"', 1))
    climate = views / "hubbridge_climate.xml"
    climate.write_text(climate.read_text(encoding="utf-8").replace('"yAxisTitleText": "%"', '"yAxisTitleText": 5', 1))
    devices = views / "hubbridge_devices.xml"
    devices.write_text(devices.read_text(encoding="utf-8").replace('"primary": "ds_battery"', '"primary": "ds_x"'))
    proc = subprocess.run(
        [node, str(TOOLS / "validate.cjs"), str(app_dir()), str(broken)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(proc.stdout)
    good = report[str(app_dir())]
    assert sorted(good) == [
        f"hubbridge_{n}" for n in ("climate", "delivery", "devices", "hub_health", "overview", "security")
    ]
    assert all(problems == [] for problems in good.values()), good
    bad = report[str(broken)]
    assert any("enterprise schema: /visualizations/viz_per_hub/type" in p for p in bad["hubbridge_overview"])
    assert any("cloud schema: /visualizations/viz_per_hub/type" in p for p in bad["hubbridge_overview"])
    assert any("yAxisTitleText must be string" in p for p in bad["hubbridge_climate"])
    assert "visualization viz_battery: primary data source ds_x does not exist" in bad["hubbridge_devices"]
    assert proc.returncode == 1
