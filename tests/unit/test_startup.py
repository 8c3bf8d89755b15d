"""Start-up: the app and a local-only `flask backup list` import none of the heavy libraries
that only some commands need (they cost the start-up of every command, and its memory)."""
import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("minio", "prometheus_client", "huey", "huey.consumer", "alembic", "alembic.command", "flask_migrate",
         "apprise", "zstandard", "croniter", "cryptography", "psycopg", "redis")
APP = """
import json, sys
from backup_app import create_app
app = create_app({"SQLALCHEMY_DATABASE_URI": sys.argv[1], "BACKUP_DIR": sys.argv[2], "SECRET_KEY": "x"})
"""
MIGRATE = APP + """
from backup_app.schema import upgrade_catalog_if_needed
with app.app_context():
    upgrade_catalog_if_needed()
"""
LIST = APP + """
result = app.test_cli_runner().invoke(args=["backup", "list", "--json"])
assert result.exit_code == 0, result.output
print(json.dumps(sorted(sys.modules)))
"""


def run(code: str, tmp_path: Path) -> str:
    return subprocess.run([sys.executable, "-c", code, f"sqlite:///{tmp_path / 'catalog.db'}",
                           str(tmp_path / "backups")], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2]).stdout


def test_create_app_and_a_local_only_list_leave_the_heavy_libraries_unloaded(tmp_path):
    run(MIGRATE, tmp_path)  # a catalog at the head revision: the list only checks it

    loaded = set(json.loads(run(LIST, tmp_path).splitlines()[-1]))

    assert [name for name in HEAVY if name in loaded] == []
