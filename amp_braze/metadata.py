"""Metadata the Dagster UI understands (row counts, column schemas), built from polars frames."""

from __future__ import annotations

import time
from typing import Any

import dagster as dg
import polars as pl

# The columns amp_braze adds to the tables it writes, described once for every table's schema.
COLUMN_DESCRIPTIONS = {
    "__id": "The user's key: the Braze identifier as text (an external_id or braze_id without "
    "surrounding spaces; for user aliases, alias_label and alias_name joined by the unit "
    "separator U+001F). Joins attributes, memberships, the plan and the sync state.",
    "profile_updated_at": "The newest updated_at among the feed rows unified into this customer.",
    "source_feeds": "The feeds with a row for this customer.",
    "__row_hash": "A hash of the profile SQL row this row was built from: the next run checks "
    "only rows whose hash is new (never sent to Braze).",
    "identifier": "The identifier as the profile SQL returned it, before field rules.",
    "column": "The column whose value broke a Braze field rule.",
    "value": "The value that broke the rule, as text.",
    "rule": "The Braze field rule it broke (why the row is not sent).",
    "reason": "Braze's reason for refusing the row (its error type or message).",
    "run_id": "The Dagster run that sent the row.",
    "rejected_at": "When Braze refused the row (UTC).",
    "__new": "A user Braze has not had from amp_braze: every non-null attribute is sent.",
    "__whole": "Send array attributes whole, not as add/remove (new users, uncertain values).",
    "event_type": "The Currents event type, from the file's folder or Avro schema.",
}
_PREFIXES = {
    "__c_": "Send {}: its value differs from what Braze last accepted.",
    "__u_": "Braze may hold either value of {} (a run died sending it): sent again whatever it is.",
    "__held_": "The value of {} a field rule set aside this run (not sent; Braze keeps what it has).",
}


def describe(name: str, extra: dict[str, str] | None = None) -> str | None:
    if extra and name in extra:
        return extra[name]
    if name in COLUMN_DESCRIPTIONS:
        return COLUMN_DESCRIPTIONS[name]
    for prefix, text in _PREFIXES.items():
        if name.startswith(prefix):
            return text.format(name[len(prefix) :])
    for suffix, verb in (("__add", "added to"), ("__remove", "removed from")):
        if name.endswith(suffix):
            return f"Values {verb} the array attribute {name[: -len(suffix)]}."
    return None


def column_schema(
    schema: pl.Schema | dict[str, pl.DataType], descriptions: dict[str, str] | None = None
) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=name, type=str(dtype), description=describe(name, descriptions))
            for name, dtype in schema.items()
        ]
    )


def table_metadata(
    df: pl.DataFrame, uri: str | None = None, descriptions: dict[str, str] | None = None
) -> dict[str, Any]:
    """``dagster/row_count`` and ``dagster/column_schema`` (plus where the table lives); the
    columns amp_braze adds carry a description (``descriptions`` adds the table's own)."""
    return stored_table_metadata(df.schema, df.height, uri, descriptions)


def stored_table_metadata(
    schema: pl.Schema | dict[str, pl.DataType],
    rows: int,
    uri: str | None = None,
    descriptions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The same, for a table not in memory (its schema and row count from the Parquet footer)."""
    meta: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/column_schema": column_schema(schema, descriptions),
    }
    if uri:
        meta["dagster/uri"] = dg.MetadataValue.path(uri)
    return meta


_TYPES = {bool: "bool", int: "int", float: "float"}


def rows_table(rows: list[dict[str, Any]]) -> dg.MetadataValue:
    """A few rows (never a whole dataset) as Dagster's table metadata, which the asset page shows
    as a table with its schema. Columns in the order they first appear; a column is a number or
    a boolean when all its values are, text otherwise."""
    if not rows:
        return dg.MetadataValue.md("_none_")
    columns = list(dict.fromkeys(c for r in rows for c in r))
    types = {}
    for c in columns:
        kinds = {type(r[c]) for r in rows if r.get(c) is not None}
        types[c] = _TYPES.get(next(iter(kinds)), "string") if len(kinds) == 1 else "string"

    def cell(c: str, v: Any) -> str | int | float | bool | None:
        return v if v is None or types[c] != "string" else str(v)

    records = [dg.TableRecord({c: cell(c, r.get(c)) for c in columns}) for r in rows]
    schema = dg.TableSchema(columns=[dg.TableColumn(c, types[c]) for c in columns])
    return dg.MetadataValue.table(records, schema=schema)


def stage_seconds(seconds: dict[str, float]) -> dg.MetadataValue:
    """Seconds per stage as a table in the order the stages ran (the UI shows a JSON object's
    keys sorted, which loses that order), each with its share of the step and a total."""
    total = sum(seconds.values())
    rows = [
        {"stage": k, "seconds": round(v, 3), "share": f"{v / total:.0%}" if total else ""}
        for k, v in seconds.items()
    ]
    return rows_table([*rows, {"stage": "total", "seconds": round(total, 3), "share": ""}])


class Laps:
    """Seconds per stage of a step, for its metadata: call with a stage's name when it ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._t, 3)
        self._t = now


class StepCost:
    """What a step costs, for its metadata: seconds since it began, and the peak resident memory
    of its process since then. Linux lets a process restart its high-water mark
    (``/proc/self/clear_refs``), so the figure is this step's even in a process that ran others
    before; elsewhere it is the process's peak. Split in shards, the shard is named too, and
    the UI shows each partition's figures."""

    def __init__(self, context: dg.AssetExecutionContext) -> None:
        self.shard = context.partition_key if context.has_partition_key else None
        self._t = time.perf_counter()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

    @staticmethod
    def peak_mb() -> float:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def metadata(self) -> dict[str, dg.MetadataValue]:
        meta = {
            "step_seconds": dg.MetadataValue.float(round(time.perf_counter() - self._t, 3)),
            "peak_memory_mb": dg.MetadataValue.int(round(self.peak_mb())),
        }
        if self.shard:
            meta["shard"] = dg.MetadataValue.text(self.shard)
        return meta
