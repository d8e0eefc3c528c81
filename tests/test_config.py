"""Tests for config loading (bridge.config.load_config) and ``hubbridge check``, over real YAML files.

Every error test asserts what an operator reading the one-line message needs: the file, the line, the key path
(``hubs[0].poll_interval``) and what was expected.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import BridgeConfig, Secret, load_config
from bridge.errors import ConfigError
from bridge.sinks.file import FileSinkConfig
from bridge.sources.hubitat import HubitatConfig as HubitatHubConfig

TOKEN = "tok-5f0c2e7a-9b1d-4c3e-8a2f-SECRET"
ENV = {"HUBITAT_TOKEN": TOKEN}

EXAMPLE = """\
state_dir: ./state
hubs:
  - name: home
    type: hubitat
    url: http://127.0.0.1:8081
    app_id: 12
    access_token: ${HUBITAT_TOKEN}
    eventsocket: true
    poll_interval: 30s
sinks:
  - name: archive
    type: file
    path: ./events.jsonl
"""


def write(tmp_path: Path, text: str, name: str = "hubbridge.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the ``occurrence``-th line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def load_error(path: Path, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=ENV if env is None else env)
    return info.value


def assert_points_at(err: ConfigError, path: Path, line: int, key: str, *expected: str) -> str:
    msg = str(err)
    assert err.file == str(path)
    assert str(path) in msg
    assert f"line {line}: {key}: " in msg, msg
    for text in expected:
        assert text in msg, msg
    return msg


def hub(cfg: BridgeConfig) -> HubitatHubConfig:
    return cfg.hubs[0]


def file_sink(cfg: BridgeConfig) -> FileSinkConfig:
    sink = cfg.sinks[0]
    assert isinstance(sink, FileSinkConfig)
    return sink


# ------------------------------------------------------------------------------------------------ valid files


def test_example_config_loads(tmp_path: Path) -> None:
    """The README's smallest config loads with the values and defaults it promises."""
    path = write(tmp_path, EXAMPLE)
    cfg = load_config(path, env=ENV)

    assert cfg.source_file == path.resolve()
    assert cfg.state_dir == (tmp_path / "state").resolve()
    h = hub(cfg)
    assert (h.name, h.type, h.url, h.app_id, h.eventsocket) == ("home", "hubitat", "http://127.0.0.1:8081", 12, True)
    assert h.poll_interval == 30.0
    assert isinstance(h.access_token, Secret)
    assert h.access_token.get() == TOKEN
    s = file_sink(cfg)
    assert (s.name, s.type, s.path) == ("archive", "file", (tmp_path / "events.jsonl").resolve())
    # Defaults the example relies on.
    assert cfg.listen == "127.0.0.1:8470"
    assert cfg.journal.synchronous == "full"


def test_env_argument_wins_over_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit environment wins over the process's; without one, the process environment is used."""
    monkeypatch.setenv("HUBITAT_TOKEN", "from-os-environ")
    path = write(tmp_path, EXAMPLE)
    assert hub(load_config(path, env=ENV)).access_token.get() == TOKEN
    # Without `env`, the process environment is used.
    assert hub(load_config(path)).access_token.get() == "from-os-environ"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("1h", 3600.0), ("45", 45.0), ("2.5", 2.5)],
)
def test_durations(tmp_path: Path, text: str, seconds: float) -> None:
    """Durations read as a user writes them: 30s, 5m, 1h30m, 250ms, or bare seconds."""
    path = write(tmp_path, EXAMPLE.replace("poll_interval: 30s", f"poll_interval: 30s\n    detail_spacing: {text}"))
    assert hub(load_config(path, env=ENV)).detail_spacing == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1MiB", 1024**2), ("500KB", 500_000), ("2G", 2 * 1024**3), ("4096", 4096), ("0", 0), ("10MB", 10_000_000)],
)
def test_sizes(tmp_path: Path, text: str, size: int) -> None:
    """Sizes read as a user writes them: 1MiB, 500KB, 2G, or bare bytes."""
    path = write(tmp_path, EXAMPLE + f"    rotate_bytes: {text}\n")
    assert file_sink(load_config(path, env=ENV)).rotate_bytes == size


