"""Hostile ids, file names and object keys against the pages, the API and the CLI (hypothesis).

Each example must get a 400/404 (or the CLI's `Error:`), and leave every file in and around
BACKUP_DIR and every object in the bucket as it was: no input reaches a file outside the
folder or another backup's key. Runs on real SeaweedFS, with SQLite and PostgreSQL catalogs.
"""
import hashlib
import io
import operator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from minio.error import S3Error

from backup_app import wiring
from backup_app.adapters.local import is_safe_name
from backup_app.extensions import db
from backup_app.models import COMPLETED, LOCAL, PRESENT, S3, Backup, BackupCopy, utcnow
from tests.conftest import both_catalogs
from tests.web_helpers import add_user, api_token, csrf_token, sign_in

pytestmark = pytest.mark.integration

REAL_ID = "keepme0000001"
REAL_FILENAME = f"backup-shop-2026-01-01T00-00-00Z-{REAL_ID}.dump"
OTHER_KEY = "backup-other-2026-01-01T00-00-00Z-other00000001.dump"  # an object no row names
TAMPERED_ID = "tampered00001"
CONTENT = b"PGDMP not really a dump"
CLOSED_PORT_URL = "postgresql://app:pw@127.0.0.1:9/shop"

BAD_NAMES = ["..", "../", ".", "./", "/", "//", "../outside/secret.dump", "/etc/passwd", "..\\..\\x",
             "%2e%2e%2f", "%00", "\x00", f"{REAL_ID}\x00", f"{REAL_ID}/../{REAL_ID}", f"{REAL_ID}/", f" {REAL_ID}",
             REAL_ID.upper(), f"{REAL_FILENAME}", f"../{REAL_FILENAME}", "ü", "名前", "\u202e", "a" * 5000,
             "-rf", "--yes", "*", "'; DROP TABLE backups; --", "~root", "\n", "CON", "nul"]
PREFIXES = ["../", "../../", "/", "./", "..%2F", "..\\", "\x00", "ü/", "a/b/"]
TARGETS = [REAL_ID, REAL_FILENAME, OTHER_KEY, "outside/secret.dump", "etc/passwd"]
names = st.one_of(
    st.sampled_from(BAD_NAMES),
    st.builds(operator.add, st.sampled_from(PREFIXES), st.sampled_from(TARGETS)),
    st.text(alphabet="./\\\x00%~:*?ab1ü名-_ \n", min_size=1, max_size=40),
    st.text(min_size=1, max_size=300),
).filter(lambda name: name.strip("/") != REAL_ID)  # slashes merge: "x/" is x
# A shell cannot pass NUL in an argument, so the CLI is fuzzed without it.
cli_names = names.filter(lambda name: "\x00" not in name)
fuzz = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Playground:
    """An app with one real backup (local file and object), another object, and files beside BACKUP_DIR."""

    def __init__(self, app, root: Path):
        self.app = app
        self.root = root
        self.backup_dir = Path(app.config["BACKUP_DIR"])
        self.runner = app.test_cli_runner()
        self.client = app.test_client()
        with app.app_context():
            self.s3 = wiring.s3_stores()[0]
            self.s3.put(REAL_FILENAME, io.BytesIO(CONTENT), {}, "application/octet-stream")
            self.s3.put(OTHER_KEY, io.BytesIO(b"another backup"), {}, "application/octet-stream")
            local = wiring.local_storage()
            local.path(REAL_FILENAME).write_bytes(CONTENT)
            backup = Backup(id=REAL_ID, filename=REAL_FILENAME, database="shop", status=COMPLETED,
                            size_bytes=len(CONTENT), sha256=hashlib.sha256(CONTENT).hexdigest(),
                            storage_url=self.s3.uri(REAL_FILENAME), completed_at=utcnow())
            backup.copies += [BackupCopy(location=LOCAL, uri=local.uri(REAL_FILENAME), status=PRESENT),
                              BackupCopy(location=S3, uri=self.s3.uri(REAL_FILENAME), status=PRESENT)]
            db.session.add(backup)
            db.session.commit()
        (root / "outside").mkdir()
        (root / "outside" / "secret.dump").write_bytes(b"not yours")
        (root / REAL_FILENAME).write_bytes(b"a file of the same name, one folder up")
        add_user(app)
        assert sign_in(self.client).status_code == 302
        self.form_token = csrf_token(self.client, "/")
        self.api_headers = {"Authorization": f"Bearer {api_token(app)}"}
        self.downloads = root / "downloads"
        self.downloads.mkdir()
        self.before = self.state()

    def state(self) -> dict:
        """Every file under the test's folder (the catalog aside) and every object, with its hash."""
        files = {str(path.relative_to(self.root)): hashlib.sha256(path.read_bytes()).hexdigest()
                 for path in self.root.rglob("*") if path.is_file() and not path.name.startswith("catalog.db")}
        with self.app.app_context():
            objects = {key: self.s3.client.stat_object(bucket_name=self.s3.bucket, object_name=key).etag
                       for key, _size in self.s3.list()}
        return {"files": files, "objects": objects}

    def assert_unchanged(self) -> None:
        assert self.state() == self.before
        with self.app.app_context():
            assert db.session.get(Backup, REAL_ID).status == COMPLETED

    def cli(self, *args: str):
        return self.runner.invoke(args=list(args))


