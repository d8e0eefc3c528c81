"""``hubbridge auth homey``: log in to the Athom cloud once and store the login for a ``type: homey`` hub.

The route of homey.md 6.2: an authorization code (from email and password, or pasted after logging in with a
browser), exchanged for tokens; ``/user/me`` lists the user's Homeys and the user picks one; the refresh token,
the OAuth client and the Homey's addresses are written to ``<state_dir>/homey-<hub>.login.json`` (mode 0600,
atomically). The bridge then renews everything from that file on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from bridge.config import load_config
from bridge.errors import BridgeError, ConfigError, HubError
from bridge.sources.homey.auth import TokenStore, login_file
from bridge.sources.homey.cloud import AthomCloud, authorise_url, password_code
from bridge.sources.homey.config import HomeyConfig


def add_parser(sub: Any) -> None:
    """The ``auth homey`` subcommand's arguments (``sub`` is the top-level subparsers)."""
    from bridge.commands import add_config, subcommand

    auth = sub.add_parser(
        "auth",
        help="log in to a hub's cloud account once (Homey without an API key)",
        description="Log in to a hub family's cloud account once, for hubs the bridge cannot reach with a key.",
    )
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    p = subcommand(
        auth_sub,
        "homey",
        "log in to the Athom cloud and store the login for a Homey hub",
        """Log in to the Athom cloud (email and password, or an authorization code pasted from the browser
        login), pick one of the account's Homeys, and store the login in state_dir (mode 0600) for the hub of
        the config that has no api_key. The bridge then renews its tokens itself; run this again only when it
        says the login was revoked.""",
        [
            ("hubbridge auth homey -c bridge.yaml", "prompted for email, password and the Homey"),
            ("hubbridge auth homey --hub cabin --email me@example.com --homey 'Cabin'", "fewer prompts"),
            ("hubbridge auth homey --hub cabin --code PASTED_CODE", "with a code from the browser login"),
        ],
    )
    add_config(p)
    p.add_argument("--hub", default=None, help="the homey hub's name in the config (default: the only one)")
    p.add_argument("--email", default=None, help="Athom account email (prompted when missing)")
    p.add_argument("--password-file", default=None, help="read the password from this file instead of a prompt")
    p.add_argument("--code", default=None, help="an authorization code pasted from the browser login instead")
    p.add_argument("--homey", default=None, help="the Homey to use, by name or id (prompted when several)")
    p.add_argument("--client-id", default=os.environ.get("ATHOM_CLIENT_ID"), help="Athom API client id")
    p.add_argument(
        "--client-secret-file", default=None, help="file with the client secret (or env ATHOM_CLIENT_SECRET)"
    )


def _pick_hub(path: str, name: str | None) -> tuple[HomeyConfig, Path]:
    cfg = load_config(path)
    homeys = [h for h in cfg.hubs if isinstance(h, HomeyConfig)]
    if name is not None:
        homeys = [h for h in homeys if h.name == name]
    if len(homeys) != 1:
        names = ", ".join(h.name for h in cfg.hubs if isinstance(h, HomeyConfig)) or "none"
        raise ConfigError(path, [f"name one homey hub with --hub (homey hubs in the config: {names})"])
    return homeys[0], cfg.state_dir


def _secret(args: argparse.Namespace, hub: HomeyConfig) -> tuple[str, str]:
    client_id = args.client_id or hub.cloud.client_id
    if args.client_secret_file:
        secret: str | None = Path(args.client_secret_file).read_text(encoding="utf-8").strip()
    elif hub.cloud.client_secret is not None:
        secret = hub.cloud.client_secret.get()
    else:
        secret = os.environ.get("ATHOM_CLIENT_SECRET")
    if not client_id or not secret:
        raise BridgeError(
            "an Athom API client is needed (https://tools.developer.homey.app/api/clients): give --client-id and "
            "--client-secret-file (or ATHOM_CLIENT_ID / ATHOM_CLIENT_SECRET, or cloud.client_id/client_secret)"
        )
    return client_id, secret