def test_env_substitution_with_and_without_defaults(tmp_path: Path) -> None:
    """${VAR} and ${VAR:-default} are replaced anywhere in the file."""
    text = EXAMPLE.replace("url: http://127.0.0.1:8081", "url: http://${HUB_HOST:-127.0.0.1}:${HUB_PORT:-8081}")
    text = text.replace("name: home", "name: ${HUB_NAME}").replace("app_id: 12", "app_id: ${APP_ID:-12}")
    path = write(tmp_path, text)

    cfg = load_config(path, env={**ENV, "HUB_NAME": "cellar"})
    assert hub(cfg).name == "cellar"
    assert hub(cfg).url == "http://127.0.0.1:8081"
    assert hub(cfg).app_id == 12

    cfg = load_config(path, env={**ENV, "HUB_NAME": "attic", "HUB_HOST": "10.0.0.5", "HUB_PORT": "80", "APP_ID": "7"})
    assert (hub(cfg).name, hub(cfg).url, hub(cfg).app_id) == ("attic", "http://10.0.0.5:80", 7)


def test_empty_default_is_allowed(tmp_path: Path) -> None:
    """${VAR:-} with nothing after the dash substitutes an empty string."""
    path = write(tmp_path, EXAMPLE.replace("path: ./events.jsonl", "path: ./events${SUFFIX:-}.jsonl"))
    assert file_sink(load_config(path, env=ENV)).path == (tmp_path / "events.jsonl").resolve()


def test_env_substituted_bare_number_is_a_duration(tmp_path: Path) -> None:
    """A bare number from ${VAR:-45} reads as seconds, like a duration written in the file."""
    path = write(tmp_path, EXAMPLE.replace("poll_interval: 30s", "poll_interval: ${POLL_INTERVAL:-45}"))
    assert hub(load_config(path, env=ENV)).poll_interval == 45.0


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths are relative to the config file, not to the directory systemd starts us in."""
    etc = tmp_path / "etc" / "hubbridge"
    path = write(etc, EXAMPLE.replace("path: ./events.jsonl", "path: logs/events.jsonl"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # systemd starts us from /, not from the config's directory

    cfg = load_config(Path(os.path.relpath(path, elsewhere)), env=ENV)
    assert cfg.state_dir == (etc / "state").resolve()
    assert file_sink(cfg).path == (etc / "logs" / "events.jsonl").resolve()


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    """Absolute paths are used as written."""
    state = tmp_path / "var" / "lib" / "hubbridge"
    path = write(tmp_path / "etc", EXAMPLE.replace("state_dir: ./state", f"state_dir: {state}"))
    assert load_config(path, env=ENV).state_dir == state.resolve()


def test_access_token_file_relative_to_config_dir_and_reread_after_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """access_token_file is found beside the config and re-read after it is rotated, without a restart."""
    etc = tmp_path / "etc"
    secret = etc / "secrets" / "hubitat.token"
    secret.parent.mkdir(parents=True)
    secret.write_text("first-token\n", encoding="utf-8")
    path = write(etc, EXAMPLE.replace("access_token: ${HUBITAT_TOKEN}", "access_token_file: secrets/hubitat.token"))
    monkeypatch.chdir(tmp_path)

    token = hub(load_config(path, env={})).access_token
    assert token.path == secret.resolve()
    assert token.get() == "first-token"  # trailing newline stripped

    secret.write_text("second-token-rotated\n", encoding="utf-8")
    assert token.get() == "second-token-rotated"

    # A rotation to a token of the same length, as rotations are (later in time: bump the mtime as a real one would).
    before = secret.stat().st_mtime_ns
    secret.write_text("second-token-ROTATED\n", encoding="utf-8")
    os.utime(secret, ns=(before + 2_000_000_000, before + 2_000_000_000))
    assert token.get() == "second-token-ROTATED"

    # The file's content never shows in the config's repr.
    cfg = load_config(path, env={})
    assert "second-token" not in repr(cfg)
    assert "hubitat.token" in repr(hub(cfg).access_token)


def test_access_token_file_path_can_come_from_env(tmp_path: Path) -> None:
    """A secret file's path can come from ${CREDENTIALS_DIRECTORY}, as systemd credentials give it."""
    secret = tmp_path / "cred" / "token"
    secret.parent.mkdir()
    secret.write_text("from-credentials-dir", encoding="utf-8")
    path = write(
        tmp_path, EXAMPLE.replace("access_token: ${HUBITAT_TOKEN}", "access_token_file: ${CREDENTIALS_DIRECTORY}/token")
    )
    token = hub(load_config(path, env={"CREDENTIALS_DIRECTORY": str(secret.parent)})).access_token
    assert token.get() == "from-credentials-dir"