@pytest.fixture
def playground(make_app, s3_settings, tmp_path):
    app = make_app(**s3_settings)
    assert app.test_cli_runner().invoke(args=["storage", "init"]).exit_code == 0
    return Playground(app, tmp_path)


def answer(client, method: str, url: str, **kwargs):
    """The response, after following werkzeug's slash-merging redirects, which must stay on the site."""
    response = read(client.open(url, method=method, **kwargs))
    for _ in range(3):
        if response.status_code != 308:
            break
        location = urlsplit(response.headers["Location"])
        assert location.netloc in ("", "localhost"), location
        response = read(client.open(location.path, method=method, **kwargs))
    return response


def read(response):
    """The response read whole and closed (a download streams from an open file)."""
    response.get_data()
    response.close()
    return response


def assert_cli_error(result) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1, result.stderr


@both_catalogs
@fuzz
@given(name=names)
def test_fuzzed_ids_in_the_pages(playground, name):
    client, quoted, token = playground.client, quote(name, safe=""), playground.form_token
    for url in (f"/backups/{quoted}", f"/backups/{quoted}/download", f"/backups/{quoted}/restore",
                f"/backups/{quoted}/delete", f"/jobs/{quoted}/row", f"/jobs/?highlight={quoted}",
                f"/?database={quoted}&status={quoted}&page={quoted}"):
        response = answer(client, "GET", url)
        # A listing's filters: no status is called that (400) … (a NUL is refused before any view: 400)
        expected = {400} if "\x00" in name or "?database=" in url else {200} if "?" in url else {404}
        assert response.status_code in expected, (url, response.status_code)
    for url in (f"/backups/{quoted}/restore", f"/backups/{quoted}/delete"):
        response = answer(client, "POST", url, data={"csrf_token": token, "confirm": name, "target": "other",
                                                     "target_url": CLOSED_PORT_URL})
        assert response.status_code in {400, 404, 405}, (url, response.status_code)
    created = client.post("/backups/new", data={"csrf_token": token, "database": name})
    assert created.status_code in {200, 400}
    playground.assert_unchanged()


@both_catalogs
@fuzz
@given(name=names)
def test_fuzzed_ids_in_the_api(playground, name):
    client, quoted, headers = playground.client, quote(name, safe=""), playground.api_headers
    calls = [("GET", f"/api/backups/{quoted}", None), ("GET", f"/api/backups/{quoted}/download", None),
             ("DELETE", f"/api/backups/{quoted}", None), ("GET", f"/api/jobs/{quoted}", None),
             ("POST", f"/api/backups/{quoted}/restore", {"confirm": name}),
             ("POST", f"/api/backups/{REAL_ID}/restore", {"confirm": name, "target_url": name}),
             ("POST", "/api/backups", {"database": name})]
    for method, url, body in calls:
        response = answer(client, method, url, headers=headers, json=body)
        assert response.status_code in {400, 403, 404, 405}, (method, url, response.status_code)
        assert "error" in response.json
    listed = client.get(f"/api/backups?database={quoted}&status={quoted}", headers=headers)
    assert listed.status_code == 400 and "error" in listed.json, "no status is called that"
    playground.assert_unchanged()


