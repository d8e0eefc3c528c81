"""``hubbridge splunk-app``: the archive a user installs in Splunk, and what Splunk's AppInspect says of it.

The archive is built the way a user builds it (the real command, from the installed package data) and inspected
with the real ``splunk-appinspect`` from PyPI; a failure or an error there means Splunk Cloud would refuse the app.
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from bridge import __version__
from bridge.cli import main
from bridge.splunk_app import app_dir

APPINSPECT = shutil.which("splunk-appinspect") or str(Path(sys.executable).with_name("splunk-appinspect"))


def _conf(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(text)
    return parser


def test_command_writes_an_archive_with_the_layout_splunk_expects(tmp_path: Path) -> None:
    """`hubbridge splunk-app --out DIR` writes hubbridge-<version>.tgz: one hubbridge/ top directory, root-owned
    0755 directories and 0644 files, no hidden files, and app.conf saying the bridge's version."""
    assert main(["splunk-app", "--out", str(tmp_path / "new")]) == 0
    archive = tmp_path / "new" / f"hubbridge-{__version__}.tgz"
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        app_conf = tar.extractfile("hubbridge/default/app.conf")
        assert app_conf is not None
        conf = _conf(app_conf.read().decode("utf-8"))
    names = {m.name for m in members}
    assert {"hubbridge/default/app.conf", "hubbridge/metadata/default.meta", "hubbridge/default/props.conf"} <= names
    assert all(m.name == "hubbridge" or m.name.startswith("hubbridge/") for m in members)
    assert not [m.name for m in members if any(p.startswith(".") for p in m.name.split("/"))]
    for m in members:
        assert (m.uid, m.gid) == (0, 0)
        assert m.mode == (0o755 if m.isdir() else 0o644), m.name
    assert conf["id"]["version"] == conf["launcher"]["version"] == __version__
    assert conf["package"]["id"] == conf["id"]["name"] == "hubbridge"


def test_the_app_in_the_repository_says_the_bridges_version() -> None:
    """app.conf as checked in (what a user unpacking splunk/hubbridge by hand gets) carries the current version."""
    assert (Path(__file__).resolve().parents[2] / "splunk" / "hubbridge").resolve() == app_dir().resolve()
    conf = _conf((app_dir() / "default" / "app.conf").read_text(encoding="utf-8"))
    assert conf["id"]["version"] == conf["launcher"]["version"] == __version__


def test_an_unwritable_out_directory_is_one_clear_line(tmp_path: Path, capsys: object) -> None:
    """--out pointing at a file is exit 1 with a line naming the directory and the fix, not a traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["splunk-app", "--out", str(blocker)]) == 1
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert f"cannot write the Splunk app to {blocker}" in err and "--out" in err
    assert "Traceback" not in err


def test_appinspect_finds_no_failure_and_no_error(tmp_path: Path) -> None:
    """Splunk AppInspect (all checks, Splunk Cloud's included) reports 0 failures and 0 errors for the archive."""
    assert main(["splunk-app", "--out", str(tmp_path)]) == 0
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            APPINSPECT,
            "inspect",
            str(tmp_path / f"hubbridge-{__version__}.tgz"),
            "--data-format",
            "json",
            "--output-file",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads(report.read_text(encoding="utf-8"))["summary"]
    bad = []
    for rep in json.loads(report.read_text(encoding="utf-8"))["reports"]:
        for group in rep["groups"]:
            bad += [
                (c["name"], c["result"], c["messages"]) for c in group["checks"] if c["result"] in ("failure", "error")
            ]
    assert summary["failure"] == 0 and summary["error"] == 0, bad
    assert summary["success"] > 50  # the checks did run
