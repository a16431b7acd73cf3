"""identity_clusters in steps of its own when ``identity.score_chunks`` is N > 1.

One step prepares the records (normalised, the model trained or loaded, the deterministic links,
the records that changed); N x N steps each score one piece of the pairs with Splink's
``predict_chunk``; a last step clusters the union of the links and assigns the stable ids. Each is
an ordinary Dagster step, so the Celery or Kubernetes executor runs it on any worker, and a step's
memory is its piece's, not the whole scoring's.

The steps pass nothing through Dagster's IO manager: the prepared records and each piece's links
are files of the run in amp_braze's storage (``identity/_pieces/<run id>/``, the root run's for a
re-execution from failure), which every worker reads, deleted once the last step has stored the
mapping. An incremental run (the model stored,
some records changed) scores the changed records in the first step, as one step would; the piece
steps then have nothing to do.
"""

import pickle
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import dagster as dg
import polars as pl

from amp_braze.config import Config
from amp_braze.identity import linkage
from amp_braze.identity.ids import IdMap
from amp_braze.identity.resolve import (
    IdentityError,
    Prepared,
    Resolution,
    finish,
    identity_config,
    prepare_links,
    score_changed,
    store,
    stored_model,
)
from amp_braze.metadata import Laps
from amp_braze.storage import Storage

PIECES = "identity/_pieces"
NOTHING = dg.In(dg.Nothing).dagster_type  # the graph's inputs and outputs carry no value
PREPARED, RECORDS, CHANGED_LINKS = "prepared.pickle", "records.parquet", "scored.parquet"


def step_name(left: int, right: int) -> str:
    return f"identity_score_{left:02d}_{right:02d}"


def _piece_file(left: int, right: int) -> str:
    return f"piece_{left:02d}_{right:02d}.parquet"


def _folder(context: dg.OpExecutionContext) -> str:
    """The run's files: a re-execution from failure (a run of its own) finds its root run's."""
    return f"{PIECES}/{context.run.root_run_id or context.run_id}"


def prepare_step(
    context: dg.OpExecutionContext,
    cfg: Config,
    storage: Storage,
    feeds: dict,
) -> None:
    """Everything before scoring; the changed records scored when only some changed."""
    ident = identity_config(cfg)
    ids = IdMap(storage)
    version, previous, _ = ids.current()
    model, report = stored_model(storage, ident)
    links = ids.links(version)
    prepared = prepare_links(feeds, ident, previous, model, links, report)
    folder = _folder(context)
    storage.write_parquet(f"{folder}/{RECORDS}", prepared.records.table)
    if prepared.changed is not None:
        lap = Laps()
        assert links is not None
        storage.write_parquet(f"{folder}/{CHANGED_LINKS}", score_changed(prepared, ident, links))
        lap("predict")
        prepared.seconds |= lap.seconds
        context.log.info(f"identity: {int(prepared.changed.sum()):,} changed records scored")
    # The records travel as Parquet (the pieces read them); the rest of the preparation here.
    light = replace(prepared, records=replace(prepared.records, table=pl.DataFrame()))
    storage.write_bytes(f"{folder}/{PREPARED}", pickle.dumps((version, light)))


def _light(context: dg.OpExecutionContext, storage: Storage) -> tuple[int, Prepared]:
    """The preparation without its records (a piece step has DuckDB read them from the file)."""
    return pickle.loads(storage.read_bytes(f"{_folder(context)}/{PREPARED}"))


def _prepared(context: dg.OpExecutionContext, storage: Storage) -> tuple[int, Prepared]:
    version, light = _light(context, storage)
    table = storage.read_parquet(f"{_folder(context)}/{RECORDS}")
    return version, replace(light, records=replace(light.records, table=table))


def score_step(
    context: dg.OpExecutionContext, cfg: Config, storage: Storage, left: int, right: int
) -> int:
    """One piece of the pairs; returns the links it found (0 when the run is incremental)."""
    folder = _folder(context)
    if storage.exists(f"{folder}/{CHANGED_LINKS}"):
        context.log.info("identity: incremental run, the changed records were scored already")
        return 0
    _, prepared = _light(context, storage)
    with storage.local_file(f"{folder}/{RECORDS}") as records:
        links = linkage.score_piece(records, identity_config(cfg), prepared.model, left, right)
    storage.write_parquet(f"{folder}/{_piece_file(left, right)}", links)
    return links.height