@fuzz
@given(name=cli_names)
def test_fuzzed_ids_in_the_cli(playground, name):
    for args in (["show"], ["download", "--output", str(playground.downloads)], ["delete", "--yes"],
                 ["restore", "--yes", "--target-url", CLOSED_PORT_URL], ["verify"]):
        assert_cli_error(playground.cli("backup", *args, "--", name))
    assert_cli_error(playground.cli("backup", "create", "--database", name))
    playground.assert_unchanged()


@fuzz
@given(filename=names.filter(lambda name: name not in (REAL_FILENAME, OTHER_KEY)))
def test_tampered_file_names_in_the_catalog_reach_nothing(playground, filename):
    """A row whose file name was tampered with (or rebuilt from a hostile bucket) addresses no file or key."""
    app, client = playground.app, playground.client
    with app.app_context():
        if (earlier := db.session.get(Backup, TAMPERED_ID)) is not None:
            db.session.delete(earlier)
            db.session.flush()
        backup = Backup(id=TAMPERED_ID, filename=filename, database="shop", status=COMPLETED, size_bytes=9,
                        sha256=hashlib.sha256(b"not yours").hexdigest(), storage_url=f"s3://x/{filename}")
        backup.copies += [BackupCopy(location=LOCAL, uri=str(playground.root / "outside" / "secret.dump"),
                                     status=PRESENT),
                          BackupCopy(location=S3, uri=f"s3://{playground.s3.bucket}/{OTHER_KEY}", status=PRESENT)]
        db.session.add(backup)
        db.session.commit()
    headers = playground.api_headers
    for response in (client.get(f"/backups/{TAMPERED_ID}/download"),
                     client.get(f"/api/backups/{TAMPERED_ID}/download", headers=headers)):
        assert response.status_code in {400, 404}, response.status_code
    assert_cli_error(playground.cli("backup", "download", TAMPERED_ID, "--output", str(playground.downloads)))
    assert_cli_error(playground.cli("backup", "verify", TAMPERED_ID))
    page = client.post(f"/backups/{TAMPERED_ID}/delete", data={"csrf_token": playground.form_token})
    api = client.delete(f"/api/backups/{TAMPERED_ID}", headers=headers)
    cli = playground.cli("backup", "delete", TAMPERED_ID, "--yes")
    assert_cli_error(cli)
    if is_safe_name(filename):  # the row goes (its copies' URIs are never followed); then it is gone
        assert (page.status_code, api.status_code) == (302, 404)
        assert "not found" in cli.stderr
    else:  # refused whole: nothing is deleted
        assert (page.status_code, api.status_code) == (400, 400)
        assert "invalid backup file name" in cli.stderr
    playground.assert_unchanged()


@fuzz
@given(key=st.one_of(
    st.builds(operator.add, st.sampled_from(PREFIXES[:2] + PREFIXES[3:6] + PREFIXES[7:]),
              st.sampled_from([f"backup-shop-2026-02-02T00-00-00Z-{name}.dump" for name in ("evil000001",)])),
    st.text(alphabet="./\\%~:*?ab1ü名-_ ", min_size=1, max_size=60)))
def test_rescan_of_a_bucket_with_hostile_keys(playground, key):
    """Rescan skips what is not a plain backup file name, and never writes outside BACKUP_DIR."""
    s3 = playground.s3
    try:
        s3.client.put_object(bucket_name=s3.bucket, object_name=key, data=io.BytesIO(b"x"), length=1,
                             metadata={"X-Backup-Id": "../../evil", "X-Database": "../../etc"})
    except (ValueError, S3Error):  # the client or the store refuses such a key: it cannot be in a bucket
        reject()
    in_bucket = {name for name, _size in s3.list()}
    stored = in_bucket - set(playground.before["objects"])
    try:
        result = playground.cli("backup", "rescan", "--json")
        assert result.exit_code == 0, result.output
        with playground.app.app_context():
            rows = db.session.query(Backup).filter(Backup.id != REAL_ID).all()
            assert [(row.id, row.filename) for row in rows if row.filename not in in_bucket or "/" in row.id] == []
    finally:
        with playground.app.app_context():
            for row in db.session.query(Backup).filter(Backup.id != REAL_ID):
                db.session.delete(row)
            db.session.commit()
        for name in stored:
            s3.client.remove_object(bucket_name=s3.bucket, object_name=name)
    playground.assert_unchanged()
