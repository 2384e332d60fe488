"""A throwaway PostgreSQL 15 + PostGIS cluster on a free 127.0.0.1 port, for tests and benchmarks.

initdb refuses to run as root, so as root the cluster is made and run by the ``postgres`` user in a
temporary folder it owns. Authentication is ``trust`` on loopback only; the folder is removed at stop.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_BIN = Path(os.environ.get("MLM_EXPORT_PG_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> str | None:
    """Why a cluster cannot start here (None when it can)."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL binaries not found in {PG_BIN} (set MLM_EXPORT_PG_BIN)"
    share = Path("/usr/share/postgresql/15/extension")
    if share.exists() and not any(share.glob("postgis.control")):
        return "PostGIS is not installed (apt-get install postgresql-15-postgis-3)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """initdb + pg_ctl start on a free port; ``dsn`` connects as the superuser ``postgres``."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mlm-export-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = [str(a) for a in args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> Cluster:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o700)
        self._run(PG_BIN / "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run(PG_BIN / "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(PG_BIN / "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
