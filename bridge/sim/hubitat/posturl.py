"""The Maker API postURL webhook sender: JSON POSTs one at a time, in event order, never retried."""

from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from typing import Any

import aiohttp

from bridge.sim.hubitat.state import HubEvent, HubState


class PostUrlMixin(HubState):
    """The postURL push channel of :class:`~bridge.sim.hubitat.HubitatSim` (ref §1.4)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Separate from the eventsocket's stream, so that each channel's quirks are reproducible on their own.
        self._post_rng = random.Random(self._seed + 7919)
        # --- quirks -------------------------------------------------------------------------------------------
        self.post_location_events: bool = True  # Maker API "Include location events to be sent by POST"
        self.post_drop_rate: float = 0.0  # fraction of webhook POSTs lost on the network (ref §7)
        self.post_timeout: float = 2.0
        # --- faults -------------------------------------------------------------------------------------------
        # A stalled sender (a busy hub, a backlog): POSTs queue, in order, until resume_posts(). See pause_posts().
        self._posts_paused = asyncio.Event()
        self._posts_paused.set()  # set: not paused
        # --- observation --------------------------------------------------------------------------------------
        self.post_results: list[tuple[dict[str, Any], int | None]] = []  # (body, HTTP status or None)
        self.raw_post_results: list[tuple[bytes, int | None]] = []  # the same for post_raw()
        self.posted_url: str | None = None  # registered with GET /postURL/<url>; settable directly
        # --- plumbing -----------------------------------------------------------------------------------------
        self._post_queue: deque[tuple[str, dict[str, Any] | bytes]] = deque()  # (url, body; bytes: post_raw)
        self._post_wakeup = asyncio.Event()
        self._posts_idle = asyncio.Event()
        self._posts_idle.set()
        self._post_session: aiohttp.ClientSession | None = None

    def _publish(self, event: HubEvent) -> None:
        url = self.posted_url
        if url is not None and (event.device_id is not None or self.post_location_events):
            # Webhook body (postURL_events.json, ref §1.4): real JSON nulls, value a string, deviceId a string
            # for devices and null for location events.
            content: dict[str, Any] = {
                "name": event.name,
                "value": event.value,
                "displayName": event.display_name,
                "deviceId": event.device_id,
                "descriptionText": event.description,
                "unit": event.unit,
                "type": event.event_type,
                "data": event.data,
            }
            if self.omit_event_type:
                del content["type"]
            self._queue_post(url, {"content": content})
        super()._publish(event)

    def post_raw(self, body: bytes | str) -> None:
        """POST ``body`` exactly as given (text is UTF-8 encoded) to the registered postURL.

        It is queued behind the webhook POSTs already queued, so it is sent in order with the normal traffic, with
        the hub's usual ``Content-Type: application/json``. It is never dropped (``post_drop_rate`` does not
        apply) nor retried; ``(body_bytes, status)`` is appended to :attr:`raw_post_results` once it has been
        attempted (status None: no answer). :meth:`wait_posts_idle` waits for it too. Raises
        :class:`RuntimeError` when no postURL is registered.
        """
        url = self.posted_url
        if url is None:
            raise RuntimeError("no postURL is registered (GET /postURL/<url> or set posted_url)")
        self._queue_post(url, body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body))

    def pause_posts(self) -> None:
        """Stop sending POSTs (the one on the wire, if any, finishes); new ones queue in event order.

        A hub's POSTs lag behind its eventsocket whenever the receiver is slow (each waits for its answer), so
        the copies of a burst can still be queued when the receiver restarts; this makes that lag deterministic.
        """
        self._posts_paused.clear()

    def resume_posts(self) -> None:
        """Send the queued POSTs again, oldest first, to the postURL registered at the time each was queued."""
        self._posts_paused.set()

    async def wait_posts_idle(self, timeout: float = 10.0) -> None:
        """Wait until every queued postURL POST has been attempted (raises :class:`TimeoutError`)."""
        async with asyncio.timeout(timeout):
            await self._posts_idle.wait()

    def _queue_post(self, url: str, body: dict[str, Any] | bytes) -> None:
        self._post_queue.append((url, body))
        self._posts_idle.clear()
        self._post_wakeup.set()

    def _start_posts(self) -> None:
        self._post_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=self.post_timeout)
        )
        self._spawn(self._post_worker())

    async def _stop_posts(self) -> None:
        """Abandon the queued POSTs and close the session (the worker task is cancelled with the others)."""
        self._post_queue.clear()
        self._posts_idle.set()
        if self._post_session is not None:
            await self._post_session.close()
            self._post_session = None

    async def _post_worker(self) -> None:
        """POST queued webhook bodies one at a time, in event order, never retrying (ref §1.4 delivery)."""
        queue = self._post_queue
        while True:
            if not queue:
                self._posts_idle.set()
                self._post_wakeup.clear()
                await self._post_wakeup.wait()
                continue
            await self._posts_paused.wait()
            if not queue:
                continue
            url, body = queue.popleft()
            if isinstance(body, bytes):
                self.raw_post_results.append((body, await self._post_once(url, body)))
                continue
            status: int | None = None
            if not (self.post_drop_rate and self._post_rng.random() < self.post_drop_rate):
                payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
                status = await self._post_once(url, payload)
            self.post_results.append((body, status))

    async def _post_once(self, url: str, payload: bytes) -> int | None:
        session = self._post_session
        if session is None:
            return None
        try:
            async with session.post(
                url,
                data=payload,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.post_timeout),
            ) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return None
