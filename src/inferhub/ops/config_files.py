"""The server's configuration files in a backup: ``inferhub.yaml`` and the env file, beside the database dump.

``inferhub backup`` writes ``inferhub-backup-<UTC>.config.tar`` next to ``inferhub-backup-<UTC>.dump``:
the configuration file (``INFERHUB_CONFIG_FILE``, default ``./inferhub.yaml``) and the env file
(``--env-file``, default ``./.env``, the file the settings read; for systemd ``/etc/inferhub/inferhub.env``),
those of them that exist. Both may hold secrets (upstream ``api_key``s in the YAML; the env file often holds
``INFERHUB_SECRET_KEY``, the master key, and database and Redis passwords), so the archive is created
``0600`` and restored files are written ``0600``.

``inferhub restore`` puts them back where the restoring install reads them; a file there with other content is
kept as ``<name>.before-restore``.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inferhub.ops import OpsError

Echo = Callable[[str], None]
CONFIG_MEMBER, ENV_MEMBER = "inferhub.yaml", "inferhub.env"
MASTER_KEY_VARIABLE = "INFERHUB_SECRET_KEY"


@dataclass(frozen=True, slots=True)
class ConfigFiles:
    """Where this install reads its configuration: the YAML file and the env file."""

    config_file: Path
    env_file: Path | None  # None: leave the env file out

    def by_member(self) -> dict[str, Path]:
        files = {CONFIG_MEMBER: self.config_file, ENV_MEMBER: self.env_file}
        return {member: path for member, path in files.items() if path is not None}


def companion_path(dump: Path) -> Path:
    """``x.dump`` → ``x.config.tar`` (any other name gets ``.config.tar`` appended)."""
    return dump.with_name(dump.name.removesuffix(".dump") + ".config.tar")


def save_config_files(files: ConfigFiles, dump: Path, echo: Echo) -> Path | None:
    """Write the companion archive of ``dump`` (0600); None when neither file exists."""
    present = {member: path for member, path in files.by_member().items() if path.is_file()}
    if not present:
        looked = ", ".join(str(path) for path in files.by_member().values())
        echo(f"configuration files: none found ({looked}); only the database is saved")
        return None
    target = companion_path(dump)
    if target.exists():
        raise OpsError(f"{target} already exists: choose another --output or move the old file away")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as archive:
            for member, path in present.items():
                data = path.read_bytes()
                info = tarfile.TarInfo(member)
                info.size, info.mode, info.mtime = len(data), 0o600, int(path.stat().st_mtime)
                archive.addfile(info, io.BytesIO(data))
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise OpsError(f"cannot write {target}: {exc.strerror}") from None
    echo(f"configuration files written: {target} ({', '.join(str(p) for p in present.values())})")
    env = present.get(ENV_MEMBER)
    if env is not None and _defines(env.read_text(errors="replace"), MASTER_KEY_VARIABLE):
        echo(f"warning: {env} sets {MASTER_KEY_VARIABLE}, so {target.name} holds the master key: keep it as safe "
             "as the key itself, apart from the dumps, or back up with --no-env-file")  # fmt: skip
    return target


def restore_config_files(files: ConfigFiles, dump: Path, echo: Echo) -> list[Path]:
    """Put the companion archive's files where this install reads them; return the paths written."""
    source = companion_path(dump)
    if not source.is_file():
        echo(f"configuration files: no {source.name} beside the backup; inferhub.yaml and the env file are unchanged")
        return []
    try:
        with tarfile.open(source, mode="r") as archive:
            contents = {}
            for member in archive.getmembers():
                extracted = archive.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    contents[member.name] = extracted.read()
    except (OSError, tarfile.TarError) as exc:
        raise OpsError(f"{source} is not a configuration archive made by `inferhub backup`: {exc}") from None
    written = []
    for member, path in files.by_member().items():
        if member not in contents:
            continue
        data = contents[member]
        if path.is_file() and path.read_bytes() == data:
            echo(f"configuration file unchanged: {path}")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            kept = path.with_name(path.name + ".before-restore")
            path.replace(kept)
            echo(f"kept the previous {path.name} as {kept}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(path, 0o600)
        written.append(path)
        echo(f"configuration file restored: {path}")
    return written


def _defines(env_text: str, name: str) -> bool:
    for line in env_text.splitlines():
        key = line.strip().removeprefix("export ").split("=", 1)[0].strip()
        if key == name and "=" in line and line.split("=", 1)[1].strip():
            return True
    return False
