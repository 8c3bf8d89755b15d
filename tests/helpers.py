"""Helpers shared by the tests."""
import hashlib
import json
from pathlib import Path


def invoke(runner, *args: str, ok: bool = True):
    """Run a `flask` command in-process; check the exit code."""
    result = runner.invoke(args=list(args))
    if ok:
        assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    else:
        assert result.exit_code == 1, f"{args} should fail: {result.output}"
    return result


def create(runner, *args: str) -> dict:
    """`flask backup create --json` → the backup as a dict."""
    return json.loads(invoke(runner, "backup", "create", "--json", *args).stdout)


def show(runner, backup_id: str) -> dict:
    return json.loads(invoke(runner, "backup", "show", backup_id, "--json").stdout)


def copy_status(backup: dict) -> dict[str, str]:
    return {c["location"]: c["status"] for c in backup["copies"]}


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def error_line(result) -> str:
    """The `Error: …` line a failed command printed on stderr."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]
