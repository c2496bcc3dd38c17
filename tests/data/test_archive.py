"""Dataset archives: safe unpacking, or the whole archive refused (BAD_INPUTS: archive row)."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from snapid.data.archive import ArchiveRejected, unpack
from snapid.errors import DatasetError
from snapid.importer import import_dataset
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


@pytest.mark.parametrize("suffix, mode", [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar.bz2", "w:bz2"),
                                          (".tar.xz", "w:xz"), (".tar", "w")])
def test_tars_import(tmp_path, engine, home, suffix, mode):
    root = make_folder(tmp_path / "pets", per_class=3)
    archive = tmp_path / f"pets{suffix}"
    with tarfile.open(archive, mode) as tf:
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
    from snapid.importer import import_dataset

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
    subprocess.run(["split", "-b", "20k", "-a", "3", "-d", "--numeric-suffixes=1", str(bomb),
                    str(tmp_path / "evil.zip.")], check=True)
    with pytest.raises(ArchiveRejected, match="outside"):
        unpack(tmp_path / "evil.zip.001", tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()


# --- decompression bombs in compressed tars: refused while reading, not after -------------------------------------
def _zero_streams(compression: str, size: int, repeats: int) -> bytes:
    """``repeats`` concatenated compressed streams, each of ``size`` zero bytes, compressed once from 1 MiB blocks
    (never ``size`` bytes in memory); gzip, bzip2 and xz readers all read concatenated streams as one."""
    import bz2
    import lzma
    import zlib

    make = {"gz": lambda: zlib.compressobj(9, zlib.DEFLATED, 31), "bz2": lambda: bz2.BZ2Compressor(9),
            "xz": lambda: lzma.LZMACompressor(lzma.FORMAT_XZ)}[compression]
    packer, block = make(), bytes(1 << 20)
    one = b"".join(packer.compress(block) for _ in range(size >> 20)) + packer.flush()
    return one * repeats


def _declared_bomb(path: Path, compression: str, declared: int) -> Path:
    """A tar whose one member, photos/zeros.jpg, declares ``declared`` bytes, and holds them: zeros, as concatenated
    compressed streams. A few KB (bz2, xz) or MB (gzip) on disk; a reader that decompresses to the end before
    checking the ratio spends seconds to hours on it (a 12 KB .tar.bz2 declaring 4 GiB took 10 s)."""
    chunk = 16 << 20
    header = tarfile.TarInfo("photos/zeros.jpg")
    header.size = declared
    path.write_bytes(_compress(compression, header.tobuf(tarfile.GNU_FORMAT))
                     + _zero_streams(compression, chunk, declared // chunk) + _compress(compression, bytes(1024)))
    return path


def _compress(compression: str, data: bytes) -> bytes:
    import bz2
    import gzip
    import lzma

    return {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[compression](data)


@pytest.mark.parametrize("compression", ["bz2", "gz", "xz"])
def test_a_compressed_tar_declaring_gigabytes_is_refused_while_reading(tmp_path, engine, compression):
    """BAD_INPUTS, archive row: "a zip bomb with ratio over 100: the whole archive is rejected". A tar member
    declaring 8 GiB of zeros is refused at its header, before one gigabyte is decompressed, and nothing is left
    unpacked."""
    import time

    archive = _declared_bomb(tmp_path / f"bomb.tar.{compression}", compression, 8 << 30)
    assert archive.stat().st_size < 10 << 20
    started = time.perf_counter()
    with pytest.raises(ArchiveRejected, match="zip bomb") as err:
        import_dataset(archive, name="bomb", engine=engine, unpack_to=tmp_path / "unpacked")
    assert time.perf_counter() - started < 5, "the archive was decompressed before it was refused"
    assert str(archive) in err.value.message
    assert list((tmp_path / "unpacked").iterdir()) == []


def test_a_tar_header_block_declaring_gigabytes_is_refused_while_reading(tmp_path):
    """BAD_INPUTS, archive row: the decompressed stream itself is bounded, not only the members' declared sizes. A GNU
    long-name block (read whole by tarfile inside its header parsing, before any member is seen) declaring 8 GiB is
    refused once 100x the archive's size has been read, without reading the 8 GiB into memory."""
    import time

    long_name = tarfile.TarInfo("././@LongLink")
    long_name.type, long_name.size = tarfile.GNUTYPE_LONGNAME, 8 << 30
    archive = tmp_path / "names.tar.bz2"
    archive.write_bytes(_compress("bz2", long_name.tobuf(tarfile.GNU_FORMAT))
                        + _zero_streams("bz2", 16 << 20, (8 << 30) // (16 << 20)) + _compress("bz2", bytes(1024)))
    started = time.perf_counter()
    with pytest.raises(ArchiveRejected, match="expands more than 100x.*zip bomb"):
        unpack(archive, tmp_path / "out")
    assert time.perf_counter() - started < 5
    assert list((tmp_path / "out").iterdir()) == []


def test_a_tar_of_many_tiny_files_is_not_taken_for_a_bomb(tmp_path):
    """Tar headers (a pax one for each non-ASCII name, as AI-Hub's Korean file names get) and padding compress far
    better than photos: 2,000 tiny label files expand over 300x as a stream, yet their files are 23 bytes each."""
    import io

    archive = tmp_path / "labels.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tf:
        for i in range(2000):
            data = f"{i % 3} 0.5 0.5 0.2 0.3\n".encode()
            info = tarfile.TarInfo(f"data/라벨/이미지_{i:06d}.txt")
            info.size, info.mtime = len(data), 1_700_000_000 + i
            tf.addfile(info, io.BytesIO(data))
    folder = unpack(archive, tmp_path / "out")
    assert len(list((folder / "data" / "라벨").iterdir())) == 2000
