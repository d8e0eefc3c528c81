"""The webhook sink against the receiver simulator over real sockets: encoding, signing, the outcome table.

Each test drives the real chain (journal, delivery loop, sink, WebhookSim) and asserts what a receiver or an operator
would see. Every signature is checked with the official ``standardwebhooks`` library, not with our own code.
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest
import standardwebhooks
from pydantic import ValidationError

from bridge.cli import main
from bridge.options import Secret
from bridge.sim.webhook import Reply, WebhookSim
from bridge.sinks.base import Delivered, Hold, Rejected, Retry, TooLarge
from bridge.sinks.webhook.classify import classify
from bridge.sinks.webhook.signing import batch_id
from tests.helpers import wait_until
from tests.sinks.webhook.rig import OLD_SECRET, SECRET, config, event, rig

URL = "https://relay.example.com/hooks/home?key=abc"


def verified(secret: str, body: bytes, headers: dict[str, str]) -> object:
    """What the official library makes of a request: the parsed payload, or it raises."""
    return standardwebhooks.Webhook(secret).verify(body, headers)


# ------------------------------------------------------------------------------------------------ outcome table


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, Delivered),
        (204, Delivered),
        (408, Retry),
        (425, Retry),
        (429, Retry),
        (500, Retry),
        (503, Retry),
        (410, Hold),
        (401, Hold),
        (403, Hold),
        (404, Hold),
        (301, Hold),
        (413, TooLarge),
        (400, Rejected),
        (422, Rejected),
    ],
)
def test_outcome_table(status: int, kind: type) -> None:
    """Each status a receiver may answer leads to what docs/webhooks.md promises (retry, hold, split, dead-letter)."""
    assert isinstance(classify(status, b"", URL), kind)


def test_refusal_reason_keeps_status_and_first_kib_of_body_and_no_query_secret() -> None:
    """A dead letter says why: the status and the first 1 KiB of the receiver's body; never the URL's key=."""
    outcome = classify(422, b"bad value: " + b"x" * 2000, URL)
    assert isinstance(outcome, Rejected)
    assert outcome.reason.startswith("the webhook refused the event: HTTP 422: bad value: xxx")
    assert len(outcome.reason) < 1100 and outcome.reason.endswith("[...]")
    retry = classify(503, b"", URL, retry_after="7")
    assert isinstance(retry, Retry) and retry.delay == 7.0
    assert "abc" not in retry.reason and "key=***" in retry.reason


def test_config_rejects_bad_keys_and_check_says_unsigned_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Config mistakes fail `check` with a clear line; a sink without a secret is valid but `check` warns once."""
    with pytest.raises(ValidationError, match="previous_secret needs secret"):
        config("http://x", secret=None, previous_secret=OLD_SECRET)
    with pytest.raises(ValidationError, match="sets webhook-signature itself"):
        config("http://x", headers={"webhook-signature": "v1,x"})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "state_dir: ./s\nhubs: []\nsinks:\n  - {name: relay, type: webhook, url: 'http://127.0.0.1:9/h'}\n"
        "  - {name: signed, type: webhook, url: 'http://127.0.0.1:9/h', secret: " + SECRET + "}\n",
        encoding="utf-8",
    )
    assert main(["check", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.count("unsigned") == 1 and "sink relay" in out
    assert SECRET not in out


# ------------------------------------------------------------------------------------------------ over sockets


async def test_one_signed_event_per_request_in_order_over_kept_alive_connections(tmp_path: Path) -> None:
    """By default each event is one POST of exactly the contract object, signed; its webhook-id is the event id."""
    evs = [event(device_id="7") for _ in range(12)]
    async with rig(tmp_path, max_in_flight=2) as r:
        await r.send(evs)
        await r.settled()
        got = r.sim.received
        assert [json.loads(q.body)["id"] for q in got] == [e["id"] for e in evs]
        for q, ev in zip(got, evs, strict=True):
            assert q.method == "POST" and q.headers["content-type"] == "application/json"
            assert q.headers["webhook-id"] == ev["id"]
            assert abs(int(q.headers["webhook-timestamp"]) - time.time()) < 60
            assert verified(SECRET, q.body, q.headers) == ev
        # keep-alive: twelve requests over at most max_in_flight connections
        assert len({q.peer for q in got}) <= 2
        assert await r.dead() == []


async def test_batch_is_a_signed_array_with_a_stable_id_across_a_resend(tmp_path: Path) -> None:
    """batch: true posts a JSON array; a batch sent again after a 503 carries the same webhook-id (receivers dedupe)."""
    sim = WebhookSim(secrets=[SECRET])
    sim.script = [Reply(503, "try later")]
    evs = [event() for _ in range(5)]
    async with sim, rig(tmp_path, sim, batch=True, max_events=10, max_wait="50ms") as r:
        await r.send(evs)
        await r.settled()
        first, second = sim.received
        assert first.status == 503 and second.status == 200
        assert first.headers["webhook-id"] == second.headers["webhook-id"] == batch_id([e["id"] for e in evs])
        assert verified(SECRET, second.body, second.headers) == evs
        assert sim.delivered() == evs


async def test_rotation_signs_with_both_secrets(tmp_path: Path) -> None:
    """While a secret rotates, receivers on the old secret and on the new one both accept every request."""
    async with rig(tmp_path, previous_secret=OLD_SECRET) as r:
        ev = event()
        await r.send([ev])
        await r.settled()
        (q,) = r.sim.received
        assert len(q.headers["webhook-signature"].split(" ")) == 2
        assert verified(SECRET, q.body, q.headers) == ev
        assert verified(OLD_SECRET, q.body, q.headers) == ev
        with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
            verified("whsec_" + "QUJD" * 8, q.body, q.headers)


async def test_unsigned_without_a_secret(tmp_path: Path) -> None:
    """Without a secret, requests carry a webhook-id but no signature headers."""
    async with rig(tmp_path, secret=None) as r:
        await r.send([event()])
        await r.settled()
        (q,) = r.sim.received
        assert "webhook-signature" not in q.headers and q.headers["webhook-id"]


async def test_transient_failures_retry_until_delivered_honouring_retry_after(tmp_path: Path) -> None:
    """408, 425, 429, 5xx and a reset connection are retried: every event arrives once answered 2xx, none dead."""
    sim = WebhookSim(secrets=[SECRET])
    sim.script = [Reply(408), Reply(425), Reply(500), Reply(reset=True), Reply(429, retry_after="1"), Reply(502)]
    evs = [event(device_id="1") for _ in range(3)]
    async with sim, rig(tmp_path, sim) as r:
        await r.send(evs)
        await r.settled()
        assert [e["id"] for e in sim.delivered()] == [e["id"] for e in evs]
        assert await r.dead() == []
        after_429 = next(i for i, q in enumerate(sim.received) if q.status == 429)
        waited = sim.received[after_429 + 1].time - sim.received[after_429].time
        assert waited >= 0.9, f"Retry-After: 1 was not honoured (next request after {waited:.3f}s)"
        for q in sim.received:
            assert q.verified is True


async def test_410_disables_the_sink_and_keeps_the_backlog(tmp_path: Path) -> None:
    """A 410 Gone stops sending (one error line), dead-letters nothing and keeps every event for after the fix."""
    sim = WebhookSim(secrets=[SECRET])
    sim.script = [Reply(410, "hook deleted")]
    evs = [event() for _ in range(4)]
    async with sim, rig(tmp_path, sim, max_in_flight=1) as r:
        await r.send(evs)
        await wait_until(lambda: r.delivery.status.state == "holding", "the sink holds")
        await wait_until(lambda: r.delivery._backoff.failures >= 3, "a few more backoff rounds passed")
        assert len(sim.received) == 1, "nothing may be sent to a hook that is gone"
        assert r.cursor == 0 and r.delivery.lag == 4
        assert await r.dead() == []
        assert "410 Gone" in r.delivery.status.detail and "restart" in r.delivery.status.detail


async def test_a_refused_event_in_a_batch_is_isolated_and_dead_lettered_with_the_reason(tmp_path: Path) -> None:
    """A 4xx for content dead-letters only the bad event (the batch is split to find it); the rest are delivered."""
    sim = WebhookSim(secrets=[SECRET])
    sim.reject = lambda ev: ev.get("device") == "Broken"
    evs = [event() for _ in range(3)] + [event(device="Broken")] + [event() for _ in range(4)]
    async with sim, rig(tmp_path, sim, batch=True, max_events=8, max_wait="100ms") as r:
        await r.send(evs)
        await r.settled()
        assert sorted(e["id"] for e in sim.delivered()) == sorted(e["id"] for e in evs if e["device"] != "Broken")
        (dead,) = await r.dead()
        assert dead.id == evs[3]["id"]
        assert "HTTP 422" in dead.reason and evs[3]["id"] in dead.reason


async def test_wrong_credentials_hold_and_never_dead_letter(tmp_path: Path) -> None:
    """A receiver that refuses the signature (401) holds the events: the data is fine, the secret is not."""
    sim = WebhookSim(secrets=[OLD_SECRET], require_signature=True)
    async with sim, rig(tmp_path, sim) as r:
        await r.send([event()])
        await wait_until(lambda: len(sim.received) >= 3, "a few attempts")
        assert r.delivery.status.state == "holding" and "credentials" in r.delivery.status.detail
        assert r.cursor == 0 and await r.dead() == []


async def test_max_retry_time_bounds_retries_then_dead_letters(tmp_path: Path) -> None:
    """With max_retry_time, an event that keeps failing is dead-lettered (with the last reason) instead of waiting."""
    sim = WebhookSim(secrets=[SECRET])
    sim.default = Reply(503, "down for maintenance")
    async with sim, rig(tmp_path, sim, max_retry_time="300ms") as r:
        await r.send([event()])
        await r.settled()
        (dead,) = await r.dead()
        assert "max_retry_time 0.3s" in dead.reason and "503" in dead.reason


async def test_in_order_per_attribute_while_an_earlier_request_is_retried(tmp_path: Path) -> None:
    """With several requests in flight, a device's temperature events still arrive in order when one is retried."""
    sim = WebhookSim(secrets=[SECRET])
    sim.script = [Reply(503, delay=0.05)]
    evs = [event(device_id=str(i % 3)) for i in range(12)]
    async with sim, rig(tmp_path, sim, max_in_flight=4) as r:
        await r.send(evs)
        await r.settled()
        for dev in "012":
            sent = [e["id"] for e in evs if e["device_id"] == dev]
            got = [e["id"] for e in sim.delivered() if e["device_id"] == dev]
            assert got == sent, f"device {dev} out of order"


async def test_header_secrets_never_in_reasons(tmp_path: Path) -> None:
    """A receiver echoing the Authorization header in its error body: the dead letter's reason has it blanked."""
    sim = WebhookSim()
    sim.default = Reply(400, "bad request; you sent Authorization: Bearer hunter2-token")
    async with sim, rig(tmp_path, sim, secret=None, headers={"Authorization": "Bearer hunter2-token"}) as r:
        await r.send([event()])
        await r.settled()
        (dead,) = await r.dead()
        assert "hunter2" not in dead.reason and "********" in dead.reason
        assert sim.received[0].headers["authorization"] == "Bearer hunter2-token"
        assert "hunter2" not in repr(r.sink.config)


async def test_unusable_secret_holds_with_a_clear_line(tmp_path: Path) -> None:
    """A secret that is not whsec_ base64 is refused by `check` when inline; in a file (read when used, it may
    change) it fails the health check and holds events, saying what is wrong and never the secret."""
    with pytest.raises(ValidationError, match="secret: a Standard Webhooks secret starts with whsec_"):
        config("http://x", secret="not-a-whsec-secret")
    with pytest.raises(ValidationError, match="line break"):
        config("http://x", headers={"X-Token": "a\nb"})
    bad = tmp_path / "secret"
    bad.write_text("not-a-whsec-secret\n", encoding="utf-8")
    async with rig(tmp_path, secret=Secret(path=bad)) as r:
        health = await r.sink.health()
        assert not health.ok and "starts with whsec_" in health.detail
        await r.send([event()])
        await wait_until(lambda: r.delivery.status.state == "holding", "the sink holds")
        assert "not-a-whsec" not in r.delivery.status.detail
        assert len(r.sim.received) == 0


def test_the_example_relay_block_loads(tmp_path: Path) -> None:
    """The webhook block of config.example.yaml, uncommented, passes `check`: the documented keys are real."""
    from bridge.config import load_config

    text = (Path(__file__).resolve().parents[3] / "config.example.yaml").read_text(encoding="utf-8")
    block = text[text.index("  # - name: relay") :].split("\n\n")[0].splitlines()  # up to the next example
    lines = [line.replace("  # ", "  ", 1).replace("#   ", "  ", 1) for line in block if line.startswith("  #")]
    sinks = "\n".join(line for line in lines if not line.lstrip().startswith("# ")).replace(
        "/etc/hubbridge/relay-ca.pem", ""
    )
    sinks = sinks.replace("tls: {verify: true, ca_file: }", "tls: {verify: true}")
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"state_dir: ./s\nhubs: []\nsinks:\n{sinks}\n", encoding="utf-8")
    cfg = load_config(cfg_path, env={"WEBHOOK_SECRET": SECRET, "WEBHOOK_OLD_SECRET": OLD_SECRET})
    (relay,) = cfg.sinks
    assert relay.type == "webhook" and relay.max_retry_time == 3600.0
    assert relay.filters.deadband == {"temperature": 0.2, "power": 5}
    assert relay.filters.include[1].device == ["Front Door*"]


async def test_one_log_line_per_state_change_not_per_attempt(tmp_path: Path, log_stream: io.StringIO) -> None:
    """Five failed attempts in a row log one warning when it starts and one line when delivery is back."""
    sim = WebhookSim(secrets=[SECRET])
    sim.script = [Reply(503, "busy")] * 5
    async with sim, rig(tmp_path, sim) as r:
        await r.send([event()])
        await r.settled()
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines() if line.strip()]
    failed = [ln for ln in lines if ln.get("event") == "sink delivery failed; will retry"]
    again = [ln for ln in lines if ln.get("event") == "sink delivering again"]
    assert len(sim.received) == 6
    assert len(failed) == 1 and len(again) == 1 and again[0]["after_attempts"] == 5
    # The line says by when the next attempt comes (the rig's first backoff step is far below a second).
    assert 0 < failed[0]["retry_within"] <= 1 and re.fullmatch(r"\d\d:\d\d:\d\d", failed[0]["until"])