def test_both_access_token_and_access_token_file_is_an_error(tmp_path: Path) -> None:
    """Giving a secret both inline and as a file is an error at the key's line, without the secret."""
    (tmp_path / "token").write_text("x", encoding="utf-8")
    text = EXAMPLE.replace("    eventsocket: true\n", "    access_token_file: token\n    eventsocket: true\n")
    path = write(tmp_path, text)
    err = load_error(path)
    assert_points_at(err, path, line_of(text, "access_token:"), "hubs[0].access_token", "access_token_file", "not both")
    assert TOKEN not in str(err)


# ------------------------------------------------------------------------------------------------ errors


def test_unknown_key(tmp_path: Path) -> None:
    """A misspelt key is an error naming its line and path, not a silently ignored setting."""
    text = EXAMPLE.replace("poll_interval: 30s", "pol_interval: 30s")
    path = write(tmp_path, text)
    assert_points_at(load_error(path), path, line_of(text, "pol_interval"), "hubs[0].pol_interval", "unknown key")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    """An unknown key at the top level is an error too."""
    text = EXAMPLE + "sink_options: {}\n"
    path = write(tmp_path, text)
    assert_points_at(load_error(path), path, line_of(text, "sink_options"), "sink_options", "unknown key")


def test_missing_required_key(tmp_path: Path) -> None:
    """A missing required key is reported at the entry that lacks it."""
    text = EXAMPLE.replace("    app_id: 12\n", "")
    path = write(tmp_path, text)
    # The key is absent, so the line is the hub's entry that lacks it.
    assert_points_at(load_error(path), path, line_of(text, "- name: home"), "hubs[0].app_id", "required key is missing")


def test_missing_sinks(tmp_path: Path) -> None:
    """A config without sinks says sinks is required."""
    text = EXAMPLE.split("sinks:")[0]
    path = write(tmp_path, text)
    assert_points_at(load_error(path), path, 1, "sinks", "required key is missing")


def test_wrong_type(tmp_path: Path) -> None:
    """A value of the wrong type names the key, the expected type and the value given."""
    text = EXAMPLE.replace("app_id: 12", "app_id: twelve")
    path = write(tmp_path, text)
    assert_points_at(load_error(path), path, line_of(text, "app_id"), "hubs[0].app_id", "valid integer", "'twelve'")


def test_wrong_type_boolean(tmp_path: Path) -> None:
    """A boolean given as a word that is not one is refused with the value shown."""
    text = EXAMPLE.replace("eventsocket: true", "eventsocket: sometimes")
    path = write(tmp_path, text)
    assert_points_at(
        load_error(path), path, line_of(text, "eventsocket"), "hubs[0].eventsocket", "valid boolean", "'sometimes'"
    )


@pytest.mark.parametrize("bad", ["soon", "30x", "-5s", "5m30", "''"])
def test_bad_duration(tmp_path: Path, bad: str) -> None:
    """A duration that cannot be read says what a duration looks like."""
    text = EXAMPLE.replace("poll_interval: 30s", f"poll_interval: {bad}")
    path = write(tmp_path, text)
    assert_points_at(
        load_error(path),
        path,
        line_of(text, "poll_interval"),
        "hubs[0].poll_interval",
        "expected a duration like 30s, 5m or 1h",
    )


@pytest.mark.parametrize("bad", ["10XB", "lots", "-1", "1.5 parsecs"])
def test_bad_size(tmp_path: Path, bad: str) -> None:
    """A size that cannot be read says what a size looks like."""
    text = EXAMPLE + f"    rotate_bytes: {bad}\n"
    path = write(tmp_path, text)
    assert_points_at(
        load_error(path), path, line_of(text, "rotate_bytes"), "sinks[0].rotate_bytes", "expected a size like"
    )


