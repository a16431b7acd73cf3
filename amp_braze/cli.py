"""The ``amp-braze`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from amp_braze.config import ENV_VAR, ConfigError, config_path, load_config

if TYPE_CHECKING:
    from amp_braze.config import Config, SyncSpec
    from amp_braze.sync.plan import Plan


def _cmd_generate(args: argparse.Namespace) -> int:
    from amp_braze.profiles.sample_data import generate

    start = time.perf_counter()
    out = Path(args.out or Path(os.environ.get("AMP_BRAZE_HOME", ".")) / ".amp_braze" / "demo_data")
    files = generate(out, customers=args.profiles, seed=args.seed, shared_key=args.shared_key)
    took = time.perf_counter() - start
    print(f"wrote sample feeds for {files.customers:,} customers in {took:.1f} s:")
    for p in (files.pos, files.ecommerce, files.loyalty):
        print(f"  {p}  ({p.stat().st_size / 1e6:.1f} MB)")
    return 0


def _which_config(arg: str | None) -> tuple[Path, str]:
    """The file a command reads, and why that one (users should never guess)."""
    if arg:
        return Path(arg), "given with --config"
    path, bundled = config_path()
    if bundled:
        return path, (
            f"the bundled demo configuration: ${ENV_VAR} is not set and there is no "
            "./amp_braze.yaml"
        )
    if os.environ.get(ENV_VAR):
        return path, f"from ${ENV_VAR}"
    return path, "./amp_braze.yaml in the working directory"


def _cmd_validate(args: argparse.Namespace) -> int:
    from amp_braze.profiles import databases
    from amp_braze.profiles.feeds import FeedError, feed_files

    path, why = _which_config(args.config)
    print(f"checking {path} ({why})")
    cfg = load_config(path)
    problems = 0
    for src in cfg.sources.values():
        try:
            if src.is_database:
                with databases.connection(src) as conn:
                    columns = databases.schema(conn, src)
                print(f"  sources.{src.name}: {src.location}, {len(columns)} columns")
                continue
            files = feed_files(src)
            print(f"  sources.{src.name}: {len(files)} file(s) ({src.format})")
        except (FeedError, databases.DatabaseError) as e:
            problems += 1
            print(f"  {e}")
    if problems:
        print(f"{problems} problem(s) in {path}")
        return 1
    print(f"configuration OK: {path}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    """Run each sync's plan job (everything up to its braze_sync_plan), then write the requests
    the sync would send."""
    import dagster as dg

    from amp_braze.definitions import build_defs
    from amp_braze.resharding import run_job
    from amp_braze.shards import shard_names, shard_stores
    from amp_braze.storage import Storage
    from amp_braze.sync.run import load_plan

    path, why = _which_config(args.config)
    print(f"planning with {path} ({why})")
    cfg = load_config(path)
    specs = list(cfg.syncs.values())
    if args.sync:
        if args.sync not in cfg.syncs:
            raise ConfigError(
                "--sync", f"no sync {args.sync!r}; configured: {', '.join(cfg.syncs)}"
            )
        specs = [cfg.syncs[args.sync]]
    defs = build_defs(cfg)
    instance = dg.DagsterInstance.ephemeral()
    for spec in specs:
        # The shared steps (feeds, profiles, ...) find their inputs unchanged after the first.
        run_job(defs, cfg, spec.names.plan_job, instance)
    n = cfg.scale.shards
    stores = shard_stores(Storage(cfg.storage), n)
    for spec in specs:
        for shard, store in zip(shard_names(n) if n > 1 else [None], stores, strict=True):
            out = Path(args.out)
            if len(specs) > 1:
                out = out.with_name(f"{out.stem}.{spec.name}{out.suffix}")
                print(f"sync {spec.name} (destination {spec.destination}):")
            if shard:
                out = out.with_name(f"{out.stem}.{shard}{out.suffix}")
                print(f"{shard}:")
            _write_plan(cfg, spec, load_plan(store, spec.names), out)
    return 0


def _write_plan(cfg: Config, spec: SyncSpec, plan: Plan, out: Path) -> None:
    """Write one plan's requests and print what they change."""
    from amp_braze.sync import subscriptions
    from amp_braze.sync.run import write_dry_run

    n_req, n_obj = write_dry_run(plan, cfg, out, spec)
    s = plan.stats
    print(f"dry run: nothing was sent. {n_req:,} requests with {n_obj:,} users written to {out}")
    if plan.subscriptions:
        sub_out = out.with_name(f"{out.stem}.subscriptions{out.suffix}")
        n_sub, n_ids = subscriptions.write_requests(plan.table, plan.subscriptions, sub_out)
        print(f"  subscription requests: {n_sub:,} with {n_ids:,} ids written to {sub_out}")
        for group, n in sorted(s["subscription_changes"].items()):
            print(
                f"    {group:<36} subscribe {n['subscribed']:>8,}   "
                f"unsubscribe {n['unsubscribed']:>8,}"
            )
    print(f"  attributes changed: {s['attributes_changed']:,}   new users: {s['new_users']:,}")
    print(
        f"  data points: {s['data_points']:,} (a full resend would cost "
        f"{s['full_sync_data_points']:,})"
    )
    for name, n in sorted(s["attributes_changed_by_column"].items(), key=lambda kv: -kv[1]):
        if n:
            print(f"    {name:<30} {n:>10,}")


