"""Dataset archives: safe unpacking, or the whole archive refused (BAD_INPUTS: archive row)."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import pytest

from snapid.data.archive import ArchiveRejected, unpack
from snapid.data.importer import import_dataset
from tests.conftest import encode, photo
from tests.data.test_importer import make_folder


def zip_of(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return path


def test_a_zipped_folder_imports(tmp_path, engine, home):
    root = make_folder(tmp_path / "pets", per_class=4)
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(root.rglob("*.jpg")):
            zf.write(p, f"pets/{p.relative_to(root)}")
    report = import_dataset(archive, name="pets", engine=engine, unpack_to=home.unpacked)
    assert report.images == 8 and report.classes == 2 and "unpacked" in report.notes[0]
    again = import_dataset(archive, name="pets", engine=engine, unpack_to=home.unpacked)
    assert again.reused == 8  # the same archive unpacks to the same folder: nothing read twice


def test_tar_gz_imports(tmp_path, engine, home):
    root = make_folder(tmp_path / "pets", per_class=3)
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(root, arcname="pets")
    assert import_dataset(archive, name="pets", engine=engine, unpack_to=home.unpacked).images == 6


@pytest.mark.parametrize("bad_name", ["../evil.jpg", "/abs/evil.jpg", "a/../../evil.jpg", "C:/evil.jpg"])
def test_members_leaving_the_folder_refuse_the_archive(tmp_path, bad_name):
    archive = zip_of(tmp_path / "bad.zip", {"ok/a.jpg": encode(photo()), bad_name: b"x"})
    with pytest.raises(ArchiveRejected) as err:
        unpack(archive, tmp_path / "out")
    assert "refused" in err.value.message
    assert not (tmp_path / "evil.jpg").exists() and not list((tmp_path / "out").rglob("*.jpg"))


def test_symlink_members_refuse_the_archive(tmp_path):
    archive = zip_of(tmp_path / "link.zip", {"a.jpg": encode(photo())}, links={"passwd.jpg": "/etc/passwd"})
    with pytest.raises(ArchiveRejected):
        unpack(archive, tmp_path / "out")
    tar = tmp_path / "link.tar"
    with tarfile.open(tar, "w") as tf:
        info = tarfile.TarInfo("passwd.jpg")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(ArchiveRejected):
        unpack(tar, tmp_path / "out")


def test_zip_bomb_is_refused_before_writing(tmp_path):
    archive = zip_of(tmp_path / "bomb.zip", {"zeros.jpg": bytes(20 * 1024 * 1024)})
    assert archive.stat().st_size * 100 < 20 * 1024 * 1024
    with pytest.raises(ArchiveRejected) as err:
        unpack(archive, tmp_path / "out")
    assert "zip bomb" in err.value.message
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []


def test_damaged_zip_is_refused_not_half_unpacked(tmp_path):
    data = encode(photo((200, 150)), "PNG")
    archive = zip_of(tmp_path / "crc.zip", {"a.png": data, "b.png": data})
    raw = bytearray(archive.read_bytes())
    raw[60] ^= 0xFF  # inside the first member's data: its CRC no longer matches
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveRejected):
        unpack(archive, tmp_path / "out")
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []  # not even the temporary folder is left
