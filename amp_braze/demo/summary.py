"""What ``amp-braze demo`` prints when it is done: per stage the figures a user would look for,
and whether each Braze workspace holds what the syncs want."""

from __future__ import annotations

import polars as pl

from amp_braze.catalogue import EVENTS, FIELD_REJECTIONS, SYNC, SYNC_PLAN
from amp_braze.config import Config
from amp_braze.storage import Storage


def _print_sync(label: str, plan: dict, sync: dict) -> None:
    full = plan["full_sync_data_points"]
    print(
        f"    {label}: {sync['users_sent']:>7,} users, {sync['attributes_sent']:>8,} attributes, "
        f"{sync['data_points']:>8,} data points (a full resend: {full:,}), {sync['requests']:,} requests, "
        f"{sync['rate_limited_429s']} 429s, {sync['rejected_rows']} rejected"
    )


def phone_summary(users: list[dict]) -> str:
    """What Braze holds in ``phone``, from the emulator's profiles: how many in E.164, by
    calling code (and its country), and a sample of each."""
    from amp_braze.braze.phones import regions_of

    held = [u["phone"] for u in users if u.get("phone")]
    by_code: dict[int, list[str]] = {}
    other = 0
    for p in held:
        found = regions_of(p) if isinstance(p, str) else None
        if found is None or not p[1:].isdigit():
            other += 1
            continue
        by_code.setdefault(found[0], []).append(p)
    parts = []
    for code, numbers in sorted(by_code.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        main = regions_of(numbers[0])[1][0]  # type: ignore[index]
        parts.append(f"+{code} ({main}) {len(numbers):,} e.g. {min(numbers)}")
    e164 = len(held) - other
    text = f"{e164:,} of {len(users):,} profiles hold a phone in E.164"
    text += (": " + "; ".join(parts)) if parts else ""
    return text + (f"; {other:,} not in E.164" if other else "")


def print_summary(
    config: Config,
    day1: dict,
    day2: dict,
    checks: dict,
    loads: dict[str, dict],
    phones: dict[str, str] | None = None,
    streams: dict | None = None,
) -> None:
    print("\namp_braze demo summary")
    print("----------------------")
    for name in config.sources:
        m = day1[f"sources/{name}"]
        distinct = m.get("distinct_customers", m.get("distinct_records"))
        what = "customers" if "distinct_customers" in m else "records"
        print(f"  feed {name:<10} {m['dagster/row_count']:>10,} rows  {distinct:>10,} {what}")
        if "database" in m:
            m2 = day2.get(f"sources/{name}", {})
            print(
                f"    from {m['database']} table {m.get('table', '(query)')}: day one a {m['read']} "
                f"read of {m['rows_read']:,} rows; day two {'an' if m2.get('read') == 'incremental' else 'a'} "
                f"{m2.get('read', '?')} read of {m2.get('rows_read', 0):,} rows "
                f"({m2.get('rows_changed', 0):,} changed, {m2.get('rows_deleted', 0):,} deleted)"
            )
    if "identity_clusters" in day1:
        ic, ic2 = day1["identity_clusters"], day2["identity_clusters"]
        print(
            f"  identity_clusters {ic['records']:>10,} records resolved into {ic['clusters']:,} "
            f"people (amp_id); day two: {ic2['ids_kept']:,} ids kept, {ic2['ids_new']:,} new, "
            f"{ic2['ids_merged']:,} merged, {ic2['ids_split']:,} split"
        )
        print(
            f"  identity model      trained on the feeds; {ic['model_levels_neutral']} levels held "
            f"neutral, fields untrained: {ic['model_fields_untrained']} (model_fallbacks)"
        )
    cp = day1["customer_profiles"]
    print(f"  customer_profiles {cp['dagster/row_count']:>10,} unified customers")
    ba = day1["braze_customer_attributes"]
    print(
        f"  braze attributes  {ba['dagster/row_count']:>10,} users ready, {ba['rejected_rows']:,} rows set aside "
        f"by field rules (braze_customer_attributes_rejections)"
    )
    rejections = Storage(config.storage).read_table(FIELD_REJECTIONS)
    bad = rejections.filter(pl.col("rule") == "phone_invalid")
    if bad.height:
        print(
            f"  phones            {bad.height:>10,} not valid numbers: not sent, the rest of those "
            f"rows goes on (phone_invalid, e.g. {bad['value'].sort()[0]!r})"
        )
    sm1, sm2 = day1["segment_memberships"], day2["segment_memberships"]
    for seg in config.segments:
        print(
            f"  segment {seg:<12} {sm1[f'size_{seg}']:>8,} members; day two {sm2[f'size_{seg}']:>8,} "
            f"(+{sm2[f'joiners_{seg}']:,} / -{sm2[f'leavers_{seg}']:,})"
        )
    files = sum(m["files"] for m in loads.values())
    events = sum(m["events"] for m in loads.values())
    dups = sum(m["duplicates_dropped"] for m in loads.values())
    es = day2["engagement_summary"]
    print(
        f"  currents: {files} files over {len(loads)} hours, {events:,} events loaded, {dups} duplicates dropped; "
        f"engagement_summary {es['dagster/row_count']:,} users ({es['users_with_email_opens_30d']:,} opened an email)"
    )
    for spec in config.syncs.values():
        kind = "campaign" if spec.audience else "orchestration"
        print(f"  sync {spec.name} ({kind} to {spec.destination}):")
        for label, day in (("day one", day1), ("day two", day2)):
            plan, sync = ("/".join(spec.names.key(n)) for n in (SYNC_PLAN, SYNC))
            _print_sync(label, day[plan], day[sync])
    for stream in config.events.values():
        key = "/".join(stream.names.key(EVENTS))
        e1, e2 = day1[key], day2[key]
        print(
            f"  events {stream.stream} ({stream.type} to {stream.destination}): day one "
            f"{e1['events_sent']:,} sent, {e1['rejected_rows']:,} set aside; day two "
            f"{e2['events_sent']:,} sent, {e2['already_sent']:,} already sent (not again), "
            f"{e1['data_points'] + e2['data_points']:,} data points"
        )
    for dest, (check, stats) in checks.items():
        verdict = "EQUAL" if check.equal else "DIFFERENT"
        print(
            f"  emulator {dest}: {stats['users']:,} profiles, {stats['track_requests']:,} requests, "
            f"{stats['data_points']:,} data points billed in all; Braze holds the wanted state "
            f"for {check.wanted_users:,} users"
            + (
                f" and {check.subscription_states:,} subscription-group states"
                if check.subscription_states
                else ""
            )
            + f": {verdict}"
            + (
                ""
                if check.equal
                else f" ({len(check.missing)} missing, {len(check.different)} differ)"
            )
        )
        if phones and dest in phones:
            print(f"    phones: {phones[dest]}")
        for name, ev in (streams or {}).items():
            if config.events[name].destination == dest:
                print(
                    f"    events {name}: Braze holds each of its {ev.sent:,} events once: "
                    + ("EQUAL" if ev.equal else f"DIFFERENT ({ev.users_differing} users differ)")
                )
    print(f"  storage: {config.storage}")
