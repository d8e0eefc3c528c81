"""Protocol-faithful simulator of a Hubitat Elevation hub (Maker API, postURL webhook, ``/eventsocket``).

The simulator is a real :mod:`aiohttp` server bound to loopback. It holds the hub state (devices, modes, HSM)
and reproduces the wire formats and quirks documented in ``/work/shared/reference/hubitat.md`` (cited below as
"ref §N"), using copies of the public payload fixtures shipped in ``bridge/sim/hubitat/data/``:

* Maker API under ``/apps/api/<appId>/`` (ref §1): JSON served as ``text/html``, an ``HUBSESSION`` cookie,
  chunked bodies and no ``Server`` header; ``/devices/all`` with all-string attribute maps polluted by junk
  ``dataType``/``values`` keys; typed ``currentValue`` in ``/devices/<id>`` with duplicate attributes and
  commands; XML ``invalid_token`` 401s; commands that answer with the *pre-command* device JSON and change
  state right after; ``/modes``, ``/hsm``, ``/postURL``.
* postURL webhook (ref §1.4): ``{"content": {...}}`` JSON POSTs, values as strings, ``deviceId`` a string or
  ``null``, sent one at a time in event order, fire-and-forget (never retried).
* ``/eventsocket`` (ref §2): hand-built JSON text frames with ``"null"`` strings and integer ids, optional
  duplicated / split frames, optional server pings, dead (silent) sockets and abrupt drops.
* A few hub-root health endpoints (ref §4) and a booting state ("Your hub is starting up").
* The cloud relay in front of it (``/api/<hubUID>/apps/<appId>/...``, ref §1.1, §3): Maker API only, and the
  relay's own errors (hub offline, timeout, rate limit) on demand (``relay_fault``).
* Fault injection beyond the hub's own quirks: exact raw bodies for any Maker API path
  (``raw_responses``), slow device details (``detail_delay``), raw eventsocket frames (``inject_frame``) and
  raw webhook bodies (``post_raw``).

Hub state is the source of truth for end-to-end checks: :meth:`HubitatSim.state` returns what the hub holds,
including changes made with ``push=False`` that no client was told about (a missed event).

The default device set (:func:`default_devices`) is ``data/devices.json``; :func:`fixture_text` and
:func:`fixture_json` read it and the fixture copies. Modules, one job each:

* ``simulator``: :class:`HubitatSim`, assembled from the parts below, with server lifecycle and request counters;
* ``state``: hub state and event generation; ``model`` / ``values``: the device model and value rendering;
* ``maker`` (+ ``render``): Maker API routes and their JSON; ``responses``: the hub's HTTP responses;
* ``cloud``: the cloud relay's routes and faults;
* ``eventsocket``: the WebSocket push channel; ``posturl``: the webhook push channel;
* ``health``: hub-root admin endpoints and reboot; ``devices`` / ``fixtures``: package data;
* ``cli`` / ``__main__``: ``python -m bridge.sim.hubitat --port 8081``, a manual demo hub with random activity.
"""

from __future__ import annotations

from bridge.sim.hubitat.cli import main
from bridge.sim.hubitat.devices import default_devices
from bridge.sim.hubitat.fixtures import fixture_json, fixture_text
from bridge.sim.hubitat.simulator import HubitatSim

__all__ = ["HubitatSim", "default_devices", "fixture_json", "fixture_text", "main"]