@pytest.mark.parametrize("bad", ["ftp://hub.local", "127.0.0.1:8081", "http://", "hub.local"])
def test_bad_url(tmp_path: Path, bad: str) -> None:
    """A URL that is not http(s) says so, showing the value."""
    text = EXAMPLE.replace("url: http://127.0.0.1:8081", f"url: {bad}")
    path = write(tmp_path, text)
    assert_points_at(
        load_error(path), path, line_of(text, "url:"), "hubs[0].url", "expected an http:// or https:// URL", repr(bad)
    )


def test_unsupported_hub_type(tmp_path: Path) -> None:
    """An unknown hub type names the types there are."""
    text = EXAMPLE.replace("type: hubitat", "type: smartthings")
    path = write(tmp_path, text)
    # With more than one hub type the union's error sits on the hub entry (the line right above `type:`).
    assert_points_at(
        load_error(path),
        path,
        line_of(text, "type: smartthings") - 1,
        "hubs[0]",
        "unsupported type 'smartthings'",
        "'hubitat'",
        "'homey'",
        "'nats'",
    )


def test_unsupported_sink_type(tmp_path: Path) -> None:
    """An unknown sink type names the types there are, at the sink's entry."""
    text = EXAMPLE.replace("type: file", "type: kafka")
    path = write(tmp_path, text)
    # The union's error sits on the sink entry (line of `- name: archive`, right above `type:`).
    assert_points_at(
        load_error(path),
        path,
        line_of(text, "- name: archive"),
        "sinks[0]",
        "unsupported type 'kafka'",
        "'file'",
        "'splunk_hec'",
    )


def test_sink_without_type(tmp_path: Path) -> None:
    """A sink without a type says the type key is missing."""
    text = EXAMPLE.replace("    type: file\n", "")
    path = write(tmp_path, text)
    assert_points_at(load_error(path), path, line_of(text, "- name: archive"), "sinks[0]", "'type' is missing")


def test_missing_env_var(tmp_path: Path) -> None:
    """An unset ${VAR} names the variable and the key that uses it."""
    path = write(tmp_path, EXAMPLE)
    assert_points_at(
        load_error(path, env={}),
        path,
        line_of(EXAMPLE, "access_token"),
        "hubs[0].access_token",
        "environment variable HUBITAT_TOKEN is not set",
    )


def test_unreadable_secret_file(tmp_path: Path) -> None:
    """A secret file that cannot be read names the file and why."""
    text = EXAMPLE.replace("access_token: ${HUBITAT_TOKEN}", "access_token_file: missing.token")
    path = write(tmp_path, text)
    assert_points_at(
        load_error(path),
        path,
        line_of(text, "access_token_file"),
        "hubs[0].access_token_file",
        "cannot read secret file",
        str(tmp_path / "missing.token"),
        "No such file or directory",
    )


def test_secret_file_that_is_a_directory(tmp_path: Path) -> None:
    """A secret "file" that is a directory is refused at its key."""
    (tmp_path / "secrets").mkdir()
    text = EXAMPLE.replace("access_token: ${HUBITAT_TOKEN}", "access_token_file: secrets")
    path = write(tmp_path, text)
    assert_points_at(
        load_error(path), path, line_of(text, "access_token_file"), "hubs[0].access_token_file", "cannot read secret"
    )


def test_empty_secret_file(tmp_path: Path) -> None:
    """An empty secret file is refused, naming the file."""
    (tmp_path / "token").write_text(" \n\n", encoding="utf-8")
    text = EXAMPLE.replace("access_token: ${HUBITAT_TOKEN}", "access_token_file: token")
    path = write(tmp_path, text)
    assert_points_at(
        load_error(path),
        path,
        line_of(text, "access_token_file"),
        "hubs[0].access_token_file",
        f"secret file {tmp_path / 'token'} is empty",
    )


DUPLICATE_SINKS = EXAMPLE + "  - name: archive\n    type: file\n    path: ./other.jsonl\n"


