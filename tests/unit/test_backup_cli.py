"""``limen backup`` / ``limen restore`` through the CLI on a real SQLite file (no daemon): the settings file
given with --config travels in the backup and --settings-to writes it as a new file only; the rows come back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from limen.cli import app
from limen.db.database import Database
from tests.support.cli import CliRunner


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_settings_travel_with_the_backup_and_are_written_only_as_a_new_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "limen.toml"
    config.write_text(f'data_dir = "{data}"\nlibvirt_uri = "test:///default"\nport = 9443\n# Zoë\n')
    db = Database(f"sqlite:///{data / 'limen.db'}")
    db.migrate()
    db.close()
    with sqlite3.connect(data / "limen.db") as connection:
        connection.execute("INSERT INTO vm_actions (user_name, vm_name, action, at, result_code, details) "
                           "VALUES ('Zoë', 'vm', 'start', '2026-01-01 00:00:00', 'OK', 'kept')")
    connection.close()
    out = tmp_path / "b.limen"
    code, _, err = run("--config", str(config), "backup", str(out), "--no-vms")
    assert code == 0, err
    with sqlite3.connect(data / "limen.db") as connection:
        connection.execute("DELETE FROM vm_actions")
    connection.close()

    existing = tmp_path / "existing.toml"
    existing.write_text("mine")
    code, _, err = run("--config", str(config), "restore", str(out), "--settings-to", str(existing))
    assert code == 1 and "writes a new file only" in err
    assert existing.read_text() == "mine"

    written = tmp_path / "restored.toml"
    code, stdout, err = run("--config", str(config), "restore", str(out), "--settings-to", str(written))
    assert code == 0, err
    assert written.read_text() == config.read_text() and oct(written.stat().st_mode & 0o777) == "0o600"
    assert f"written to {written}" in stdout
    with sqlite3.connect(data / "limen.db") as connection:
        assert connection.execute("SELECT user_name, details FROM vm_actions").fetchall() == [("Zoë", "kept")]
