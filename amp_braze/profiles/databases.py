"""Talking to a feed's database: the driver for its kind, a bounded connect, each dialect's way of
writing a timestamp, and errors that say what is wrong without the password.

Every kind is read through ADBC (PostgreSQL and Redshift through the PostgreSQL driver, SQLite,
Snowflake, BigQuery) or DuckDB's own connection, and results come as Arrow record batches that
polars reads without a copy per row.
"""

from __future__ import annotations

import importlib
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import polars as pl

from amp_braze.config import SourceConfig
from amp_braze.config.database import DatabaseUri
from amp_braze.profiles.feeds import FeedError

CONNECT_TIMEOUT_SECONDS = 10
_UNHOLDABLE = {"money": "numeric"}  # read wrong by polars (integer cents): cast to this instead
BATCH_ROWS = 250_000  # rows a batch from the driver holds at most (DuckDB; ADBC sizes its own)
# Batches the driver may run ahead of the feed: enough to keep it busy while a full read types a
# frame of rows (database_feed.TYPED_ROWS) at once.
READ_AHEAD = 8
_DRIVERS = {
    "postgres": "adbc_driver_postgresql.dbapi",
    "redshift": "adbc_driver_postgresql.dbapi",
    "sqlite": "adbc_driver_sqlite.dbapi",
    "snowflake": "adbc_driver_snowflake.dbapi",
    "bigquery": "adbc_driver_bigquery.dbapi",
    "duckdb": "duckdb",
}


class DatabaseError(ValueError):
    """A database feed that cannot be read as configured; the message names the key and never
    the password."""


def _driver(src: SourceConfig) -> Any:
    uri = src.database
    module = _DRIVERS[uri.kind]
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = uri.extra or "the base install"
        how = f"pip install 'amp_braze[{extra}]'" if uri.extra else "pip install amp_braze"
        raise DatabaseError(
            f"sources.{src.name}.database: reading {uri.kind} needs the {module.split('.')[0]} "
            f"driver, which is not installed; {how} ({extra})"
        ) from None


def _postgres_uri(uri: DatabaseUri) -> str:
    parts = urlsplit(uri.secret())
    query = dict(parse_qsl(parts.query))
    query.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
    return parts._replace(scheme="postgresql", query=urlencode(query)).geturl()


def _bigquery_kwargs(uri: DatabaseUri) -> dict[str, str]:
    parts = urlsplit(uri.secret())
    kwargs = {"adbc.bigquery.sql.project_id": parts.hostname or ""}
    dataset = parts.path.strip("/")
    if dataset:
        kwargs["adbc.bigquery.sql.dataset_id"] = dataset
    return kwargs


def _open(src: SourceConfig) -> Any:
    uri, driver = src.database, _driver(src)
    kind = uri.kind
    if uri.file is not None and not Path(uri.file).is_file():
        raise DatabaseError(f"sources.{src.name}.database: no {kind} database file at {uri.file}")
    if kind == "duckdb":
        return driver.connect(uri.file, read_only=True)
    if kind == "sqlite":
        return driver.connect(uri.file)
    if kind in ("postgres", "redshift"):
        return driver.connect(_postgres_uri(uri))
    if kind == "snowflake":
        return driver.connect(uri.secret().split("://", 1)[1])
    return driver.connect(db_kwargs=_bigquery_kwargs(uri))


@contextmanager
def connection(src: SourceConfig) -> Iterator[Any]:
    """An open connection to the feed's database, in UTC, closed afterwards."""
    uri = src.database
    try:
        conn = _open(src)
    except DatabaseError:
        raise
    except Exception as e:
        raise DatabaseError(
            f"sources.{src.name}.database: cannot connect to {uri.kind} at {uri.address}: "
            f"{uri.scrub(_first_line(e))}"
        ) from None
    try:
        if uri.kind in ("postgres", "redshift"):
            with conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
        elif uri.kind == "duckdb":
            conn.execute("SET TimeZone = 'UTC'")
        yield conn
    finally:
        conn.close()


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(line.strip() for line in text.splitlines()[:3] if line.strip())


