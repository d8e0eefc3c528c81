"""Protocol-faithful simulator of an Athom Homey (Web API, Socket.IO realtime) and of the Athom cloud login.

Real servers on 127.0.0.1 (port 0) reproducing ../shared/reference/homey.md (sections 2-6 and the checklist in
10), with copies of ../shared/fixtures/homey/ in ``data/``:

* ``simulator``: :class:`HomeySim` (REST with scopes and JSON 401/403, ping with ``X-Homey-ID``, the user login
  with expiring sessions) and :class:`AthomCloudSim` (``/oauth2/token`` with rotating refresh tokens,
  ``/user/me``, ``/delegation/token``, the accounts login and ``/oauth2/authorise``);
* ``realtime``: the Socket.IO server (handshake, ``/api`` namespace, subscribe, capability and variable events,
  faults: namespace dropped after connect, silent stream, events that stop, sessions ending mid-stream);
* ``state``: zones, devices (V3; V2 from the fixture), Logic variables, and how they change.
"""

from __future__ import annotations

from bridge.sim.homey.simulator import AthomCloudSim, HomeySim
from bridge.sim.homey.state import default_devices, fixture_json, fixture_text

__all__ = ["AthomCloudSim", "HomeySim", "default_devices", "fixture_json", "fixture_text"]
