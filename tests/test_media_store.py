"""Local media store: safe names only, nothing outside the root, atomic writes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from labelmill.store.media import LocalMediaStore, MediaStore, safe_media_name

BAD_NAMES = [
    "",
    "/etc/passwd",
    "../escape.png",
    "a/../../b.png",
    "a/./b.png",
    "a//b.png",
    "dir/",
    "..",
    "a\\..\\b.png",
    "C:evil.png",
    "c:/windows/x.png",
    "nul\x00byte.png",
    "tab\there.png",
    "x" * 256 + ".png",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_safe_media_name_rejects(name: str) -> None:
    with pytest.raises(ValueError, match="unsafe media name"):
        safe_media_name(name)


@pytest.mark.parametrize("name", ["a.png", "12/sub dir/é 中.png", "12/..hidden-ish.png", "a..b.png"])
def test_safe_media_name_accepts(name: str) -> None:
    assert safe_media_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_store_rejects_bad_names_and_writes_nothing(tmp_path: Path, name: str) -> None:
    store = LocalMediaStore(tmp_path / "media")
    src = tmp_path / "src.bin"
    src.write_bytes(b"data")
    with pytest.raises(ValueError, match="unsafe media name"):
        store.put_file(src, name)
    with pytest.raises(ValueError, match="unsafe media name"):
        store.put_bytes(b"x", name)
    with pytest.raises(ValueError, match="unsafe media name"):
        store.path("media/" + name)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["src.bin"]


def test_put_open_delete(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "root")
    assert isinstance(store, MediaStore)
    src = tmp_path / "in.png"
    src.write_bytes(b"\x89PNG fake")
    key = store.put_file(src, "7/sub/in.png")
    assert key == "media/7/sub/in.png"
    assert store.path(key) == (tmp_path / "root" / "7" / "sub" / "in.png").resolve()
    with store.open(key) as fp:
        assert fp.read() == b"\x89PNG fake"
    assert store.put_bytes(b"new", "7/sub/in.png") == key  # replaces atomically
    assert store.path(key).read_bytes() == b"new"
    assert store.exists(key)
    assert store.delete(key) is True
    assert store.delete(key) is False
    assert not store.exists(key)
    with pytest.raises(FileNotFoundError):
        store.open(key)
    leftovers = [p.name for p in (tmp_path / "root").rglob("*") if p.is_file()]
    assert leftovers == []


def test_symlink_inside_root_cannot_lead_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "7")
    store = LocalMediaStore(root)
    with pytest.raises(ValueError, match="resolves outside the media root"):
        store.put_bytes(b"x", "7/evil.png")
    assert list(outside.iterdir()) == []


def test_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalMediaStore(tmp_path / "root")
    key = store.put_bytes(b"old", "p/a.bin")
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 10)

    def copy_half_then_die(inp: Any, out: Any, length: int = 0) -> None:
        out.write(inp.read(5))
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of an import

    monkeypatch.setattr(shutil, "copyfileobj", copy_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        store.put_file(src, "p/a.bin")
    with pytest.raises(KeyboardInterrupt):
        store.put_file(src, "p/new.bin")
    assert store.path(key).read_bytes() == b"old"  # previous content intact
    assert sorted(p.name for p in (tmp_path / "root" / "p").iterdir()) == ["a.bin"]  # no temp or half file
