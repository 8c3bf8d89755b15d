"""What the app writes is private to its user: files 0600, folders 0700, whatever umask it was
started with; a folder that others may enter is named in a warning at start-up."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import create, invoke, modes_under, not_private

pytestmark = pytest.mark.integration


@pytest.fixture
def shell_umask():
    """The umask a shell usually leaves (0022: new files readable by everyone)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_backups_and_the_catalog_are_private(make_app, pg_cluster, source_db, tmp_path, shell_umask):
    home = tmp_path / "home"
    home.mkdir()
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{home / 'catalog.db'}", BACKUP_DIR=str(home / "backups"),
                   BACKUP_DATABASE_URL=pg_cluster.url(source_db))
    runner = app.test_cli_runner()
    backup = create(runner)
    invoke(runner, "backup", "download", backup["id"], "--output", str(home / "copy.dump"))
    assert {"catalog.db", f"backups/{backup['filename']}", "copy.dump"} <= set(modes_under(home))
    assert not_private(home) == {".": "0755"}  # made by the test before the app ran; everything the app made is private


def test_a_folder_others_may_enter_is_named_at_start_up(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    env = {**os.environ, "FLASK_APP": "app.py", "BACKUP_DIR": str(shared), "LOG_FORMAT": "json",
           "CATALOG_DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}"}
    result = subprocess.run([str(Path(sys.executable).parent / "flask"), "backup", "list", "--json"], env=env,
                            cwd=Path(__file__).parents[2], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []
    warnings = [json.loads(line) for line in result.stderr.splitlines()]  # in the log's own format
    assert [(w["level"], w["message"]) for w in warnings if str(shared) in w["message"]] == [
        ("WARNING", f"{shared} is 0755: other local users may read the backups and the catalog in it; "
                    f"chmod 700 {shared}")]
