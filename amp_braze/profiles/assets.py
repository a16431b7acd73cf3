"""Assets of the customer_360 group: one ``sources/<name>`` per feed, and ``customer_profiles``."""

import dagster as dg

from amp_braze.config import Config, SourceConfig
from amp_braze.metadata import markdown_table, table_metadata
from amp_braze.profiles.feeds import feed_files, read_feed
from amp_braze.profiles.unify import unify
from amp_braze.storage import Storage

GROUP = "customer_360"


def source_table(name: str) -> str:
    return f"sources/{name}"


def _source_asset(src: SourceConfig, storage: Storage) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey(["sources", src.name]),
        group_name=GROUP,
        kinds={"polars", "parquet", "s3" if src.is_s3 else "file"},
        description=f"The {src.name} feed ({src.format}) read from {src.path}, renamed and typed.",
    )
    def _feed(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        files = feed_files(src)
        df = read_feed(src)
        uri = storage.write_table(source_table(src.name), df)
        key = df.get_column(src.customer_key)
        context.log.info(f"{src.name}: {df.height} rows from {len(files)} file(s)")
        return dg.MaterializeResult(
            metadata={
                **table_metadata(df, uri),
                "files": dg.MetadataValue.int(len(files)),
                "distinct_customers": dg.MetadataValue.int(key.drop_nulls().n_unique()),
                "rows_without_key": dg.MetadataValue.int(key.null_count()),
                "duplicate_key_rows": dg.MetadataValue.int(
                    key.drop_nulls().len() - key.drop_nulls().n_unique()
                ),
            }
        )

    return _feed


def _customer_profiles(config: Config, storage: Storage) -> dg.AssetsDefinition:
    deps = [dg.AssetKey(["sources", name]) for name in config.sources]

    @dg.asset(
        name="customer_profiles",
        group_name=GROUP,
        deps=deps,
        kinds={"polars", "parquet"},
        description=(
            "One row per customer, unified across feeds: per field the newest non-null value wins "
            "(by each feed's updated_at), feed priority breaks ties."
        ),
    )
    def customer_profiles(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        feeds = {
            name: (src, storage.scan_table(source_table(name)))
            for name, src in config.sources.items()
        }
        result = unify(feeds)
        uri = storage.write_table("customer_profiles", result.profiles)
        meta = table_metadata(result.profiles, uri)
        for name, c in result.contribution.items():
            meta[f"customers_from_{name}"] = dg.MetadataValue.int(c["customers"])
            meta[f"fields_won_by_{name}"] = dg.MetadataValue.int(c["fields_won"])
        meta["rows_without_key"] = dg.MetadataValue.int(
            sum(c["rows_without_key"] for c in result.contribution.values())
        )
        meta["per_source"] = markdown_table(
            [{"source": name, **c} for name, c in result.contribution.items()]
        )
        meta["customer_key"] = dg.MetadataValue.text(result.key)
        context.log.info(f"customer_profiles: {result.profiles.height} customers")
        return dg.MaterializeResult(metadata=meta)

    return customer_profiles


def build_profile_assets(config: Config, storage: Storage) -> list[dg.AssetsDefinition]:
    return [_source_asset(src, storage) for src in config.sources.values()] + [
        _customer_profiles(config, storage)
    ]