def finish_step(
    context: dg.OpExecutionContext, cfg: Config, storage: Storage
) -> tuple[Resolution, int, str]:
    """Cluster the union of the pieces' links, assign ids, store; the run's files go."""
    ident = identity_config(cfg)
    folder = _folder(context)
    version, prepared = _prepared(context, storage)
    if storage.exists(f"{folder}/{CHANGED_LINKS}"):
        scored = storage.read_parquet(f"{folder}/{CHANGED_LINKS}")
    else:
        n = ident.score_chunks
        names = [f"{folder}/{_piece_file(i, j)}" for i in range(n) for j in range(n)]
        scored = pl.concat([storage.read_parquet(name) for name in names])
    ids = IdMap(storage)
    now, previous, next_id = ids.current()
    if now != version:
        raise IdentityError(
            f"another identity run stored version {now} of the amp_id mapping under "
            f"{storage.uri('identity')} while this one ran; run identity_clusters again"
        )
    result = finish(prepared, ident, previous, next_id, scored)
    stored = store(storage, ident, ids, version, result)
    storage.delete_prefix(folder)
    return (result, *stored)


def pieces_asset(
    cfg: Config,
    key: dg.AssetKey,
    feeds: list[dg.AssetKey],
    read_feeds: Callable[[Storage], dict],
    outcome: Callable[[dg.OpExecutionContext, Storage, Resolution, int, str], Iterator],
    check_specs: list[dg.AssetCheckSpec],
    **asset_args: Any,
) -> dg.AssetsDefinition:
    """identity_clusters as a graph of steps: prepare, N x N pieces, finish. ``outcome`` yields
    the last step's output and check results, as the one-step asset reports them."""
    n = identity_config(cfg).score_chunks
    feed_ins = {"__".join(k.path): k for k in feeds}

    @dg.op(
        name="identity_prepare",
        ins={name: dg.In(dg.Nothing) for name in feed_ins},
        out=dg.Out(dg.Nothing),
        required_resource_keys={"storage"},
    )
    def prepare(context: dg.OpExecutionContext) -> None:
        where = context.resources.storage.get()
        prepare_step(context, cfg, where, read_feeds(where))

    def piece(left: int, right: int) -> dg.OpDefinition:
        @dg.op(
            name=step_name(left, right),
            ins={"prepared": dg.In(dg.Nothing)},
            out=dg.Out(dg.Nothing),
            required_resource_keys={"storage"},
        )
        def score(context: dg.OpExecutionContext) -> None:
            found = score_step(context, cfg, context.resources.storage.get(), left, right)
            context.log.info(f"identity: piece {left} x {right} of {n} x {n}: {found:,} links")

        return score

    pieces = [piece(i, j) for i in range(n) for j in range(n)]
    outs = {"result": dg.Out(dg.Nothing)} | {
        spec.get_python_identifier(): dg.Out(dg.Nothing, is_required=False) for spec in check_specs
    }

    @dg.op(
        name="identity_finish",
        ins={p.name: dg.In(dg.Nothing) for p in pieces},
        out=outs,
        required_resource_keys={"storage"},
    )
    def finish_op(context: dg.OpExecutionContext):
        where = context.resources.storage.get()
        result, version, uri = finish_step(context, cfg, where)
        yield from outcome(context, where, result, version, uri)

    graph = dg.GraphDefinition(
        name=key.to_python_identifier(),
        node_defs=[prepare, *pieces, finish_op],
        dependencies={
            **{p.name: {"prepared": dg.DependencyDefinition(prepare.name)} for p in pieces},
            finish_op.name: {p.name: dg.DependencyDefinition(p.name) for p in pieces},
        },
        input_mappings=[
            dg.InputMapping(
                graph_input_name=name,
                mapped_node_name=prepare.name,
                mapped_node_input_name=name,
                dagster_type=NOTHING,
            )
            for name in feed_ins
        ],
        output_mappings=[
            dg.OutputMapping(
                graph_output_name=name,
                mapped_node_name=finish_op.name,
                mapped_node_output_name=name,
                dagster_type=NOTHING,
            )
            for name in outs
        ],  # fmt: skip
    )
    return dg.AssetsDefinition.from_graph(
        graph,
        keys_by_input_name=feed_ins,
        keys_by_output_name={"result": key},
        check_specs=check_specs,
        **asset_args,
    )