def relation(src: SourceConfig) -> str:
    """The feed's rows as a FROM item: its table, or its query as a subquery."""
    if src.table is not None:
        return src.table
    return f"({src.query.strip().rstrip(';')}) AS amp_source"


def timestamp_literal(kind: str, iso: str) -> str:
    """A UTC instant (ISO 8601 with offset) as this dialect writes a timestamp-with-zone value."""
    if kind in ("postgres", "redshift"):
        return f"'{iso}'::timestamptz"
    if kind == "duckdb":
        return f"CAST('{iso}' AS TIMESTAMPTZ)"
    if kind == "snowflake":
        return f"'{iso}'::TIMESTAMP_TZ"
    if kind == "bigquery":
        return f"TIMESTAMP '{iso}'"
    return f"julianday('{iso}')"  # SQLite keeps times as text: compared as Julian days


def at_or_after(kind: str, column: str, iso: str) -> str:
    """``column >= iso`` in this dialect."""
    col = quote(column)
    if kind == "sqlite":
        return f"julianday({col}) >= {timestamp_literal(kind, iso)}"
    return f"{col} >= {timestamp_literal(kind, iso)}"


def quote(column: str) -> str:
    """A column name as an identifier (kept as written: case and all)."""
    return '"' + column.replace('"', '""') + '"'


def as_text(kind: str, column: str) -> str:
    return f"CAST({quote(column)} AS {'STRING' if kind == 'bigquery' else 'TEXT'})"


