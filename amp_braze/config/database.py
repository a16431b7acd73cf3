"""A database feed's connection URI: which kind of database it names, and the URI with its secret
masked for everything that shows it (logs, errors, metadata, the UI).

The URI is held whole because the driver needs it, but ``str()``, ``repr()`` and the model's dump
give the masked form (``postgresql://crm_reader:***@db.example.com:5432/crm``); only
``secret()`` gives the password, and only the connection code calls it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

# scheme -> (kind, the extra whose driver reads it; None: installed with amp_braze)
KINDS: dict[str, tuple[str, str | None]] = {
    "postgresql": ("postgres", None),
    "postgres": ("postgres", None),
    "redshift": (
        "redshift",
        None,
    ),  # the PostgreSQL driver (ADBC: Redshift support is experimental)
    "sqlite": ("sqlite", None),
    "duckdb": ("duckdb", None),
    "snowflake": ("snowflake", "snowflake"),
    "bigquery": ("bigquery", "bigquery"),
}
FILE_KINDS = (
    "sqlite",
    "duckdb",
)  # their URI names a file: sqlite:///relative.db, sqlite:////abs.db
MASK = "***"
_SECRET_PARAMS = re.compile(r"(?i)((?:password|passwd|pwd|token|secret|private_key)[^=&]*=)[^&]*")


def _mask_netloc(parts: SplitResult) -> str:
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:{MASK}@{host}"
    return netloc


@dataclass(frozen=True, eq=True)
class DatabaseUri:
    """``postgresql://user:password@host:port/db``, ``sqlite:///file.db``, ``duckdb:///file.duckdb``,
    ``snowflake://user:password@account/db/schema?warehouse=wh``, ``bigquery://project/dataset``."""

    _uri: str

    @classmethod
    def parse(cls, value: str, base_dir: Path | None = None) -> DatabaseUri:
        """A URI from the file; a SQLite or DuckDB file path is resolved against ``base_dir``."""
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in KINDS:
            known = ", ".join(f"{s}://" for s in KINDS if s != "postgres")
            shown = DatabaseUri(value).masked if scheme else "a URI without a scheme"
            raise ValueError(f"{shown} is not a database URI this version reads; use {known}")
        kind = KINDS[scheme][0]
        if kind in FILE_KINDS:
            path = value.split("://", 1)[1]
            if not path.startswith("/"):
                raise ValueError(
                    f"write the file as {scheme}:///relative.db or {scheme}:////abs.db"
                )
            path = path[1:]  # sqlite:///x -> x (relative), sqlite:////x -> /x (absolute)
            if path and path != ":memory:" and base_dir is not None:
                p = Path(path).expanduser()
                path = str(p if p.is_absolute() else (base_dir / p).resolve())
            value = f"{scheme}://{path}"  # held as scheme:// + the file's path
        return cls(value)

    @property
    def scheme(self) -> str:
        return self._uri.split("://", 1)[0].lower()

    @property
    def kind(self) -> str:
        """``postgres``, ``redshift``, ``sqlite``, ``duckdb``, ``snowflake`` or ``bigquery``."""
        return KINDS[self.scheme][0]

    @property
    def extra(self) -> str | None:
        """The ``amp_braze[...]`` extra whose driver reads this kind (None: always installed)."""
        return KINDS[self.scheme][1]

    @property
    def file(self) -> str | None:
        """The database file of a SQLite or DuckDB URI."""
        if self.scheme not in KINDS or self.kind not in FILE_KINDS:
            return None
        return self._uri.split("://", 1)[1] if "://" in self._uri else None

    @property
    def address(self) -> str:
        """Where the server is, for messages: ``host:port`` (a file for SQLite and DuckDB)."""
        if self.file is not None:
            return self.file
        parts = urlsplit(self._uri)
        try:
            port = parts.port
        except ValueError:
            port = None
        host = parts.hostname or "localhost"
        return f"{host}:{port}" if port else host

    @property
    def password(self) -> str | None:
        parts = urlsplit(self._uri)
        secrets = [parts.password] if parts.password else []
        secrets += [m.group(0).split("=", 1)[1] for m in _SECRET_PARAMS.finditer(parts.query)]
        return next((s for s in secrets if s), None)

    @property
    def masked(self) -> str:
        if self.file is not None:
            return self._uri
        parts = urlsplit(self._uri)
        query = _SECRET_PARAMS.sub(lambda m: m.group(1) + MASK, parts.query)
        return parts._replace(netloc=_mask_netloc(parts), query=query).geturl()

    def secret(self) -> str:
        """The URI as written, password included: for the driver only."""
        return self._uri

    def scrub(self, text: str) -> str:
        """``text`` (a driver's message) with this URI's secrets masked."""
        for s in (self._uri, self.password):
            if s:
                text = text.replace(s, self.masked if s == self._uri else MASK)
        return text

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"DatabaseUri({self.masked!r})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        def validate(value: Any) -> DatabaseUri:
            if isinstance(value, DatabaseUri):
                return value
            if not isinstance(value, str):
                raise ValueError(f"must be a database URI (a string), got {type(value).__name__}")
            return cls.parse(value)

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda u: u.masked),
        )
