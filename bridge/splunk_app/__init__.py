"""``hubbridge splunk-app``: the Splunk app (``hubbridge/`` beside this file) packaged as ``hubbridge-<version>.tgz``.

The app ships inside the Python package, so a pipx install can write it without a checkout. The archive has the
layout Splunk and AppInspect expect: one top directory named after the app id, directories 0755 and files 0644
owned by root, no hidden files, and ``app.conf`` carrying the version of the bridge that wrote it.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from importlib.resources import as_file, files
from pathlib import Path

from bridge import __version__
from bridge.errors import EnvironmentProblem

APP_ID = "hubbridge"

# `version = x.y.z` in app.conf's [id] and [launcher] stanzas: both must say the bridge's version.
_VERSION_LINE = re.compile(r"^(version\s*=\s*).*$", re.MULTILINE)


def app_dir() -> Path:
    """The app's directory in the installed package (a real directory: package data is installed unzipped)."""
    with as_file(files("bridge.splunk_app") / APP_ID) as path:
        return Path(path)


def _app_files(root: Path) -> list[Path]:
    """Every file of the app, sorted, without editor leftovers and hidden files (AppInspect refuses those)."""
    out: list[Path] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if path.is_file() and not path.name.endswith(("~", ".pyc", ".swp")):
            out.append(path)
    return out


def stamped_app_conf(text: str, version: str = __version__) -> str:
    """``app.conf`` with every ``version =`` line set to ``version``."""
    return _VERSION_LINE.sub(lambda m: f"{m.group(1)}{version}", text)


def build_package(out_dir: Path, version: str = __version__) -> Path:
    """Write ``hubbridge-<version>.tgz`` into ``out_dir`` (created if missing) and return its path."""
    root = app_dir()
    target = out_dir / f"{APP_ID}-{version}.tgz"
    buf = io.BytesIO()
    # mtime fixed by the version's files, not the clock: the same app gives the same archive bytes.
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        dirs: set[str] = set()
        for path in _app_files(root):
            rel = path.relative_to(root)
            for i in range(len(rel.parts)):
                d = "/".join((APP_ID, *rel.parts[:i]))
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            data = path.read_bytes()
            if rel.as_posix() == "default/app.conf":
                data = stamped_app_conf(data.decode("utf-8"), version).encode("utf-8")
            info = tarfile.TarInfo(f"{APP_ID}/{rel.as_posix()}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(target)
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot write the Splunk app to {out_dir}: {exc.strerror or exc}; pick a writable directory with --out"
        ) from None
    return target


def run_splunk_app(out: str) -> int:
    """The ``hubbridge splunk-app --out DIR`` command."""
    path = build_package(Path(out))
    print(f"{path}: Splunk app {APP_ID} {__version__}; install it with Apps > Manage Apps > Install app from file")
    return 0
