"""PITR against a real server and real stores: base-backup times on the server's clock, and the
bytes the archive takes in each store counted by `storage usage`, the storage page and the dashboard."""
import json
from datetime import datetime, timedelta

from backup_app import models
from tests.helpers import invoke
from tests.integration.pitr_support import (  # noqa: F401 - fixtures
    archiving,
    covered,
    insert_batch,
    pitr_app,
    pitr_cluster,
    receivers,
    wait_for,
)


class AnHourAhead(datetime):
    """The app machine's clock, an hour ahead of the database server's."""

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + timedelta(hours=1)


def server_now(cluster) -> datetime:
    return datetime.fromisoformat(cluster.psql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                                               "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"))


def test_base_backup_times_are_the_servers_clock_not_the_apps(pitr_app, pitr_cluster, monkeypatch):
    runner = pitr_app.test_cli_runner()
    invoke(runner, "pitr", "enable", "shop")
    monkeypatch.setattr(models, "datetime", AnHourAhead)
    before = server_now(pitr_cluster)

    base = json.loads(invoke(runner, "pitr", "base-backup", "shop", "--json").stdout)

    after = server_now(pitr_cluster)
    started, finished = (datetime.fromisoformat(base[key].replace("Z", "+00:00")) for key in
                         ("started_at", "finished_at"))
    assert before <= started <= finished <= after, (before, base["started_at"], base["finished_at"], after)
    state = json.loads(invoke(runner, "pitr", "status", "shop", "--json").stdout)
    assert state["base_backups"][0]["finished_at"] == base["finished_at"]
