"""Standard Webhooks signing (https://www.standardwebhooks.com, "Signature scheme").

``webhook-id`` is the event id (a batch: a hash of its event ids, so a resend carries the same one),
``webhook-timestamp`` the send time in whole seconds, and ``webhook-signature`` one ``v1,<base64 HMAC-SHA256>`` of
``id.timestamp.body`` per secret, space-separated (two while a secret rotates). Twelve lines of stdlib: the official
library pulls in httpx and dateutil for them, so it is a test dependency only, where it checks every signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret; ``ValueError`` saying what is wrong otherwise."""
    text = secret.strip()
    if not text.startswith(PREFIX):
        raise ValueError("a Standard Webhooks secret starts with whsec_ (whsec_ and then base64)")
    try:
        key = base64.b64decode(text[len(PREFIX) :] + "==", validate=False)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not base64") from None
    if len(key) < 16:
        raise ValueError("the secret is too short: whsec_ and then at least 16 bytes (24 recommended) in base64")
    return key


def batch_id(ids: Sequence[str]) -> str:
    """A stable message id for a batch: the same events give the same id, so a receiver can drop a resend."""
    if len(ids) == 1:
        return ids[0]
    return "batch_" + hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:32]


def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,`` signature per key, newest key first."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii") for key in keys
    )


def verify(keys: Sequence[bytes], msg_id: str, timestamp: str, body: bytes, header: str) -> bool:
    """Whether ``header`` holds a valid ``v1`` signature by any of ``keys`` (the simulator's check)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    wanted = {s for s in sign(keys, msg_id, ts, body).split(" ")}
    return any(hmac.compare_digest(given, w) for given in header.split(" ") for w in wanted)
