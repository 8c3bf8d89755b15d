"""`flask storage …`: the buckets, and what the backups take in each place.
"""



import click

from backup_app import wiring
from backup_app.cli.group import ServiceGroup, echo_json
from backup_app.core.formatting import human_size
from backup_app.errors import StorageUnavailable
from backup_app.extensions import db
from backup_app.schema import upgrade_catalog_if_needed
from backup_app.services.usage import storage_usage

storage_cli = ServiceGroup("storage", help="Manage the S3 bucket.")


@storage_cli.command("usage")
@click.option("--json", "as_json", is_flag=True, help="Print bytes and backups per location as JSON.")
def storage_usage_command(as_json):
    """Bytes used per location and per target: backups, and PITR's base backups and WAL."""
    upgrade_catalog_if_needed()
    locations = wiring.copy_locations()
    usage = storage_usage(db.session, locations)
    if as_json:
        echo_json(usage)
        return
    for location in locations:
        place = usage[location]
        click.echo(f"{location:<12}{human_size(place['bytes']):>12}  {place['backups']} backups" + pitr_part(place))
    for database, places in sorted(usage["by_database"].items()):
        click.echo(f"  {database}: " + ", ".join(f"{loc} {human_size(v['bytes'])}{pitr_part(v)}"
                                                 for loc, v in places.items()))


def pitr_part(place: dict) -> str:
    """`, + 12.0 MB PITR` when the place holds base backups or WAL."""
    return f", + {human_size(place['pitr_bytes'])} PITR" if place["pitr_bytes"] else ""


@storage_cli.command("init")
def storage_init_command():
    """Create each S3 store's bucket (private) if it is missing."""
    stores = wiring.s3_stores()
    if not stores:
        click.echo("MINIO_ENDPOINT is not set: the app runs local-only, there is no bucket to create.")
    errors = []
    for store in stores:
        try:
            created = store.ensure_bucket()
        except StorageUnavailable as exc:
            errors.append(f"{store.location}: {exc}")
            continue
        click.echo(f"{'Created' if created else 'Bucket exists:'} s3://{store.bucket} on {store.endpoint}")
    if errors:
        raise StorageUnavailable("; ".join(errors))