def test_duplicate_names_are_rejected(tmp_path: Path) -> None:
    """Two sinks with one name are refused: names identify cursors and log lines."""
    path = write(tmp_path, DUPLICATE_SINKS)
    msg = str(load_error(path))
    assert str(path) in msg
    assert "sinks" in msg
    assert "'archive'" in msg
    assert "names must be unique" in msg


def test_duplicate_name_error_points_at_the_duplicate(tmp_path: Path) -> None:
    """The duplicate-name error points at the second use of the name."""
    path = write(tmp_path, DUPLICATE_SINKS)
    assert_points_at(
        load_error(path), path, line_of(DUPLICATE_SINKS, "- name: archive", 2), "sinks[1].name", "'archive'"
    )


def test_invalid_yaml_syntax_names_line_and_column(tmp_path: Path) -> None:
    """A YAML syntax error names the line and column."""
    text = EXAMPLE.replace("    type: file\n", "    type: file: yes\n")
    path = write(tmp_path, text)
    msg = str(load_error(path))
    assert str(path) in msg
    # The second ':' on `    type: file: yes` (column 15).
    assert f"line {line_of(text, 'type: file: yes')}, column 15: not valid YAML" in msg, msg


def test_unclosed_quote(tmp_path: Path) -> None:
    """An unclosed quote is a YAML error with its position."""
    path = write(tmp_path, EXAMPLE.replace("path: ./events.jsonl", 'path: "./events.jsonl'))
    msg = str(load_error(path))
    assert str(path) in msg
    assert "not valid YAML" in msg
    assert "line " in msg and "column " in msg


@pytest.mark.parametrize("text", ["- state_dir: ./state\n", "just a string\n", ""])
def test_top_level_not_a_mapping(tmp_path: Path, text: str) -> None:
    """A file whose top level is not a mapping says what was expected."""
    path = write(tmp_path, text)
    msg = str(load_error(path))
    assert msg.startswith(f"{path}: ")
    assert "expected a mapping" in msg and "top level" in msg


def test_nonexistent_config_file(tmp_path: Path) -> None:
    """A config file that does not exist is one clear line."""
    path = tmp_path / "nope.yaml"
    msg = str(load_error(path))
    assert msg.startswith(f"{path}: ")
    assert "cannot read the config file" in msg
    assert "No such file or directory" in msg


def test_every_problem_is_listed(tmp_path: Path) -> None:
    """Every problem of a file is listed at once, each at its own line."""
    text = EXAMPLE.replace("app_id: 12", "app_id: x").replace("poll_interval: 30s", "poll_interval: soon")
    path = write(tmp_path, text)
    err = load_error(path)
    assert len(err.problems) == 2
    msg = str(err)
    assert f"line {line_of(text, 'app_id')}: hubs[0].app_id: " in msg
    assert f"line {line_of(text, 'poll_interval')}: hubs[0].poll_interval: " in msg


# ------------------------------------------------------------------------------------------------ secrets


def test_token_not_in_repr_or_str(tmp_path: Path) -> None:
    """Tokens never show in the repr or str of the config, its hubs or its sinks."""
    text = EXAMPLE + (
        "  - name: splunk\n    type: splunk_hec\n    url: https://splunk.example:8088\n    token: ${HEC_TOKEN}\n"
    )
    hec_token = "hec-0d2f3a44-SECRET-1b2c"
    cfg = load_config(write(tmp_path, text), env={**ENV, "HEC_TOKEN": hec_token})
    for shown in (repr(cfg), str(cfg), repr(cfg.hubs), str(cfg.hubs[0]), repr(cfg.sinks[1]), str(cfg.sinks[1])):
        assert TOKEN not in shown
        assert hec_token not in shown
    assert "********" in repr(cfg.hubs[0])
    assert cfg.sinks[1].token is not None and cfg.sinks[1].token.get() == hec_token  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # Other errors next to a valid token.
        ("poll_interval: 30s", "poll_interval: soon\n    pol_interval: 5m\n    app_idd: 3"),
        # The token under a misspelled key.
        ("access_token: ${HUBITAT_TOKEN}", f"acess_token: {TOKEN}"),
        # The token inline, and the hub entry invalid as a whole.
        ("access_token: ${HUBITAT_TOKEN}", f"access_token: {TOKEN}\n    advertise_url: http://me:8470"),
        # The token inline in the wrong shape.
        ("access_token: ${HUBITAT_TOKEN}", f"access_token: [{TOKEN}]"),
        ("access_token: ${HUBITAT_TOKEN}", f"access_token: {{value: {TOKEN}}}"),
    ],
)
def test_token_not_in_config_errors(tmp_path: Path, old: str, new: str) -> None:
    """A token never appears in a config error, even when the error is about the key holding it."""
    path = write(tmp_path, EXAMPLE.replace(old, new))
    err = load_error(path)
    assert TOKEN not in str(err)
    assert all(TOKEN not in p for p in err.problems)


