"""The media options of the command line: --media URL on serve, demo, import and export, and what
`demo --no-serve` says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from labelmill.cli import app

SCHEMA = "controls:\n  - {name: objects, type: boxes, source: image, classes: [cat]}\n"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("LABELMILL_DATA_DIR", str(tmp_path / "data"))
    for name in ("LABELMILL_DATABASE_URL", "LABELMILL_MEDIA_URL", "LABELMILL_MEDIA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return {"tmp": tmp_path, "db": f"sqlite:///{tmp_path / 'cli.db'}"}


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_demo_no_serve_does_not_claim_to_serve(env: dict[str, Any]) -> None:
    media = env["tmp"] / "demo media"
    r = cli("demo", "--no-serve", "--db", env["db"], "--media", media.as_uri())
    assert r.exit_code == 0, r.output
    assert "demo at http" not in r.output and "not serving" in r.output
    assert "labelmill serve" in r.output and "login: demo  password: " in r.output
    assert any(p.suffix == ".wav" for p in media.rglob("*"))  # the demo's media went to --media
    assert not (env["tmp"] / "data" / "media").exists()


def test_serve_refuses_an_unsupported_media_url_in_one_line(env: dict[str, Any]) -> None:
    r = cli("serve", "--db", env["db"], "--media", "s3://bucket/media")
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        "error: media URL 's3://bucket/media': scheme s3:// is not supported yet "
        "(only a local folder: a file:// URL or a path)"
    ]


def test_import_and_export_use_the_media_option(env: dict[str, Any]) -> None:
    tmp, db = env["tmp"], env["db"]
    (tmp / "schema.yaml").write_text(SCHEMA)
    assert cli("project", "create", "imgs", "--schema", str(tmp / "schema.yaml"), "--db", db).exit_code == 0
    folder = tmp / "pictures"
    folder.mkdir()
    Image.new("RGB", (12, 9)).save(folder / "a.png")
    media = tmp / "store"
    r = cli("import", "imgs", str(folder), "--db", db, "--media", str(media))
    assert r.exit_code == 0, r.output
    assert [p.name for p in media.rglob("*.png")] == ["a.png"]
    out = tmp / "out.jsonl"
    r = cli("export", "imgs", "--out", str(out), "--db", db, "--media", media.as_uri())
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text().splitlines()[0])["data"]["image"].startswith("media://")
    r = cli("import", "imgs", str(folder), "--db", db, "--media", "s3://b/m")
    assert r.exit_code == 1 and "s3:// is not supported yet" in r.output