def _cmd_reshard(args: argparse.Namespace) -> int:
    """Split the sync state in the configured number of shards (nothing is sent)."""
    from amp_braze.resharding import reshard

    path, why = _which_config(args.config)
    cfg = load_config(path)
    print(f"resharding with {path} ({why})")
    old, done = reshard(cfg)
    if not done:
        print(f"the sync state is already split in {old} shard(s): nothing to do")
        return 0
    print(f"split in {cfg.scale.shards} shard(s), was {old}:")
    for r in done:
        shares = ", ".join(f"{k} {n:,}" for k, n in r.per_shard.items())
        print(f"  sync {r.sync}: {r.users:,} users ({shares})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import importlib.util

    missing = [m for m in ("moto", "requests") if importlib.util.find_spec(m) is None]
    if missing:  # the demo's own extras, not part of a production install
        print(
            f"amp-braze demo needs {', '.join(missing)}: pip install 'amp_braze[demo]' "
            "(from a checkout: pip install -e '.[demo]')",
            file=sys.stderr,
        )
        return 2
    from amp_braze.demo.run import run_demo

    return run_demo(
        profiles=args.profiles, workdir=Path(args.workdir), keep_running=args.keep_running
    )


def _cmd_emulator(args: argparse.Namespace) -> int:
    from amp_braze.braze.emulator import EmulatorServer, Settings

    settings = Settings(
        api_key=args.api_key or os.environ.get("BRAZE_API_KEY") or "emulator-key",
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        legacy_limits=args.legacy_limits,
        array_cap=args.array_cap,
        reset_header=args.reset_header,
    )
    server = EmulatorServer(args.host, args.port, settings=settings, state_file=args.state)
    server.serve_forever(on_ready=lambda s: print(f"listening on {s.url}", flush=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amp-braze", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write the three sample feeds (POS, e-commerce, loyalty)")
    g.add_argument(
        "--profiles", type=int, default=10_000, help="number of customers (default 10,000)"
    )
    g.add_argument("--out", help="folder (default $AMP_BRAZE_HOME/.amp_braze/demo_data)")
    g.add_argument("--seed", type=int, default=7)
    g.add_argument(
        "--shared-key",
        action="store_true",
        help="give every feed the same customer_id (the default writes separate systems' ids, "
        "as the bundled configuration's identity resolution expects)",
    )
    g.set_defaults(func=_cmd_generate)

    v = sub.add_parser("validate", help="check the configuration and that the feeds' files exist")
    v.add_argument(
        "--config", help="config file (default $AMP_BRAZE_CONFIG, ./amp_braze.yaml, bundled)"
    )
    v.set_defaults(func=_cmd_validate)

    e = sub.add_parser("emulator", help="serve the Braze REST API emulator until interrupted")
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    e.add_argument(
        "--api-key", help="the key clients must send (default $BRAZE_API_KEY or emulator-key)"
    )
    e.add_argument(
        "--rate-limit", type=int, default=3000, help="requests per window (default 3000)"
    )
    e.add_argument("--rate-window", type=float, default=3.0, help="window in seconds (default 3)")
    e.add_argument(
        "--legacy-limits", action="store_true", help="75 objects per array, not combined"
    )
    e.add_argument("--array-cap", type=int, default=25, help="array attribute length (default 25)")
    e.add_argument("--reset-header", choices=("seconds", "epoch"), default="seconds")
    e.add_argument("--state", help="load profiles from and save them to this JSON file")
    e.set_defaults(func=_cmd_emulator)

    pl_ = sub.add_parser("plan", help="dry run: show and write the requests a sync would send")
    pl_.add_argument(
        "--config", help="config file (default $AMP_BRAZE_CONFIG, ./amp_braze.yaml, bundled)"
    )
    pl_.add_argument(
        "--out",
        default="braze_requests.jsonl",
        help="JSON lines file of request bodies (with several syncs: one file each, named "
        "<out>.<sync>.jsonl)",
    )
    pl_.add_argument("--sync", help="plan only this sync (default: every configured sync)")
    pl_.set_defaults(func=_cmd_plan)

    r = sub.add_parser(
        "reshard", help="split the sync state in scale.shards shards (after changing it)"
    )
    r.add_argument(
        "--config", help="config file (default $AMP_BRAZE_CONFIG, ./amp_braze.yaml, bundled)"
    )
    r.set_defaults(func=_cmd_reshard)

    d = sub.add_parser("demo", help="run the whole loop offline on generated data")
    d.add_argument("--profiles", type=int, default=10_000)
    d.add_argument("--workdir", default=".amp_braze_demo", help="where the demo keeps its files")
    d.add_argument("--keep-running", action="store_true", help="leave the servers and the UI up")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"amp-braze: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
