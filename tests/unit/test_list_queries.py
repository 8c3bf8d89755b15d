"""The backups list and `GET /api/backups` stay cheap as the catalog grows: a fixed number of
queries whatever the rows (no query per backup), no sum over every copy (that is on /storage)."""
import re
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import event

from backup_app.extensions import db
from backup_app.models import LOCAL, PRESENT, S3, Backup, BackupCopy, Verification, utcnow
from tests.web_helpers import add_backup, api_token, text


def add_verified_backups(app, count: int, first: int = 0) -> None:
    """`count` completed backups of two databases, each with two copies and a passed verification."""
    start = utcnow()
    with app.app_context():
        for number in range(first, first + count):
            backup = Backup(id=f"v{number}", filename=f"backup-v{number}.dump", database=("shop", "crm")[number % 2],
                            status="completed", size_bytes=1000, created_at=start + timedelta(seconds=number))
            backup.copies = [BackupCopy(location=LOCAL, uri=f"/b/{number}", status=PRESENT, size_bytes=1000),
                             BackupCopy(location=S3, uri=f"s3://b/{number}", status=PRESENT, size_bytes=1000)]
            backup.verifications = [Verification(status="passed", finished_at=start, duration_seconds=1.0,
                                                 tables={"public.t": 3})]
            db.session.add(backup)
        db.session.commit()


@contextmanager
def statements(app):
    """The SQL statements the app sends while the block runs."""
    sent: list[str] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", keep)


def queries_of_list_and_api(app, client) -> tuple[int, int]:
    """Statements sent for GET / (signed in) and for GET /api/backups, each checked as it goes."""
    headers = {"Authorization": f"Bearer {api_token(app)}"}
    with statements(app) as page_sql:
        page = client.get("/")
    with statements(app) as api_sql:
        listing = app.test_client().get("/api/backups", headers=headers)
    assert page.status_code == 200 and "verified restorable" in text(page)
    assert listing.status_code == 200 and all(b["last_verification"]["status"] == "passed" for b in listing.json)
    sql = " ".join(page_sql + api_sql).lower()
    assert "sum(" not in sql and "distinct" not in sql, "no sum over every copy, no scan of every row for names"
    return len(page_sql), len(api_sql)


def test_list_page_and_api_send_as_many_queries_for_60_backups_as_for_3(bare_app, bare_client):
    add_verified_backups(bare_app, 3)
    few = queries_of_list_and_api(bare_app, bare_client)
    add_verified_backups(bare_app, 57, first=3)
    many = queries_of_list_and_api(bare_app, bare_client)

    assert few == many, "no query per backup"


def test_storage_page_shows_bytes_and_backups_per_target_and_location(bare_app, bare_client):
    add_verified_backups(bare_app, 3)
    add_backup(bare_app, backup_id="l1", database="billing")  # one local copy, of unrecorded size

    page = text(bare_client.get("/storage"))
    listing = text(bare_client.get("/"))

    def used(size: str, backups: str) -> str:
        return f'<td>{size} <small class="muted">({backups})</small></td>'
    rows = {row.split("</td>")[0]: row for row in page.split("<tr><td>")[1:]}
    assert set(rows) == {"billing", "crm", "shop"}
    assert rows["shop"].count(used("2.0 KB", "2 backups")) == 2, "local and MinIO"
    assert rows["crm"].count(used("1000 B", "1 backup")) == 2
    assert used("0 B", "1 backup") + used("0 B", "0 backups") in rows["billing"]
    totals = page.split("<tfoot>")[1].replace("<th>", "<td>").replace("</th>", "</td>")
    assert used("2.9 KB", "4 backups") + used("2.9 KB", "3 backups") in totals
    assert 'href="/storage">Storage used</a>' in listing and 'class="usage"' not in listing


def test_database_filter_offers_every_database_in_the_catalog(bare_app, bare_client):
    for number, database in enumerate(("shop", "crm", "shop", "old-db", "crm")):
        add_backup(bare_app, backup_id=f"b{number}", database=database)

    page = text(bare_client.get("/"))

    choices = page.split('name="database"')[1].split("</select>")[0]
    assert re.findall(r'value="([^"]*)"', choices) == ["", "crm", "old-db", "shop"]