# ------------------------------------------------------------------------------------------------ hubbridge check


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "HUBITAT_TOKEN"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=60,  # a guard against a hang, not a speed assertion
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_good_file(tmp_path: Path) -> None:
    # Nothing listens on the hub's port: `check` must not care (it never touches the network).
    """`hubbridge check` prints OK with the hubs and sinks, and creates nothing."""
    path = write(tmp_path, EXAMPLE.replace("8081", str(free_port())))
    result = run_cli("check", "-c", str(path), env=ENV, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "home" in result.stdout and "archive" in result.stdout
    assert TOKEN not in result.stdout + result.stderr
    # Validation only: no state directory or events file is created.
    assert not (tmp_path / "state").exists()
    assert not (tmp_path / "events.jsonl").exists()


def test_check_opens_no_connection_to_the_hub(tmp_path: Path) -> None:
    """`hubbridge check` validates without opening any connection."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.setblocking(False)
        port = server.getsockname()[1]
        path = write(tmp_path, EXAMPLE.replace("8081", str(port)))
        result = run_cli("check", "-c", str(path), env=ENV, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        # The kernel would have queued any connection attempt in the backlog, even unaccepted.
        with pytest.raises(BlockingIOError):
            server.accept()


def test_check_bad_file_exits_2_with_the_error(tmp_path: Path) -> None:
    """`hubbridge check` on a bad file exits 2 with the error on stderr, without the token."""
    text = EXAMPLE.replace("poll_interval: 30s", "poll_interval: soon")
    path = write(tmp_path, text)
    result = run_cli("check", "-c", str(path), env=ENV, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert str(path) in result.stderr
    assert f"line {line_of(text, 'poll_interval')}: hubs[0].poll_interval: " in result.stderr
    assert "expected a duration" in result.stderr
    assert TOKEN not in result.stderr


def test_check_missing_env_var_exits_2(tmp_path: Path) -> None:
    """`hubbridge check` with an unset variable exits 2 and names it."""
    path = write(tmp_path, EXAMPLE)
    result = run_cli("check", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "hubs[0].access_token" in result.stderr and "HUBITAT_TOKEN" in result.stderr


def test_check_nonexistent_file_exits_2(tmp_path: Path) -> None:
    """`hubbridge check` on a missing file exits 2 naming it."""
    path = tmp_path / "absent.yaml"
    result = run_cli("check", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert str(path) in result.stderr


# ------------------------------------------------------------------------------------------------ floors and hints


@pytest.mark.parametrize(
    ("key", "value", "floor"),
    [
        ("poll_interval", "0s", "10s"),
        ("poll_interval", "100ms", "10s"),
        ("reconcile_interval", "10s", "60s"),
        ("eventsocket_timeout", "0s", "3s"),
        ("request_timeout", "0s", "1s"),
        ("backoff_max", "0s", "1s"),
    ],
)
def test_settings_that_would_hammer_the_hub_are_refused_with_the_reason(
    tmp_path: Path, key: str, value: str, floor: str
) -> None:
    """A setting below a floor that protects the hub fails `check`, naming the key, the floor and why."""
    if key == "poll_interval":
        text = EXAMPLE.replace("poll_interval: 30s", f"poll_interval: {value}")
    else:
        text = EXAMPLE.replace("    poll_interval: 30s\n", f"    poll_interval: 30s\n    {key}: {value}\n")
    path = write(tmp_path, text)
    msg = assert_points_at(load_error(path), path, line_of(text, f"{key}:"), f"hubs[0].{key}", f"at least {floor}")
    assert "(" in msg.split(f"at least {floor}")[1], "the reason is given"


def test_the_journal_bound_has_a_floor(tmp_path: Path) -> None:
    """journal.max_bytes below 4 MiB is refused: it could not hold the WAL and a useful backlog."""
    text = EXAMPLE + "journal:\n  max_bytes: 1MiB\n"
    path = write(tmp_path, text)
    assert_points_at(load_error(path), path, line_of(text, "max_bytes"), "journal.max_bytes", "4194304")


def test_a_pasted_maker_api_url_says_what_goes_where_without_the_token(tmp_path: Path) -> None:
    """A Maker API URL pasted as the hub's url names app_id and access_token, and never repeats the token."""
    pasted = f"http://192.168.1.10/apps/api/12/devices?access_token={TOKEN}"
    text = EXAMPLE.replace("url: http://127.0.0.1:8081", f"url: {pasted}")
    path = write(tmp_path, text)
    msg = assert_points_at(load_error(path), path, line_of(text, "url:"), "hubs[0].url", "http://192.168.1.10")
    assert "app_id (12 here)" in msg and "access_token" in msg
    assert TOKEN not in msg and TOKEN[:8] not in msg


def test_a_missing_ca_file_fails_check(tmp_path: Path) -> None:
    """A tls.ca_file that does not exist, or is not a certificate, fails `check` now, not at the first handshake."""
    text = EXAMPLE.replace(
        "    poll_interval: 30s\n", "    poll_interval: 30s\n    tls:\n      ca_file: ./hub-ca.pem\n"
    )
    path = write(tmp_path, text)
    assert_points_at(
        load_error(path), path, line_of(text, "ca_file"), "hubs[0].tls.ca_file", "hub-ca.pem", "No such file"
    )
    (tmp_path / "hub-ca.pem").write_text("not a certificate\n", encoding="utf-8")
    assert_points_at(load_error(path), path, line_of(text, "ca_file"), "hubs[0].tls.ca_file", "not a PEM certificate")
    system = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    if not system.is_file():
        pytest.skip("this machine has no system CA bundle to stand in for a private CA")
    shutil.copy(system, tmp_path / "hub-ca.pem")
    assert load_config(path, env=ENV).hubs[0].tls.ca_file == (tmp_path / "hub-ca.pem").resolve()  # type: ignore[attr-defined]


def test_an_unreadable_or_non_utf8_secret_file_is_a_config_error(tmp_path: Path) -> None:
    """A token file that is not UTF-8 text is one clear config error, not a traceback."""
    (tmp_path / "token").write_bytes(b"\xff\xfe\x00token")
    text = EXAMPLE.replace("access_token: ${HUBITAT_TOKEN}", "access_token_file: token")
    path = write(tmp_path, text)
    assert_points_at(load_error(path), path, line_of(text, "access_token_file"), "hubs[0].access_token_file", "UTF-8")


def test_a_config_that_is_not_utf8_is_one_clear_line(tmp_path: Path) -> None:
    """A config saved in another encoding names the line and says to save it as UTF-8 (no traceback)."""
    path = tmp_path / "hubbridge.yaml"
    path.write_bytes(EXAMPLE.replace("name: home", "name: h\xf6me").encode("latin-1"))
    err = load_error(path)
    assert str(err) == f"{path}: line 3: the file is not UTF-8 text (byte 0xf6); save it as UTF-8"


def test_the_shipped_example_config_loads(tmp_path: Path) -> None:
    """config.example.yaml, every key of it, passes `check` once its credential files exist."""
    text = (Path(__file__).resolve().parent.parent / "config.example.yaml").read_text(encoding="utf-8")
    for name in ("hubitat-token", "splunk-token"):
        (tmp_path / name).write_text("secret-from-a-file\n", encoding="utf-8")
    path = write(tmp_path, text)
    # The secrets are systemd credentials: ${CREDENTIALS_DIRECTORY}/<name>, as `check --credentials DIR` sets it.
    cfg = load_config(path, env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert [h.name for h in cfg.hubs] == ["house"] and [s.name for s in cfg.sinks] == ["splunk", "archive"]
