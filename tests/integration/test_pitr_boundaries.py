"""What PITR may touch besides its own archive, against a PostgreSQL 15 cluster of this module's own
and the real stores: a replication slot is one target's only, a restore asked for from the pages or
the API stays under PITR_RESTORE_ROOT, and the prune leaves alone what a running restore reads and
says, in a dry run, which base backups and WAL it would delete."""
import json
from datetime import datetime
from pathlib import Path

import pytest

from backup_app.core.wal import segment_of_lsn
from backup_app.errors import PitrError
from backup_app.extensions import db
from backup_app.jobs.pitr import pitr_slot, restore_job
from backup_app.jobs.submit import run_here
from backup_app.models import RUNNING, BaseBackup, Job, Target, WalFile
from tests.helpers import add_target, error_line, invoke
from tests.integration.pitr_support import (  # noqa: F401 - fixtures
    archiving,
    covered,
    insert_batch,
    pitr_app,
    pitr_cluster,
    receivers,
    status,
    wait_for,
)
from tests.web_helpers import add_user, api_token, sign_in, submit, text

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


def api_restore(app, data_dir) -> tuple[int, dict]:
    response = app.test_client().post("/api/targets/shop/pitr/restore",
                                      json={"to": "latest", "data_dir": str(data_dir)},
                                      headers={"Authorization": f"Bearer {api_token(app)}"})
    return response.status_code, response.json


def test_a_restore_from_the_pages_or_the_api_stays_under_the_restore_root(pitr_app, data_root, tmp_path):
    root = Path(pitr_app.config["PITR_RESTORE_ROOT"])
    assert root == data_root
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    add_user(pitr_app)
    not_under = f"is not under {root}: a restore asked for from the pages or the API goes into a new folder under " \
                "PITR_RESTORE_ROOT"
    refusals = {
        outside / "pg": f"the data directory {outside / 'pg'} {not_under}",
        root: f"the data directory {root} {not_under}",
        root / ".." / "pg": f"the data directory {root / '..' / 'pg'} may not contain '..': give one under {root} "
                             "(PITR_RESTORE_ROOT)",
        root / "link" / "pg": f"the data directory {root / 'link' / 'pg'} (through a link, it is {outside / 'pg'}) "
                              f"{not_under}",
    }
    for data_dir, message in refusals.items():
        assert api_restore(pitr_app, data_dir) == (400, {"error": message}), data_dir

    web = pitr_app.test_client()
    sign_in(web)
    form = text(web.get("/targets/shop/pitr"))
    assert f"A new or empty directory under {root} (PITR_RESTORE_ROOT) on the worker&#39;s machine" in form
    page = submit(web, "/targets/shop/pitr/restore", {"latest": "y", "timezone": "UTC",
                                                        "data_dir": str(outside / "pg")}, form_url="/targets/shop/pitr")
    assert page.status_code == 400 and refusals[outside / "pg"] in text(page)
    with pitr_app.app_context():
        assert db.session.scalars(db.select(Job)).all() == [], "nothing queued"
    assert list(outside.iterdir()) == [] and sorted(p.name for p in root.iterdir()) == ["link"]

    # Under the root, it is queued (and fails for its own reason); the CLI may name any directory.
    assert api_restore(pitr_app, root / "pg")[0] == 202
    result = invoke(pitr_app.test_cli_runner(), "pitr", "restore", "shop", "--to", "latest",
                    "--data-dir", str(data_root.parent / f"{data_root.name}-cli"), ok=False)
    assert error_line(result) == "Error: shop has nothing to recover yet: it has no base backup"


