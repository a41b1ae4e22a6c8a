"""Media folder import: probing images and audio, skipping what is not media, refusing escapes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from labelmill.formats import FormatError, detect_format, read_any, scan_media_folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (64, 48), "red").save(root / "b.png")
    Image.new("L", (10, 20)).save(root / "a.jpg")
    Image.new("RGB", (5, 7)).save(root / "sub" / "c.webp")
    soundfile.write(root / "sub" / "clip.wav", np.zeros((8000 * 3 // 2, 2), dtype="float32"), 8000)
    (root / "README.txt").write_text("not media", "utf-8")
    (root / ".hidden.png").write_bytes(b"junk")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes(b"junk")
    return root


def test_scan_images_and_audio(folder: Path) -> None:
    records = list(scan_media_folder(folder))
    assert [(r.line, r.external_id, r.data) for r in records] == [
        (1, "a.jpg", {"image": "a.jpg"}),
        (2, "b.png", {"image": "b.png"}),
        (3, "sub/c.webp", {"image": "sub/c.webp"}),
        (4, "sub/clip.wav", {"audio": "sub/clip.wav"}),
    ]
    assert records[1].meta == {"media": {"image": {"width": 64, "height": 48}}}
    assert records[0].meta == {"media": {"image": {"width": 10, "height": 20}}}
    assert records[3].meta == {"media": {"audio": {"duration": 1.5, "sample_rate": 8000, "channels": 2}}}
    assert records[1].media_files == [("image", folder.resolve() / "b.png")]
    assert all(r.source == "photos" for r in records)


def test_kind_filter_and_detection(folder: Path) -> None:
    assert detect_format(folder) == "folder"
    assert [r.external_id for r in read_any(folder, kind="audio")] == ["sub/clip.wav"]
    assert len(list(scan_media_folder(folder, kind="image"))) == 3


def test_corrupt_image_names_the_file(folder: Path) -> None:
    (folder / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    with pytest.raises(FormatError) as err:
        list(scan_media_folder(folder))
    assert str(err.value).startswith("photos/sub/broken.png:3: image: not a readable image")


def test_corrupt_audio_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(FormatError, match=r"/x.wav:1: audio: not a readable audio file"):
        list(scan_media_folder(tmp_path))


def test_symlink_outside_is_refused(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    Image.new("RGB", (1, 1)).save(outside)
    os.symlink(outside, folder / "z.png")
    with pytest.raises(FormatError, match=r"^photos/z.png:\d+: symbolic link points outside"):
        list(scan_media_folder(folder))


def test_symlinked_dir_outside_is_refused_inside_is_skipped(folder: Path, tmp_path: Path) -> None:
    os.symlink(folder / "sub", folder / "again")  # inside: not followed, no duplicates
    assert len(list(scan_media_folder(folder))) == 4
    os.symlink(tmp_path, folder / "up")
    with pytest.raises(FormatError, match=r"photos/up:\d+: symbolic link points outside"):
        list(scan_media_folder(folder))


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="not a folder"):
        list(scan_media_folder(tmp_path / "missing"))
