"""Media stores opened from URLs, media kept inside its own project (imports, exports, the media
route), and a deleted project's files gone with it (ids never reused), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from labelmill.formats.records import FormatError, ImportRecord
from labelmill.services.export import export_project
from labelmill.services.ingest import import_records
from labelmill.services.projects import create_project, delete_project
from labelmill.store.media import LocalMediaStore, MediaStore, open_media_store
from labelmill.store.models import Consensus, Item, Job, Project
from tests.conftest import auth, make_user

BOXES = {"controls": [{"name": "objects", "type": "boxes", "source": "image", "classes": ["cat"]}]}
BOX = {"x": 2.0, "y": 3.0, "w": 10.0, "h": 8.0, "label": "cat"}


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def new_project(db: Any, name: str) -> int:
    with db.session() as session:
        return create_project(session, name, BOXES).id


def stored_image(db: Any, media: MediaStore, pid: int, name: str, size: tuple[int, int]) -> str:
    """Import one image item (with gold boxes) into ``pid``; returns its media reference."""
    src = media.put_bytes(png(*size), f"staging/{name}")  # any local file will do as the source
    path = media.local_path(src)
    assert path is not None
    rec = ImportRecord("t", 1, {"image": name}, name, gold={"objects": [BOX]}, media_files=[("image", path)])
    import_records(db, pid, [rec], media=media)
    with db.session() as session:
        item = session.scalar(select(Item).where(Item.project_id == pid, Item.external_id == name))
        assert item is not None
        ref: str = item.data["image"]
    assert ref == f"media://{pid}/{name}"
    return ref


def plant_item(db: Any, pid: int, ref: str, *, sized: bool) -> None:
    """An item whose data points at ``ref``, written around the import checks (as data stored by a
    version without them would be)."""
    meta = {"media": {"image": {"width": 40, "height": 30}}} if sized else None
    with db.session() as session:
        session.add(
            Item(
                project_id=pid, external_id="planted", data={"image": ref}, meta=meta, gold={"objects": [BOX]}
            )
        )


def label_everything(db: Any, pid: int) -> None:
    """A consensus box on every item of the project (what image exports write)."""
    with db.session() as session:
        for item in session.scalars(select(Item).where(Item.project_id == pid)):
            session.merge(
                Consensus(
                    item_id=item.id, project_id=pid, value={"objects": [BOX]}, confidence=1.0, method="t"
                )
            )


# -- opening a store from its URL -------------------------------------------------------------------


def test_open_media_store_urls_and_legacy_paths(tmp_path: Path) -> None:
    by_path = open_media_store(tmp_path / "m")
    assert isinstance(by_path, LocalMediaStore) and by_path.root == (tmp_path / "m").resolve()
    assert by_path.url == (tmp_path / "m").resolve().as_uri() and by_path.url.startswith("file:///")
    for again in (by_path.url, str(tmp_path / "m"), f"file://localhost{(tmp_path / 'm').resolve()}"):
        reopened = open_media_store(again)
        assert isinstance(reopened, LocalMediaStore) and reopened.root == by_path.root
    spaced = open_media_store((tmp_path / "a b é").as_uri())
    assert isinstance(spaced, LocalMediaStore) and spaced.root == (tmp_path / "a b é").resolve()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("s3://bucket/media", "scheme s3:// is not supported yet"),
        ("gs://bucket", "scheme gs:// is not supported yet"),
        ("file://otherhost/srv/media", "must name a local folder"),
        ("", "media URL is empty"),
    ],
)
def test_open_media_store_refuses_in_one_line(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        open_media_store(url)
    assert "\n" not in str(info.value)


def test_settings_media_url_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labelmill.config import Settings

    monkeypatch.setenv("LABELMILL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LABELMILL_MEDIA_DIR", raising=False)
    monkeypatch.delenv("LABELMILL_MEDIA_URL", raising=False)
    assert Settings().resolved_media_url() == (tmp_path / "data" / "media").resolve().as_uri()
    monkeypatch.setenv("LABELMILL_MEDIA_URL", (tmp_path / "elsewhere").as_uri())
    store = open_media_store(Settings().resolved_media_url())
    assert isinstance(store, LocalMediaStore) and store.root == (tmp_path / "elsewhere").resolve()


def test_resolve_keeps_references_inside_their_project(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path)
    assert store.resolve("media://7/sub/a.png", 7) == "media/7/sub/a.png"
    assert store.resolve("sub/a.png", 7) == "media/7/sub/a.png"
    for ref in ("media://8/a.png", "media://x/a.png", "media://7", "../8/a.png", "media://7/../8/a.png"):
        with pytest.raises(ValueError):
            store.resolve(ref, 7)


# -- defect 10: no project reaches another project's media ----------------------------------------


def test_import_refuses_another_projects_media(db: Any, media_store: MediaStore) -> None:
    victim = new_project(db, "victim")
    ref = stored_image(db, media_store, victim, "secret.png", (40, 30))
    thief = new_project(db, "thief")
    for data in (
        {"image": ref},
        {"image": "media://" + f"{thief}/own.png", "extra": [{"url": ref}]},  # nested too
    ):
        rec = ImportRecord("items.jsonl", 3, data, "x", gold={"objects": [BOX]})
        with pytest.raises(FormatError, match="belongs to another project") as info:
            import_records(db, thief, [rec], media=media_store)
        assert str(info.value).startswith("items.jsonl:3: data.")
    with db.session() as session:
        assert session.scalars(select(Item).where(Item.project_id == thief)).all() == []
    # the project's own references are fine
    own = ImportRecord("items.jsonl", 1, {"image": f"media://{thief}/mine.png"}, "mine")
    assert import_records(db, thief, [own], media=media_store).created == 1


def test_api_import_refuses_another_projects_media(client: Any, db: Any, media_store: MediaStore) -> None:
    _, token = make_user(db, "mallory", role="creator")
    victim = new_project(db, "victim")
    ref = stored_image(db, media_store, victim, "secret.png", (40, 30))
    r = client.post("/api/v1/projects", json={"name": "mine", "schema": BOXES}, headers=auth(token))
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    line = json.dumps({"data": {"image": ref}, "external_id": "steal"}).encode() + b"\n"
    files = {"files": ("items.jsonl", io.BytesIO(line), "application/octet-stream")}
    r = client.post(f"/api/v1/projects/{pid}/imports", files=files, headers=auth(token))
    assert r.status_code == 422, r.text
    assert "belongs to another project" in r.json()["detail"]


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_image_exports_never_ship_another_projects_media(
    db: Any, media_store: MediaStore, tmp_path: Path, fmt: str
) -> None:
    victim = new_project(db, "victim")
    ref = stored_image(db, media_store, victim, "secret.png", (40, 30))
    thief = new_project(db, "thief")
    stored_image(db, media_store, thief, "own.png", (20, 10))
    plant_item(db, thief, ref, sized=True)
    label_everything(db, thief)
    out = tmp_path / "out"
    assert export_project(db, thief, fmt, out, media=media_store) == 2
    images = sorted(p.name for p in out.rglob("*.png"))
    assert images == ["own.png"]  # the project's own image is copied in; the other project's is not
    secret = png(40, 30)
    assert all(p.read_bytes() != secret for p in out.rglob("*") if p.is_file())


def test_coco_export_reads_no_other_projects_image(db: Any, media_store: MediaStore, tmp_path: Path) -> None:
    victim = new_project(db, "victim")
    ref = stored_image(db, media_store, victim, "secret.png", (40, 30))
    thief = new_project(db, "thief")
    own = stored_image(db, media_store, thief, "own.png", (20, 10))
    # Neither item has a recorded size: COCO reads it from the image file when the store has it.
    with db.session() as session:
        for item in session.scalars(select(Item).where(Item.project_id == thief)):
            item.meta = None
    plant_item(db, thief, ref, sized=False)
    label_everything(db, thief)
    out = tmp_path / "coco.json"
    export_project(db, thief, "coco", out, media=media_store)
    doc = json.loads(out.read_text())
    sizes = {i["file_name"]: (i["width"], i["height"]) for i in doc["images"]}
    assert sizes == {"own.png": (20, 10)}, (own, sizes)  # the other project's size stays unknown


def test_media_route_serves_only_the_projects_own_media(
    client: Any, db: Any, media_store: MediaStore, admin_token: str
) -> None:
    victim = new_project(db, "victim")
    stored_image(db, media_store, victim, "secret.png", (40, 30))
    _, token = make_user(db, "mallory", role="creator")
    r = client.post("/api/v1/projects", json={"name": "mine", "schema": BOXES}, headers=auth(token))
    pid = r.json()["id"]
    assert client.get(f"/api/v1/media/{victim}/secret.png", headers=auth(admin_token)).status_code == 200
    for path in (
        f"/api/v1/media/{victim}/secret.png",
        f"/api/v1/media/{pid}/..%2F{victim}%2Fsecret.png",
        f"/api/v1/media/{pid}/%2E%2E/{victim}/secret.png",
    ):
        r = client.get(path, headers=auth(token))
        assert r.status_code == 404, (path, r.status_code)
        assert r.content != png(40, 30)


# -- defect 12: a deleted project leaves nothing behind --------------------------------------------


def test_delete_project_removes_media_and_export_files(
    client: Any, db: Any, media_store: MediaStore, admin_token: str
) -> None:
    r = client.post("/api/v1/projects", json={"name": "gone", "schema": BOXES}, headers=auth(admin_token))
    pid = r.json()["id"]
    files = {"files": ("a.png", io.BytesIO(png(16, 12)), "application/octet-stream")}
    assert (
        client.post(f"/api/v1/projects/{pid}/imports", files=files, headers=auth(admin_token)).status_code
        == 201
    )
    assert client.get(f"/api/v1/media/{pid}/a.png", headers=auth(admin_token)).status_code == 200
    r = client.post(f"/api/v1/projects/{pid}/exports", json={"format": "jsonl"}, headers=auth(admin_token))
    job_id = r.json()["id"]
    for _ in range(200):
        job = client.get(f"/api/v1/jobs/{job_id}", headers=auth(admin_token)).json()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert job["status"] == "done", job
    export_file = Path(job["result"]["file"])
    assert export_file.is_file()
    with db.session() as session:
        params = session.get(Job, job_id).params  # type: ignore[union-attr]
    assert params["media"] == media_store.url and "media_root" not in params  # a URL, never a path
    assert isinstance(media_store, LocalMediaStore) and (media_store.root / str(pid)).is_dir()

    assert client.delete(f"/api/v1/projects/{pid}", headers=auth(admin_token)).status_code == 204
    assert not (media_store.root / str(pid)).exists()
    assert not export_file.exists()
    # the next project gets a new id, so nothing of the deleted one can be served under it
    r = client.post("/api/v1/projects", json={"name": "next", "schema": BOXES}, headers=auth(admin_token))
    assert r.json()["id"] != pid
    assert client.get(f"/api/v1/media/{pid}/a.png", headers=auth(admin_token)).status_code == 404


def test_project_ids_are_never_reused(db: Any) -> None:
    first = new_project(db, "one")
    last = new_project(db, "two")
    with db.session() as session:
        project = session.get(Project, last)
        assert project is not None
        delete_project(session, project)
    assert new_project(db, "three") > last > first


def test_rolled_back_delete_keeps_the_files(db: Any, media_store: MediaStore) -> None:
    pid = new_project(db, "kept")
    ref = stored_image(db, media_store, pid, "a.png", (8, 8))
    with pytest.raises(RuntimeError), db.session() as session:
        project = session.get(Project, pid)
        assert project is not None
        delete_project(session, project, media=media_store)
        raise RuntimeError("the request failed after the delete")
    assert media_store.exists(media_store.resolve(ref, pid))
    with db.session() as session:
        assert session.get(Project, pid) is not None


# -- export jobs keep the store's URL ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["media", "media_root"])
def test_export_job_reopens_the_media_store(
    db: Any, media_store: MediaStore, tmp_path: Path, key: str
) -> None:
    """Jobs keep the store's URL under "media"; jobs queued by older versions kept a folder under
    "media_root". Either way the worker reopens the store and the images are exported."""
    from labelmill.jobs.worker import run_job
    from labelmill.services.jobs import schedule_export
    from labelmill.store.models import User

    assert isinstance(media_store, LocalMediaStore)
    pid = new_project(db, "imgs")
    stored_image(db, media_store, pid, "own.png", (20, 10))
    label_everything(db, pid)
    location = media_store.url if key == "media" else str(media_store.root)
    params = {"format": "yolo", "out_dir": str(tmp_path / "exports"), key: location}
    make_user(db, "boss")
    with db.session() as session:
        user = session.scalar(select(User).where(User.name == "boss"))
        assert user is not None
    job_id = schedule_export(db, pid, params, user)
    assert run_job(db, job_id)
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "done", job.error if job else None
        names = zipfile.ZipFile(job.result["file"]).namelist()  # type: ignore[index]
    assert "images/own.png" in names
