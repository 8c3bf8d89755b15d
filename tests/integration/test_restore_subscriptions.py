"""The swap restore of a database that subscribes to a publication (and is itself published from),
on PostgreSQL 15 and 18 with wal_level = logical: the publisher is another database of the same
cluster, its slot made beforehand (a CREATE SUBSCRIPTION that made it would wait on itself).

A running apply worker does not stop the rename, a half-built database holding the restored
CREATE SUBSCRIPTION is dropped without touching the publisher's slot, and what the restore leaves
(subscriptions disabled on both sides, slots staying with the previous database) is reported."""
import pytest

from backup_app.adapters.databases import DatabaseServer
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import RestoreFailed
from backup_app.extensions import db
from backup_app.models import Backup, Job
from devtools.localservers import DEBIAN_PG_BIN, PostgresCluster
from tests.conftest import drop_with_leftovers, unique_name
from tests.helpers import create, error_line, invoke
from tests.integration.pitr_support import wait_for

pytestmark = pytest.mark.integration

SUBSCRIPTION = "items_sub"


@pytest.fixture(scope="module", params=[15, 18], ids=["pg15", "pg18"])
def logical_cluster(request, tmp_path_factory):
    """A cluster of the module's own with wal_level = logical (and prepared transactions)."""
    from backup_app.adapters.pgtools import wheel_bin_dir

    bin_dir = DEBIAN_PG_BIN if request.param == 15 else str(wheel_bin_dir())
    cluster = PostgresCluster(tmp_path_factory.mktemp(f"logical{request.param}"), bin_dir=bin_dir).start()
    cluster.psql("ALTER SYSTEM SET wal_level = logical")
    cluster.psql("ALTER SYSTEM SET max_prepared_transactions = 5")
    cluster.stop()
    cluster.start()
    yield cluster
    cluster.stop()


class Replication:
    """A publisher database `pub` (table items, publication, slot) and a subscriber `shop` applying
    its changes into its own items table, the subscription enabled and its apply worker running."""

    def __init__(self, cluster: PostgresCluster):
        self.cluster = cluster
        self.pub, self.shop, self.slot = unique_name("pub"), unique_name("subshop"), unique_name("items_slot")
        cluster.createdb(self.pub)
        cluster.psql("CREATE TABLE items (id int PRIMARY KEY); CREATE PUBLICATION items_pub FOR TABLE items", self.pub)
        cluster.psql(f"SELECT pg_create_logical_replication_slot('{self.slot}', 'pgoutput')", self.pub)
        cluster.createdb(self.shop)
        cluster.psql(f"""CREATE TABLE items (id int PRIMARY KEY);
            CREATE SUBSCRIPTION {SUBSCRIPTION} CONNECTION 'host=127.0.0.1 port={cluster.port} dbname={self.pub}
                user=postgres password={cluster.password}' PUBLICATION items_pub
                WITH (create_slot = false, slot_name = '{self.slot}', copy_data = false)""", self.shop)
        self.publish(1)

    def publish(self, item: int, into: str | None = None) -> None:
        """Insert an item at the publisher and wait until `into` (the subscriber) has it."""
        self.cluster.psql(f"INSERT INTO items VALUES ({item})", self.pub)
        wait_for(lambda: self.items(into or self.shop)[-1:] == [item], what=f"item {item} applied")

    def items(self, database: str) -> list[int]:
        return [int(i) for i in self.cluster.psql("SELECT id FROM items ORDER BY id", database).split()]

    def subscription(self, database: str) -> tuple[str, ...] | None:
        """(enabled, the pid of its apply worker or '') of the subscription in `database`."""
        row = self.cluster.psql(f"SELECT s.subenabled, coalesce(w.pid::text, '') FROM pg_subscription s "
                                f"JOIN pg_database d ON d.oid = s.subdbid AND d.datname = '{database}' "
                                f"LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL")
        return tuple(row.split("|")) if row else None

    def slot_database(self, slot: str) -> str:
        return self.cluster.psql(f"SELECT coalesce(database, 'none') FROM pg_replication_slots "
                                 f"WHERE slot_name = '{slot}'")

    def close(self) -> None:
        """Detach every subscription left in the test's databases, then drop them and the slot."""
        databases = self.cluster.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{self.shop}%'").split()
        for database in databases:
            if self.subscription(database):
                self.cluster.psql(f"ALTER SUBSCRIPTION {SUBSCRIPTION} DISABLE", database)
                self.cluster.psql(f"ALTER SUBSCRIPTION {SUBSCRIPTION} SET (slot_name = NONE)", database)
                self.cluster.psql(f"DROP SUBSCRIPTION {SUBSCRIPTION}", database)
        drop_with_leftovers(self.cluster, self.shop)
        self.cluster.psql(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                          f"WHERE slot_name = '{self.slot}'")
        self.cluster.dropdb(self.pub)


