"""Webhook receiver simulator: programmable replies, recorded requests, Standard Webhooks signature checks.

Used by the tests, ``hubbridge demo`` and ``bench/bench_webhook.py``; ``python -m bridge.sim.webhook`` serves one
until Ctrl-C and prints what it receives.
"""

from bridge.sim.webhook.simulator import Received, Reply, WebhookSim

__all__ = ["Received", "Reply", "WebhookSim"]
