"""Dataset archives: safe unpacking, or the whole archive refused (BAD_INPUTS: archive row)."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from snapid.data.archive import ArchiveRejected, unpack
from snapid.errors import DatasetError
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


# --- archives split into parts (AI-Hub and other hosts ship them) --------------------------------------------------
def _photos_folder(root: Path) -> Path:
    from tests.conftest import write_image

    for label in ("cat", "dog"):
        for i in range(6):
            write_image(root / "pets" / label / f"{i}.jpg", size=(640, 480), seed=i + (10 if label == "dog" else 0))
    return root / "pets"


def test_an_info_zip_split_archive_imports_from_its_parts(tmp_path, engine):
    """`zip -s` parts (pets.z01, pets.z02, …, pets.zip): given the .zip or the .z01, the photos import, and no joined
    copy of the archive is written."""
    import subprocess

    if shutil.which("zip") is None:
        pytest.fail("Info-ZIP's `zip` is needed to make split archives (Debian package `zip`, see .ci/run)")
    folder = _photos_folder(tmp_path / "src")
    (tmp_path / "parts").mkdir()
    subprocess.run(["zip", "-q", "-r", "-0", "-s", "64k", str(tmp_path / "parts" / "pets.zip"), "pets"],
                   cwd=folder.parent, check=True, capture_output=True)
    parts = sorted(p.name for p in (tmp_path / "parts").iterdir())
    assert len(parts) >= 3 and parts[-1] == "pets.zip" and "pets.z01" in parts
    from snapid.data.importer import import_dataset

    for i, given in enumerate(("pets.zip", "pets.z01")):
        report = import_dataset(tmp_path / "parts" / given, name=f"pets{i}", engine=engine,
                                unpack_to=tmp_path / f"unpacked{i}")
        assert report.images == 12 and report.classes == 2
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == parts  # nothing joined beside the parts


def test_byte_split_parts_import_and_a_missing_part_is_named(tmp_path, engine):
    """`split` parts of a zip and of a .tar.gz (data.zip.001 …): read as one; a missing or later part is refused
    naming what to give."""
    import subprocess

    folder = _photos_folder(tmp_path / "src")
    shutil.make_archive(str(tmp_path / "pets"), "zip", folder.parent, "pets")
    with tarfile.open(tmp_path / "pets.tar.gz", "w:gz") as tf:
        tf.add(folder, arcname="pets")
    for archive in ("pets.zip", "pets.tar.gz"):
        out = tmp_path / f"{archive}-parts"
        out.mkdir()
        subprocess.run(["split", "-b", "40k", "-a", "3", "-d", "--numeric-suffixes=1", str(tmp_path / archive),
                        str(out / f"{archive}.")], check=True)
        assert (out / f"{archive}.003").is_file()
        report = import_dataset(out / f"{archive}.001", name=archive.split(".")[1] + "x", engine=engine,
                                unpack_to=tmp_path / f"unpacked-{archive}")
        assert report.images == 12
    parts = tmp_path / "pets.zip-parts"
    with pytest.raises(DatasetError, match=r"give the first part, pets\.zip\.001"):
        import_dataset(parts / "pets.zip.002", name="bad", engine=engine, unpack_to=tmp_path / "u")
    (parts / "pets.zip.002").unlink()
    with pytest.raises(DatasetError, match=r"pets\.zip\.002: missing"):
        import_dataset(parts / "pets.zip.001", name="bad", engine=engine, unpack_to=tmp_path / "u")


def test_a_split_archive_keeps_the_one_part_checks(tmp_path):
    """Traversal in a split archive is refused like in a whole one."""
    import subprocess

    bomb = tmp_path / "evil.zip"
    with zipfile.ZipFile(bomb, "w") as zf:
        zf.writestr("../outside.txt", b"x" * 50_000)
        zf.writestr("ok.txt", b"y" * 50_000)
    subprocess.run(["split", "-b", "20k", "-a", "3", "-d", "--numeric-suffixes=1", str(bomb), str(tmp_path / "evil.zip.")],
                   check=True)
    with pytest.raises(ArchiveRejected, match="outside"):
        unpack(tmp_path / "evil.zip.001", tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()