def string_list(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def columns_sql(src: SourceConfig, columns: pl.Schema) -> str:
    """The select list that reads every column: ``*``, except that PostgreSQL sends its decimals
    as text (the driver's own conversion of ``numeric`` is most of its work on a wide table;
    ``fetch`` with ``types`` reads the text back as the decimal)."""
    if src.database.kind not in ("postgres", "redshift"):
        return "*"
    decimals = {c for c, t in columns.items() if isinstance(t, pl.Decimal)}
    if not decimals:
        return "*"
    return ", ".join(
        f"{quote(c)}::text AS {quote(c)}" if c in decimals else quote(c) for c in columns
    )


def fetch(
    conn: Any, src: SourceConfig, sql: str, types: pl.Schema | None = None
) -> tuple[pl.Schema, Iterator[pl.DataFrame]]:
    """The columns of ``sql`` and its rows, a batch at a time, each batch in those columns' types
    (SQLite types values, not columns: its batches are cast to the declared types; ``types``, the
    feed's columns, casts those sent as text by ``columns_sql``); errors name what exists."""
    kind = src.database.kind
    cur = None  # held until the batches are read: closing it closes their stream
    try:
        if kind == "duckdb":
            reader = conn.sql(sql).to_arrow_reader(BATCH_ROWS)
        else:
            cur = conn.cursor()
            cur.execute(sql)
            reader = cur.fetch_record_batch()
        arrow_schema = reader.schema
    except DatabaseError:
        raise
    except Exception as e:
        raise query_error(conn, src, e) from None
    decode = decoder(src, arrow_schema)
    columns = decode(arrow_schema.empty_table()).schema
    if kind == "sqlite":
        columns = _sqlite_schema(conn, src, columns)
    if types is not None:
        columns = pl.Schema({c: types.get(c, t) for c, t in columns.items()})

    def decoded() -> Iterator[pl.DataFrame]:
        for batch in reader:
            df = decode(batch)
            if df.schema != columns:
                df = df.select(pl.col(c).cast(t) for c, t in columns.items())
            yield df

    def frames(cursor: Any = cur) -> Iterator[pl.DataFrame]:
        try:
            yield from ahead(decoded(), READ_AHEAD)
        except DatabaseError:
            raise
        except pl.exceptions.InvalidOperationError as e:
            raise DatabaseError(
                f"sources.{src.name}: a value does not fit its column's declared type "
                f"({_first_line(e)}); declare the column's type in the table or cast it in `query`"
            ) from None
        except Exception as e:
            raise query_error(conn, src, e) from None
        finally:
            if cursor is not None:
                cursor.close()

    return columns, frames()


def ahead(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """``items``, each made on a thread while the caller works on the one before: the server and
    the driver produce the next batch while the feed types and writes this one (both release
    the GIL). An error on the thread is raised here; leaving early stops the thread."""
    done, stop, handoff = object(), threading.Event(), queue.Queue(maxsize=depth)

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as e:  # handed to the caller's thread
            put(e)

    thread = threading.Thread(target=produce, daemon=True, name="amp-braze-read-ahead")
    thread.start()
    try:
        while (item := handoff.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def decoder(src: SourceConfig, arrow_schema: Any) -> Callable[[Any], pl.DataFrame]:
    """How a batch of ``arrow_schema`` becomes a polars frame: the driver's extension types read
    as what they hold (PostgreSQL's ``numeric`` as a decimal, ``json`` as text, ``uuid`` in its
    text form); a type polars cannot hold is one error naming the column and the cast to add."""
    import pyarrow as pa

    exprs: list[pl.Expr] = []
    storage: list[bool] = []
    for f in arrow_schema:
        meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
        db_type = meta.get("POSTGRESQL:type") or str(f.type)
        extension = isinstance(f.type, pa.BaseExtensionType)
        storage.append(extension)
        name = getattr(f.type, "extension_name", "")
        stored = f.type.storage_type if extension else f.type
        if db_type == "numeric" and pa.types.is_string(stored):
            exprs.append(pl.col(f.name).cast(_numeric(meta.get("POSTGRESQL:typmod"))).alias(f.name))
        elif name == "arrow.uuid":
            hex_ = pl.col(f.name).bin.encode("hex")
            cuts = [(0, 8), (8, 4), (12, 4), (16, 4), (20, 12)]
            exprs.append(
                pl.concat_str([hex_.str.slice(a, n) for a, n in cuts], separator="-").alias(f.name)
            )
        elif (extension and not pa.types.is_string(stored)) or db_type in _UNHOLDABLE:
            raise _unholdable(src, f.name, db_type)
        else:
            try:
                pl.from_arrow(pa.table({f.name: pa.array([], stored)}))
            except (Exception, pl.exceptions.PanicException):  # polars panics on some types
                raise _unholdable(src, f.name, db_type) from None

    def decode(batch: Any) -> pl.DataFrame:
        if any(storage):
            arrays = [
                _storage(c) if ext else c for c, ext in zip(batch.columns, storage, strict=True)
            ]
            batch = pa.table(arrays, names=batch.schema.names)
        df = pl.from_arrow(batch)
        return df.with_columns(exprs) if exprs else df

    return decode


def _storage(column: Any) -> Any:
    import pyarrow as pa

    """An extension array's values in their storage type (of a batch's array or a table's)."""
    if hasattr(column, "chunks"):
        return pa.chunked_array([c.storage for c in column.chunks], type=column.type.storage_type)
    return column.storage


def _numeric(typmod: str | None) -> pl.DataType:
    """``numeric(p, s)`` as a decimal of that precision and scale; an unbounded ``numeric`` (or
    one wider than a decimal holds) as a float, which is what Braze receives either way."""
    mod = int(typmod) - 4 if typmod and int(typmod) >= 4 else -1
    precision, scale = (mod >> 16) & 0xFFFF, mod & 0xFFFF
    if mod < 0 or precision > 38:
        return pl.Float64()
    return pl.Decimal(precision, scale)


def _unholdable(src: SourceConfig, column: str, db_type: str) -> DatabaseError:
    to = _UNHOLDABLE.get(db_type, "TEXT")
    return DatabaseError(
        f"sources.{src.name}: column {column!r} is {db_type}, which a feed cannot hold; "
        f"read it with a `query:` that selects CAST({quote(column)} AS {to}) AS {quote(column)}"
    )


_HOLDABLE = (pl.String, pl.Boolean, pl.Date, pl.Datetime, pl.Decimal, pl.Null)


def check_types(src: SourceConfig, schema: pl.Schema) -> None:
    """Columns a feed cannot hold, refused with the cast to add, unless ``types:`` reads them."""
    for col, dt in schema.items():
        if dt.is_numeric() or isinstance(dt, _HOLDABLE):
            continue
        name = src.columns.get(col, col)
        if name in src.types:
            continue  # the configured cast says how to read it
        cast = f"CAST({quote(col)} AS TEXT) AS {quote(col)}"
        raise FeedError(
            f"sources.{src.name}: column {col!r} is {dt}, which a feed cannot hold; read it "
            f"as text with a `query:` that selects {cast}, or give it a type under `types:`"
        )


def _sqlite_schema(conn: Any, src: SourceConfig, found: pl.Schema) -> pl.Schema:
    """SQLite's declared column types by its affinity rules (INT: integer, REAL/FLOA/DOUB: float,
    everything else text); a query's columns are text where no table declares them."""
    declared: dict[str, str] = {}
    if src.table is not None:
        cur = conn.cursor()
        cur.execute(f"PRAGMA table_info({string_list([src.table])})")
        declared = {row[1]: (row[2] or "").upper() for row in cur.fetchall()}
        cur.close()

    def affinity(decl: str) -> pl.DataType:
        if "INT" in decl:
            return pl.Int64()
        if any(t in decl for t in ("REAL", "FLOA", "DOUB")):
            return pl.Float64()
        return pl.String()

    return pl.Schema({c: affinity(declared.get(c, "TEXT")) for c in found.names()})


def schema(conn: Any, src: SourceConfig) -> pl.Schema:
    """The columns the feed's table or query has, as polars reads them (no row read)."""
    columns, frames = fetch(conn, src, f"SELECT * FROM {relation(src)} WHERE 1 = 0")
    for _ in frames:
        pass
    return columns


def query_error(conn: Any, src: SourceConfig, e: BaseException) -> DatabaseError:
    uri = src.database
    said = uri.scrub(_first_line(e))
    if src.table is not None:
        tables = list_tables(conn, src)
        known = {t.lower() for t in tables or []} | {t.lower().split(".")[-1] for t in tables or []}
        if tables is not None and src.table.lower() not in known:
            shown = ", ".join(tables[:30]) + (" ..." if len(tables) > 30 else "")
            return DatabaseError(
                f"sources.{src.name}.table: {src.table!r} is not a table of {uri.masked}; "
                f"it has {shown or 'no tables'}"
            )
    key = "table" if src.table is not None else "query"
    return DatabaseError(f"sources.{src.name}.{key}: {uri.kind} could not run the read: {said}")


def list_tables(conn: Any, src: SourceConfig) -> list[str] | None:
    """The tables and views the connection sees (``schema.table``), if the driver says."""
    try:
        if src.database.kind == "duckdb":
            rows = conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables ORDER BY 1, 2"
            ).fetchall()
            return [t if s in ("main", "") else f"{s}.{t}" for s, t in rows]
        conn.rollback()  # a failed statement leaves PostgreSQL's transaction aborted
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    except Exception:
        return None
    hidden = {"pg_catalog", "information_schema", "pg_toast"}
    names = []
    for catalog in objects:
        for db_schema in catalog.get("catalog_db_schemas") or []:
            s = db_schema.get("db_schema_name") or ""
            if s in hidden:
                continue
            for t in db_schema.get("db_schema_tables") or []:
                names.append(f"{s}.{t['table_name']}" if s and s != "main" else t["table_name"])
    return sorted(set(names))