def test_the_worker_checks_the_restore_root_again_before_it_makes_anything(pitr_app, data_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    with pitr_app.app_context():
        job = restore_job("shop", None, str(data_root / "moved" / "pg"), None, root=str(data_root))
        (data_root / "moved").symlink_to(outside)  # a link put in its way after it was queued
        with pytest.raises(PitrError, match=rf"\(through a link, it is {outside / 'pg'}\) is not under {data_root}"):
            run_here(db.session, job)
    assert list(outside.iterdir()) == []


def test_the_prune_lists_base_backups_and_wal_and_leaves_them_to_a_running_restore(pitr_app, pitr_cluster,
                                                                                    receivers):
    runner = pitr_app.test_cli_runner()
    old = archiving(runner, receivers)
    insert_batch(pitr_cluster, 1)
    new = json.loads(invoke(runner, "pitr", "base-backup", "shop", "--json").stdout)
    wait_for(lambda: covered(runner, datetime.fromisoformat(new["finished_at"])), what="the new base backup usable")
    receivers.stop()  # the archive as it is now: what the dry run lists is what the prune then deletes
    with pitr_app.app_context():
        target = db.session.scalars(db.select(Target).filter_by(name="shop")).one()
        target.keep_days, target.keep_last = 0, 1
        db.session.commit()
        wal_before = set(db.session.scalars(db.select(WalFile.name).where(WalFile.kind == "segment")))
        first_needed = segment_of_lsn(new["timeline"], new["start_lsn"])
        old_file = db.session.get(BaseBackup, old["id"]).filename
    old_wal = sorted(name for name in wal_before if name < first_needed)
    assert old_wal, "WAL before the new base backup"

    preview = json.loads(invoke(runner, "backup", "prune", "--dry-run", "--json").stdout)
    assert [(item["kind"], item["id"]) for item in preview] == [("base-backup", old["id"])] + [
        ("wal", name) for name in old_wal]
    assert all(item["database"] == "shop" for item in preview)
    assert preview[0]["filename"] == old_file and preview[0]["reason"].startswith("full base backup of ")
    assert preview[1]["reason"] == (f"WAL before {first_needed}, where the oldest base backup kept ({new['id']}) "
                                    "starts")
    text_preview = invoke(runner, "backup", "prune", "--dry-run").stdout
    assert f"Would delete base backup {old['id']} of shop  {old_file}  (full base backup of " in text_preview
    assert f"Would delete {len(old_wal)} WAL segment(s) of shop, {old_wal[0]}" in text_preview
    add_user(pitr_app)
    web = pitr_app.test_client()
    sign_in(web)
    page = text(web.get("/targets/shop/retention"))
    assert f"<li>Would delete base backup {old['id']} of shop  {old_file}  (full base backup of " in page
    assert "A prune now would delete nothing" not in page

    # A point-in-time restore of shop is running: its archive is left alone, and the prune says so.
    with pitr_app.app_context():
        reader = Job(kind="pitr-restore", database="shop", target="/srv/r", slot=pitr_slot("shop"), status=RUNNING)
        db.session.add(reader)
        db.session.commit()
        reader_id = reader.id
    kept = (f"PITR archive of shop not pruned: job {reader_id} (pitr-restore) is running and may read any of its "
            "base backups and WAL; a later prune does it")
    assert kept in invoke(runner, "backup", "prune", "--dry-run").stdout
    assert kept in invoke(runner, "backup", "prune").stdout
    assert [b["id"] for b in status(runner)["base_backups"]] == [new["id"], old["id"]]
    with pitr_app.app_context():
        assert set(db.session.scalars(db.select(WalFile.name).where(WalFile.kind == "segment"))) == wal_before
        db.session.get(Job, reader_id).status = "completed"
        db.session.commit()

    # Once it has ended, the prune deletes exactly what the dry run listed.
    assert json.loads(invoke(runner, "backup", "prune", "--json").stdout) == preview
    assert [b["id"] for b in status(runner)["base_backups"]] == [new["id"]]
    with pitr_app.app_context():
        assert set(db.session.scalars(db.select(WalFile.name).where(WalFile.kind == "segment"))) == \
            wal_before - set(old_wal)