def _choose(homeys: list[dict[str, Any]], wanted: str | None) -> dict[str, Any]:
    if not homeys:
        raise BridgeError("this Athom account has no Homey")
    if wanted is not None:
        for h in homeys:
            if wanted in (h.get("id"), h.get("_id"), h.get("name")):
                return h
        raise BridgeError(f"no Homey named {wanted!r} in this account")
    if len(homeys) == 1:
        return homeys[0]
    for i, h in enumerate(homeys, 1):
        print(f"  {i}. {h.get('name')} ({h.get('modelName') or h.get('model') or '?'}, id {h.get('id')})")
    while True:
        answer = input(f"Which Homey (1-{len(homeys)})? ").strip()
        if answer.isdigit() and 1 <= int(answer) <= len(homeys):
            return homeys[int(answer) - 1]


def _ask(args: argparse.Namespace, hub: HomeyConfig, client_id: str) -> tuple[str, str]:
    """Email and password, from the arguments or prompts (nothing to ask when a code was pasted)."""
    if args.code is not None:
        return "", ""
    email = args.email or input("Athom account email: ").strip()
    if args.password_file:
        return email, Path(args.password_file).read_text(encoding="utf-8").rstrip("\n")
    cloud = hub.cloud
    print(f"(or log in at {authorise_url(cloud.accounts_url, client_id, cloud.redirect_uri)}")
    print(" and run again with --code <the code in the address you are sent to>)")
    return email, getpass.getpass("Password: ")


async def _fetch(
    args: argparse.Namespace, hub: HomeyConfig, client_id: str, secret: str, email: str, password: str
) -> tuple[str, list[dict[str, Any]]]:
    """Steps A-C: the refresh token and the user's Homeys."""
    cloud_cfg = hub.cloud
    async with aiohttp.ClientSession() as session:
        code = args.code
        if code is None:
            code = await password_code(
                session,
                accounts_url=cloud_cfg.accounts_url,
                client_id=client_id,
                redirect_uri=cloud_cfg.redirect_uri,
                email=email,
                password=password,
            )
        cloud = AthomCloud(session, api_url=cloud_cfg.api_url, client_id=client_id, client_secret=secret)
        tokens = await cloud.exchange_code(code, cloud_cfg.redirect_uri)
        user = await cloud.user(tokens.access_token)
    return tokens.refresh_token, [h for h in user.get("homeys") or [] if isinstance(h, dict)]


def _login(args: argparse.Namespace, hub: HomeyConfig, state_dir: Path) -> int:
    client_id, secret = _secret(args, hub)
    email, password = _ask(args, hub, client_id)
    refresh_token, homeys = asyncio.run(_fetch(args, hub, client_id, secret, email, password))
    homey = _choose(homeys, args.homey)
    keep = ("id", "name", "apiVersion", "platform", "localUrl", "localUrlSecure", "remoteUrl", "remoteUrlForwarded")
    stored: dict[str, Any] = {k: homey[k] for k in keep if k in homey}
    stored.setdefault("id", homey.get("_id"))  # homey-api reads properties.id ?? properties._id (homey.md 6.2)
    data = {"client_id": client_id, "client_secret": secret, "refresh_token": refresh_token, "homey": stored}
    path = login_file(state_dir, hub.name)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        TokenStore(path).save(data)
    except OSError as exc:
        raise BridgeError(f"cannot store the login in {state_dir}: {exc.strerror or exc}") from None
    print(f"logged in: hub {hub.name} uses Homey {homey.get('name')!r} (id {stored['id']}); login stored in {path}")
    if homey.get("apiVersion") == 3 and homey.get("platform") == "local":
        print("  (this Homey also takes API keys: Settings > API Keys, given as api_key, need no cloud login)")
    return 0


def run(args: argparse.Namespace) -> int:
    """``hubbridge auth homey``; raises BridgeError subclasses for the CLI to print as one line."""
    hub, state_dir = _pick_hub(args.config, args.hub)
    if hub.api_key is not None:
        print(f"note: hub {hub.name} has api_key set, which the bridge uses instead of a cloud login", file=sys.stderr)
    try:
        return _login(args, hub, state_dir)
    except HubError as exc:
        raise BridgeError(str(exc).replace(" (hub -)", "")) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise BridgeError(f"cannot reach the Athom cloud: {exc or type(exc).__name__}") from None
