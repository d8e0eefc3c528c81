"""Maker API routes under ``/apps/api/<appId>/``: token check, devices, commands, modes, HSM, postURL."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Final
from urllib.parse import unquote

from aiohttp import web

from bridge.sim.hubitat import render
from bridge.sim.hubitat.model import Device
from bridge.sim.hubitat.posturl import PostUrlMixin
from bridge.sim.hubitat.responses import (
    APPLICATION_JSON,
    TEXT_HTML,
    body,
    error_page,
    invalid_token,
    not_found,
    starting_up_page,
)
from bridge.sim.hubitat.values import parse_arg, wire_string

# HSM commands accepted by GET /hsm/<cmd> (ref §1.2) -> resulting hsmStatus (None: no status change).
_HSM_COMMANDS: Final[dict[str, str | None]] = {
    "armAway": "armedAway",
    "armHome": "armedHome",
    "armNight": "armedNight",
    "armAll": "armedAway",
    "disarm": "disarmed",
    "disarmAll": "allDisarmed",
    "armRules": None,
    "disarmRules": None,
    "cancelAlerts": None,
}


class MakerApiMixin(PostUrlMixin):
    """The Maker API app of :class:`~bridge.sim.hubitat.HubitatSim` (ref §1); it also registers the postURL."""

    def __init__(self, *, app_id: int, access_token: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app_id = app_id
        self.access_token = access_token
        # --- quirks -------------------------------------------------------------------------------------------
        self.html_content_type: bool = True  # JSON labelled text/html (ref §1.1); False: application/json
        self.command_latency: float = 0.0  # delay before a command's state change lands (ref §1.2)
        # --- faults -------------------------------------------------------------------------------------------
        self.token_valid: bool = True  # False: every Maker API call gets the XML 401
        self.html_error: int | None = None  # every Maker API call gets the HTML error page with this status
        self.malformed_json: bool = False  # /devices/all cut mid-object, still HTTP 200
        #: Maker API path (relative to /apps/api/<appId>/, no leading slash, no query, e.g. "devices/all",
        #: "modes", "devices/130") -> (HTTP status, body) served instead of the route's answer, with the hub's
        #: usual headers and JSON content type. Text is UTF-8 encoded (a lone surrogate goes out as its raw,
        #: invalid bytes), bytes are sent as they are. Checked after starting_up, html_error and the token, so
        #: those still answer first; the route itself does not run (a command path does not run the command).
        self.raw_responses: dict[str, tuple[int, str | bytes]] = {}
        #: Seconds to hold every answer to /devices/<id> (the device detail, not /devices/all or /devices/<id>/...)
        #: before sending it; on top of ``response_delay``.
        self.detail_delay: float = 0.0
        # --- plumbing -----------------------------------------------------------------------------------------
        self._commands_pending: set[asyncio.TimerHandle | asyncio.Handle] = set()

    # ----------------------------------------------------------------------------------------------------------
    # Request handling
    # ----------------------------------------------------------------------------------------------------------

    async def _handle_maker(self, request: web.Request) -> web.StreamResponse:
        if self.starting_up:
            return starting_up_page(self.starting_up_status)
        if self.html_error is not None:
            return error_page(self.html_error)
        if request.match_info.get("app_id") != str(self.app_id):
            return not_found()  # no such Maker API instance: the hub's bare 404 page, whatever the token
        if not self._authorized(request):
            return invalid_token()
        # /apps/api/<id>/<tail> on the LAN, /api/<hubUID>/apps/<id>/<tail> through the cloud relay.
        skip = 5 if "hub_uid" in request.match_info else 4
        parts = request.raw_path.partition("?")[0].split("/", skip)
        tail = parts[skip] if len(parts) > skip else ""
        segs = [unquote(s) for s in tail.split("/")]
        while segs and segs[-1] == "":
            segs.pop()
        if self.detail_delay > 0 and len(segs) == 2 and segs[0] == "devices" and segs[1] not in ("all", "*"):
            await asyncio.sleep(self.detail_delay)
        raw = self.raw_responses.get("/".join(segs))
        if raw is not None:
            status, data = raw
            payload = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
            return body(payload, self._json_type(), status)
        if tail == "postURL" or tail.startswith("postURL/"):
            return self._handle_post_url(request, tail[len("postURL/") :])
        match segs:
            case ["devices"]:
                return self._json(request, render.device_list(list(self._devices.values())))
            case ["devices", "all"]:
                items = [render.all_item(d) for d in self._devices.values()]
                return self._json(request, items, truncate=self.malformed_json)
            case ["devices", "*"]:
                return self._json(request, [render.list_form(d) for d in self._devices.values()])
            case ["devices", dev_id, *rest] if dev_id in self._devices:
                return self._device_endpoint(request, self._devices[dev_id], rest)
            case ["devices", _, *_]:
                return not_found()
            case ["modes"]:
                return self._json(request, render.modes_json(self._modes, self._mode_id))
            case ["modes", mode_id]:
                mode = next((m for m in self._modes if str(m["id"]) == mode_id), None)
                if mode is None:
                    return not_found()
                self.set_mode(mode["name"])
                # hubitatmaker set_mode parses a list (ref §1.2)
                return self._json(request, render.modes_json(self._modes, self._mode_id))
            case ["hsm"]:
                return self._json(request, {"hsm": self._hsm})
            case ["hsm", command] if command in _HSM_COMMANDS:
                self._hsm_command(command)
                return self._json(request, {"hsm": self._hsm})
            case _:
                return not_found()

    def _authorized(self, request: web.Request) -> bool:
        if not self.token_valid:
            return False
        if request.match_info.get("app_id") != str(self.app_id):
            return False  # a token only opens the Maker API instance it belongs to
        token = request.query.get("access_token")
        if token is None:
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                token = auth[len("Bearer ") :]  # ref §3: Bearer header carries the same app token [INF]
        return token == self.access_token

    def _json_type(self) -> str:
        return TEXT_HTML if self.html_content_type else APPLICATION_JSON

    def _json(self, request: web.Request, payload: Any, *, truncate: bool = False) -> web.Response:
        indent = 4 if request.query.get("prettyPrint") == "true" else None  # ref §1.3 (&prettyPrint=true)
        text = json.dumps(payload, indent=indent, separators=None if indent else (",", ":"), ensure_ascii=False)
        if truncate:
            text = text[: max(1, len(text) * 2 // 3)]  # cut mid-object, still HTTP 200
        return body(text, self._json_type())

    def _handle_post_url(self, request: web.Request, raw_url: str) -> web.Response:
        # GET /postURL/<urlencoded> registers, GET /postURL clears (Maker API New Features post, ref §1.2).
        url = unquote(raw_url) if raw_url else None
        self.posted_url = url or None
        return self._json(request, {"url": self.posted_url})

    def _device_endpoint(self, request: web.Request, dev: Device, rest: list[str]) -> web.Response:
        match rest:
            case []:
                return self._json(request, render.detail(dev))
            case ["events"]:
                return self._json(request, render.events_json(dev, request.query.get("num")))
            case ["commands"]:
                return self._json(request, render.commands_json(dev))
            case ["capabilities"]:
                return self._json(request, [{"capabilities": render.capabilities_with_values(dev)}])
            case ["attribute", name] if name in dev.attributes:
                value = wire_string(dev.attributes[name].value)
                return self._json(request, {"id": dev.id, "attribute": name, "value": value})
            case ["attribute", *_]:
                return not_found()
            case [command, *args] if command in dev.commands:
                # The response is the device JSON as it was *before* the command took effect (Crestron log:
                # `unlock` answered with lock "locked", ref §1.2); the state change lands right after.
                detail = render.detail(dev)
                split_args = [a for raw in args for a in raw.split(",") if a != ""]  # "3,4321,Guest" (ref §1.2)
                self._schedule_command(dev, command, [parse_arg(a) for a in split_args])
                return self._json(request, detail)
            case [_, *_]:
                return error_page(400)
        return not_found()

    # ----------------------------------------------------------------------------------------------------------
    # Commands
    # ----------------------------------------------------------------------------------------------------------

    def _schedule_command(self, dev: Device, command: str, args: list[Any]) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | asyncio.Handle

        def run() -> None:
            self._commands_pending.discard(handle)
            self._apply_command(dev, command, args)

        handle = loop.call_later(self.command_latency, run) if self.command_latency > 0 else loop.call_soon(run)
        self._commands_pending.add(handle)

    def _cancel_commands(self) -> None:
        for handle in self._commands_pending:
            handle.cancel()
        self._commands_pending.clear()

    def _apply_command(self, dev: Device, command: str, args: list[Any]) -> None:
        attrs = dev.attributes

        def put(name: str, value: Any, *, force: bool = False) -> None:
            if name in attrs:
                self.set_attribute(dev.id, name, value, event_type="digital", is_state_change=force)

        first = args[0] if args else None
        if command in ("on", "off") and "switch" in attrs:
            put("switch", command)
        elif command in ("off", "heat", "cool", "auto", "emergencyHeat"):
            put("thermostatMode", "emergency heat" if command == "emergencyHeat" else command)
        elif command == "setThermostatMode" and first is not None:
            put("thermostatMode", first)
        elif command in ("fanOn", "fanAuto", "fanCirculate"):
            put("thermostatFanMode", command[3:].lower())
        elif command == "setThermostatFanMode" and first is not None:
            put("thermostatFanMode", first)
        elif command == "setLevel" and first is not None:
            put("level", first)
            put("switch", "on" if first else "off")
        elif command in ("setHue", "setSaturation", "setColorTemperature") and first is not None:
            put({"setHue": "hue", "setSaturation": "saturation"}.get(command, "colorTemperature"), first)
            if command == "setColorTemperature" and len(args) > 1:
                put("level", args[1])
        elif command == "setColor" and isinstance(first, str):
            with contextlib.suppress(ValueError):
                color = json.loads(first)
                for key in ("hue", "saturation", "level"):
                    if key in color:
                        put(key, color[key])
        elif command in ("lock", "unlock"):
            put("lock", command + "ed")
        elif command == "setHeatingSetpoint" and first is not None:
            put("heatingSetpoint", first)
            # A TRV has no separate heatingSetpoint; a full thermostat follows it only while heating.
            if "heatingSetpoint" not in attrs or self._mode_of(dev) == "heat":
                put("thermostatSetpoint", first)
        elif command == "setCoolingSetpoint" and first is not None:
            put("coolingSetpoint", first)
            if self._mode_of(dev) == "cool":
                put("thermostatSetpoint", first)
        elif command == "setThermostatSetpoint" and first is not None:
            put("thermostatSetpoint", first)
        elif command in ("push", "hold", "doubleTap"):
            # Button events always fire, even for the same button (drivers force isStateChange, ref §5.7).
            put({"push": "pushed", "hold": "held"}.get(command, "doubleTapped"), first or 1, force=True)
        elif command in ("open", "close"):
            for name in ("door", "valve", "windowShade", "contact"):
                if name in attrs:
                    put(name, "open" if command == "open" else "closed")
                    break
        # configure/refresh/... are accepted and change nothing: an unchanged value produces no event.

    @staticmethod
    def _mode_of(dev: Device) -> Any:
        attr = dev.attributes.get("thermostatMode")
        return None if attr is None else attr.value

    def _hsm_command(self, command: str) -> None:
        status = _HSM_COMMANDS[command]
        if status is not None:
            self.set_hsm(status)
        elif command == "cancelAlerts":
            self.hsm_alert("cancel")
        else:
            self._emit_location("hsmRules", "armedRule" if command == "armRules" else "disarmedRule", "hsmEvent", None)
