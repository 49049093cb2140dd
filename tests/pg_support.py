"""A throw-away PostgreSQL cluster for the shared-study tests: `initdb` as the unprivileged
`postgres` user (root cannot run a server) in a temp directory, listening on a free port
of 127.0.0.1 with trust authentication, started and stopped by the tests (`PgCluster`)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def pg_bindir() -> Path | None:
    """/usr/lib/postgresql/NN/bin of the newest installed server, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """One cluster: `start()`, `stop()` (fast shutdown: the server goes away under its
    clients, as a restart does), `new_database()` -> URL, `destroy()`."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user = "postgres"
        # in /tmp, whatever TMPDIR says: user postgres must reach it (a TMPDIR under a
        # private home would not let it in), and the socket path must stay short
        self.root = Path(tempfile.mkdtemp(prefix="winopt-pg-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.port = _free_port()
        entry = pwd.getpwnam(self.user)
        os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._as_user(["initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres",
                       "--no-sync", "-E", "UTF8"])
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                     f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                     "max_connections = 200\nshared_buffers = 16MB\n")
        self._count = 0

    def _as_user(self, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, timeout=120, cwd=self.root)

    def start(self) -> None:
        self._as_user(["pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                       "-w", "-t", "60", "start"])

    def stop(self) -> None:
        self._as_user(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg2

        self._count += 1
        name = f"t{os.getpid()}_{self._count}"
        conn = psycopg2.connect(self.url())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        conn.close()
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