@pytest.fixture
def replication(logical_cluster):
    replication = Replication(logical_cluster)
    yield replication
    replication.close()


@pytest.fixture
def shop_app(make_app, logical_cluster, replication):
    return make_app(BACKUP_DATABASE_URL=logical_cluster.url(replication.shop))


def warnings_of(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:")]


def test_a_subscriber_is_swapped_its_subscriptions_left_disabled_and_its_slots_named(
        shop_app, logical_cluster, replication):
    shop, runner = replication.shop, shop_app.test_cli_runner()
    feed = unique_name("feed")  # shop publishes too: a logical slot of its own
    logical_cluster.psql(f"SELECT pg_create_logical_replication_slot('{feed}', 'pgoutput')", shop)
    backup = create(runner)
    replication.publish(2)
    assert replication.subscription(shop)[0] == "t" and replication.subscription(shop)[1], "applying"

    result = invoke(runner, "backup", "restore", backup["id"], "--yes")

    [previous] = logical_cluster.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{shop}\\_%'").split()
    assert replication.items(shop) == [1] and replication.items(previous) == [1, 2], "the backup, and what it held"
    assert replication.subscription(shop) == ("f", "") and replication.subscription(previous) == ("f", ""), \
        "nothing applies by surprise, on either side"
    assert replication.slot_database(replication.slot) == replication.pub, "the publisher's slot is kept"
    assert replication.slot_database(feed) == previous
    expected = [
        f"the subscriptions {SUBSCRIPTION} of {shop} were disabled to end their apply workers for the swap; "
        f"they stay disabled in {previous}",
        f"the restored {shop} has the subscriptions {SUBSCRIPTION}, disabled as pg_dump leaves them: to apply its "
        "publishers' changes again, ALTER SUBSCRIPTION … ENABLE and … REFRESH PUBLICATION (it goes on from where "
        "the replaced database had got to: what that applied since the backup is not in it)",
        f"the logical replication slots {feed} belong to {previous}, not to {shop}: their subscribers find no slot "
        f"in {shop}; drop them (pg_drop_replication_slot) if unused, they hold WAL on the server"]
    assert warnings_of(result) == [f"Warning: {warning}" for warning in expected]
    with shop_app.app_context():
        [job] = db.session.query(Job).filter(Job.kind == "restore").all()
        assert all(f"warning: {warning}" in job.log for warning in expected), job.log

    logical_cluster.psql(f"ALTER SUBSCRIPTION {SUBSCRIPTION} ENABLE", shop)
    logical_cluster.psql(f"ALTER SUBSCRIPTION {SUBSCRIPTION} REFRESH PUBLICATION WITH (copy_data = false)", shop)
    replication.publish(3)  # the restored subscription goes on with the publisher's slot
    assert replication.items(shop) == [1, 3]


def test_dropping_the_previous_one_detaches_its_subscription_and_drops_its_slots(
        shop_app, logical_cluster, replication):
    shop, runner = replication.shop, shop_app.test_cli_runner()
    feed = unique_name("feed")
    logical_cluster.psql(f"SELECT pg_create_logical_replication_slot('{feed}', 'pgoutput')", shop)
    backup = create(runner)

    result = invoke(runner, "backup", "restore", backup["id"], "--yes", "--drop-previous")

    assert logical_cluster.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{shop}\\_%'") == ""
    assert replication.slot_database(replication.slot) == replication.pub, "the publisher's slot is kept"
    assert replication.slot_database(feed) == ""
    assert f"Warning: the subscriptions {SUBSCRIPTION} of {shop} were disabled to end their apply workers for the " \
           f"swap; {shop}_before_restore_" in result.stderr and " was dropped" in result.stderr
    assert f"their subscribers find no slot in {shop}; they were dropped with {shop}_before_restore_" in result.stderr


def test_a_failed_restore_drops_the_half_built_subscriber_and_leaves_the_current_one_applying(
        shop_app, logical_cluster, replication):
    shop, runner = replication.shop, shop_app.test_cli_runner()
    backup = create(runner)
    with shop_app.app_context():  # as if a table had lost rows on the way
        row = db.session.get(Backup, backup["id"])
        row.row_counts = {**row.row_counts, "public.items": 5}
        db.session.commit()

    result = invoke(runner, "backup", "restore", backup["id"], "--yes", ok=False)

    assert error_line(result) == ("Error: the restored rows differ from the backup's: public.items: 5 rows at "
                                  "backup time, 1 restored")
    assert logical_cluster.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{shop}\\_%'") == "", \
        "the half-built database is dropped, its CREATE SUBSCRIPTION with it"
    assert replication.slot_database(replication.slot) == replication.pub, "the publisher's slot is kept"
    replication.publish(2)  # the current one still applies
    assert replication.subscription(shop)[0] == "t"


def test_a_swap_that_cannot_happen_enables_the_subscriptions_again(shop_app, logical_cluster, replication):
    shop, beside = replication.shop, unique_name("beside")
    logical_cluster.createdb(beside)
    logical_cluster.psql("BEGIN; CREATE TABLE held (id int); PREPARE TRANSACTION 'holds_shop';", shop)
    try:
        with shop_app.app_context(), pytest.raises(RestoreFailed) as failed:
            DatabaseServer(ConnInfo.from_url(logical_cluster.url(shop))).swap(shop, beside, f"{shop}_old", timeout=1)
    finally:
        logical_cluster.psql("ROLLBACK PREPARED 'holds_shop'", shop)
        logical_cluster.dropdb(beside)

    assert str(failed.value) == (f"{shop} was still in use after 1 s (by prepared transaction 'holds_shop'); "
                                 "nothing was changed"), "its apply worker was ended"
    assert replication.subscription(shop)[0] == "t"
    replication.publish(2)


@pytest.fixture
def subscriber_owner(logical_cluster, replication):
    """`shop` owned by a role that may create databases but owns no subscription (dropped afterwards)."""
    role = unique_name("owner")
    logical_cluster.psql(f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD 'owner-pw'; "
                         f"ALTER DATABASE {replication.shop} OWNER TO {role}")
    logical_cluster.psql(f"ALTER TABLE items OWNER TO {role}", replication.shop)
    yield role
    replication.close()
    logical_cluster.psql(f"DROP ROLE {role}")


def test_a_role_that_cannot_disable_the_subscriptions_is_told_before_anything_runs(
        make_app, logical_cluster, replication, subscriber_owner):
    shop = replication.shop
    app = make_app(BACKUP_DATABASE_URL=f"postgresql://{subscriber_owner}:owner-pw@127.0.0.1:"
                                       f"{logical_cluster.port}/{shop}")
    runner = app.test_cli_runner()
    backup = create(runner)

    refused = invoke(runner, "backup", "restore", backup["id"], "--yes", ok=False)

    assert error_line(refused).startswith(f"Error: cannot restore beside {shop} and swap: ")
    assert (f"the role {subscriber_owner} does not own the subscriptions {SUBSCRIPTION} of {shop}, so it cannot "
            "disable them to stop their apply workers for the swap. Restore with --in-place") in error_line(refused)
    assert logical_cluster.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{shop}\\_%'") == ""
    replication.publish(2)
