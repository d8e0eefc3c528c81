"""The recipes of docs/webhooks.md work: each code block runs against a real request the sink signed.

The request comes from the webhook sink through the delivery loop to the receiver simulator, which records it;
the documented Python and JavaScript verification code (the official Standard Webhooks libraries) then checks it,
and refuses it once a byte of the body changed. The Node-RED flow and the Home Assistant automation are checked
for what their consumers parse (JSON and YAML with the keys the text relies on).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.sim.webhook import Received
from tests.sinks.webhook.rig import SECRET, event, rig

DOC = (Path(__file__).resolve().parent.parent / "docs" / "webhooks.md").read_text(encoding="utf-8")
# Where .ci/run installs the JavaScript library (npm install --prefix .ci/node standardwebhooks).
NODE_MODULES = Path(__file__).resolve().parent.parent / ".ci" / "node" / "node_modules"


def block(heading: str, lang: str) -> str:
    section = DOC[DOC.index(heading) :]
    m = re.search(rf"```{lang}\n(.*?)```", section, re.S)
    assert m, f"no {lang} block under {heading}"
    return m.group(1)


async def signed_request(tmp_path: Path) -> Received:
    async with rig(tmp_path) as r:
        await r.send([event()])
        await r.settled()
        return r.sim.received[0]


async def test_python_recipe_verifies_a_real_request_and_refuses_a_changed_one(tmp_path: Path) -> None:
    """The documented Python verification accepts what the sink sent and refuses a tampered body."""
    q = await signed_request(tmp_path)
    scope: dict[str, Any] = {}
    exec(block("### Verifying the signature in Python", "python").replace("whsec_...", SECRET), scope)
    assert scope["verify"](q.body, q.headers) == json.loads(q.body)
    with pytest.raises(PermissionError, match="not from our hubbridge"):
        scope["verify"](q.body.replace(b'"house"', b'"h0use"'), q.headers)


async def test_javascript_recipe_verifies_a_real_request(tmp_path: Path) -> None:
    """The documented Node.js verification (npm standardwebhooks) accepts the sink's request, refuses a changed one."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "standardwebhooks").is_dir():
        pytest.skip("node or the npm standardwebhooks package is missing (.ci/run installs both)")
    q = await signed_request(tmp_path)
    (tmp_path / "recipe.js").write_text(block("### Verifying the signature in JavaScript", "js"), encoding="utf-8")
    check = (
        "const { verify } = require('./recipe.js'); const fs = require('fs');"
        "const q = JSON.parse(fs.readFileSync(0, 'utf8'));"
        "const ev = verify(q.body, q.headers); let bad = 'accepted';"
        "try { verify(q.body.replace('house', 'h0use'), q.headers); } catch (e) { bad = 'refused'; }"
        "console.log(JSON.stringify({id: ev.id, bad}));"
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [node, "-e", check],
        input=json.dumps({"body": q.body.decode(), "headers": q.headers}),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES), "WEBHOOK_SECRET": SECRET},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"id": json.loads(q.body)["id"], "bad": "refused"}


def test_node_red_flow_and_home_assistant_automation_parse() -> None:
    """The Node-RED flow imports (JSON, http-in on /hubbridge wired to a 200) and the HA automation is YAML with a
    webhook trigger reading trigger.json."""
    flow = json.loads(block("### Node-RED", "json"))
    nodes = {n["id"]: n for n in flow}
    http_in = next(n for n in flow if n["type"] == "http in")
    assert http_in["url"] == "/hubbridge" and http_in["method"] == "post"
    assert any(nodes[w]["type"] == "http response" for w in http_in["wires"][0])
    ha = yaml.safe_load(block("### Home Assistant", "yaml"))
    (auto,) = ha["automation"]
    (trigger,) = auto["trigger"]
    assert trigger["platform"] == "webhook" and trigger["allowed_methods"] == ["POST"]
    assert all("trigger.json" in c for c in auto["condition"])
