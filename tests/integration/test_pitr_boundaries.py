"""What PITR may touch besides its own archive, against a PostgreSQL 15 cluster of this module's own
and the real stores: a replication slot is one target's only, a restore asked for from the pages or
the API stays under PITR_RESTORE_ROOT, and the prune leaves alone what a running restore reads and
says, in a dry run, which base backups and WAL it would delete."""
import pytest

from backup_app.extensions import db
from backup_app.models import Target
from tests.helpers import add_target, error_line, invoke
from tests.integration.pitr_support import (  # noqa: F401 - fixtures
    pitr_app,
    pitr_cluster,
    status,
)
from tests.web_helpers import add_user, sign_in, submit, text

pytestmark = pytest.mark.integration


def slots(cluster) -> list[str]:
    return cluster.psql("SELECT slot_name FROM pg_replication_slots ORDER BY 1").split()


def test_names_that_map_to_one_slot_are_refused_and_a_shared_slot_is_never_dropped(pitr_app, pitr_cluster):
    runner = pitr_app.test_cli_runner()
    for name in ("shop-1", "Shop_1"):
        add_target(runner, name, pitr_cluster.url("shop"))
    invoke(runner, "pitr", "enable", "shop-1")
    refusal = ("Shop_1's replication slot would be backup_app_shop_1, which is already shop-1's: slot names keep "
               "only lowercase letters, digits and _, so the two names map to one slot. Give this target a name "
               "that differs from shop-1 in more than case or punctuation")

    assert error_line(invoke(runner, "pitr", "enable", "Shop_1", ok=False)) == f"Error: {refusal}"
    add_user(pitr_app)
    web = pitr_app.test_client()
    sign_in(web)
    page = submit(web, "/targets/Shop_1/pitr/enable", form_url="/targets/Shop_1/pitr", follow_redirects=True)
    assert f"Shop_1: {refusal}".replace("'", "&#39;") in text(page)
    assert (status(runner, "Shop_1")["enabled"], status(runner, "Shop_1")["slot"]) == (False, None)
    assert slots(pitr_cluster) == ["backup_app_shop_1"]

    # A catalog from before the check, where both targets name the slot: dropping it for one is refused.
    with pitr_app.app_context():
        db.session.scalars(db.select(Target).filter_by(name="Shop_1")).one().pitr_slot = "backup_app_shop_1"
        db.session.commit()
    out = invoke(runner, "pitr", "disable", "Shop_1", "--drop-slot").stdout
    assert "replication slot backup_app_shop_1 not dropped: it is also shop-1's" in out
    assert slots(pitr_cluster) == ["backup_app_shop_1"]
    assert status(runner, "Shop_1")["slot"] is None and status(runner, "shop-1")["slot"] == "backup_app_shop_1"

    out = invoke(runner, "pitr", "disable", "shop-1", "--drop-slot").stdout
    assert "replication slot backup_app_shop_1 dropped" in out and slots(pitr_cluster) == []
