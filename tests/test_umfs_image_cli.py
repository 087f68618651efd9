"""``memoracle umfs mkfs|fsck|ls|cat|corrupt``: image files, exit codes, one-line errors."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from memoracle.cli import main
from memoracle.umfs.image import MAX_IMAGE_BYTES, ImageError, load, parse_size


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memoracle", *args], capture_output=True, text=True, check=False)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    (source / "docs" / "deep").mkdir(parents=True)
    (source / "hello.txt").write_text("hello umfs\n")
    (source / "docs" / "blob.bin").write_bytes(bytes(range(256)) * 40)
    (source / "docs" / "deep" / "empty").write_bytes(b"")
    return source


@pytest.fixture()
def image(tmp_path: Path, tree: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "fs.img"
    assert main(["umfs", "mkfs", str(path), "--size", "1m", "--from", str(tree)]) == 0
    capsys.readouterr()
    return path


def test_mkfs_writes_an_image_of_the_size_asked(image: Path) -> None:
    assert image.stat().st_size == 1 << 20
    assert image.read_bytes()[:8] == b"UMFS\x00v2\x00"  # the superblock is the header


def test_fsck_of_a_good_image_is_clean(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["umfs", "fsck", str(image)]) == 0
    out = capsys.readouterr().out
    assert "clean (unmounted cleanly): 3 files, 3 directories, 5 entries" in out
    assert main(["umfs", "fsck", str(image), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == "clean" and result["error"] is None and result["unmounted_cleanly"] is True
    assert result["counts"]["paths"] == 6 and result["counts"]["files"] == 3


def test_ls_and_cat_read_what_mkfs_copied(image: Path, tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["umfs", "ls", str(image)]) == 0
    assert capsys.readouterr().out.split() == ["docs/", "hello.txt"]
    assert main(["umfs", "ls", str(image), "/docs", "-l"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["f    1        10240 blob.bin", "d    2            0 deep/"]
    assert main(["umfs", "cat", str(image), "/hello.txt"]) == 0
    assert capsys.readouterr().out == "hello umfs\n"
    done = subprocess.run([sys.executable, "-m", "memoracle", "umfs", "cat", str(image), "/docs/blob.bin"],
                          capture_output=True, check=False)  # fmt: skip
    assert done.returncode == 0 and done.stdout == (tree / "docs" / "blob.bin").read_bytes()


def test_a_damaged_image_is_exit_1_with_the_structure_and_offset(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = bytearray(image.read_bytes())
    raw[4096 + 128 + 8] ^= 1  # inode 2's link count
    image.write_bytes(raw)
    assert main(["umfs", "fsck", str(image)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inode 2 at offset 0x1080: checksum mismatch" in err
    assert main(["umfs", "fsck", str(image), "--json"]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert error == {"reason": error["reason"], "structure": "inode 2", "offset": 0x1080}
    for command in (["ls", str(image)], ["cat", str(image), "/hello.txt"]):
        assert main(["umfs", *command]) == 1
        assert "is corrupt: inode 2" in capsys.readouterr().err


def test_fsck_says_what_recovery_did_to_an_image_left_mid_operation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from impl.umfs import Umfs
    from memoracle.umfs.image import machine_for, save
    from spec.umfs_api import O_CREAT, O_RDWR

    machine = machine_for(256 * 1024)
    fs = Umfs.mkfs(machine)
    pid = fs.spawn()
    fd = fs.open(pid, "/open", O_CREAT | O_RDWR)
    fs.write(pid, fd, b"cached size")  # the size lives in the U-Log while open
    path = tmp_path / "crashed.img"
    save(path, machine)  # as a crash leaves it: never unmounted, the file open
    assert main(["umfs", "fsck", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["unmounted_cleanly"] is False and result["counts"]["files"] == 1
    assert main(["umfs", "cat", str(path), "/open"]) == 0
    assert capsys.readouterr().out == "cached size"
    assert machine.scm.durable() == path.read_bytes()  # reading never writes the image


@pytest.mark.parametrize(
    "args, message",
    [
        (["umfs", "fsck", "/nonexistent/x.img"], "No such file or directory"),
        (["umfs", "fsck", "/dev/zero"], "not a regular file"),
        (["umfs", "fsck", "/"], "not a regular file"),
        (["umfs", "mkfs", "/nonexistent/x.img", "--size", "1m"], "no such directory"),
        (["umfs", "mkfs", "x.img", "--size", "1000"], "not a multiple of 4096"),
        (["umfs", "mkfs", "x.img", "--size", "2g"], "outside"),
        (["umfs", "mkfs", "x.img", "--size", "lots"], "want a number"),
        (["umfs", "mkfs", "x.img", "--size", "64k", "--inodes", "0"], "must be at least 1"),
        (["umfs", "mkfs", "x.img", "--size", "4m", "--inodes", "100000000"], "with 100000000 inodes"),
        (["umfs", "corrupt", "--flips", "99999999999"], "must be at most 100,000"),
        (["umfs", "corrupt", "--flips", "1", "--anywhere", "1", "--per-field", "0", "--trial", "99999"], "no such trial"),
        (["umfs", "corrupt", "--mutant", "nonesuch"], "unknown mutant"),
        (["umfs", "corrupt", "--per-field", "-1"], "want a count"),
        (["umfs", "frobnicate"], "invalid choice"),
    ],
)
def test_bad_usage_is_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "memoracle", *args], capture_output=True, text=True, check=False,
                          cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_path_errors_and_overwrites_are_exit_2(image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in (
        (["ls", str(image), "/nope"], "/nope: No such file or directory"),
        (["ls", str(image), "relative"], "relative:"),
        (["cat", str(image), "/docs"], "/docs: Is a directory"),
        (["mkfs", str(image), "--size", "1m"], "exists (use --force"),
    ):
        assert main(["umfs", *args]) == 2, args
        assert message in capsys.readouterr().err
    assert main(["umfs", "mkfs", str(image), "--size", "64k", "--force"]) == 0
    assert image.stat().st_size == 64 * 1024


def test_a_tree_that_does_not_fit_is_exit_2_and_writes_nothing(tree: Path, tmp_path: Path) -> None:
    (tree / "big").write_bytes(b"x" * 200_000)
    target = tmp_path / "small.img"
    assert main(["umfs", "mkfs", str(target), "--size", "64k", "--from", str(tree)]) == 2
    assert not target.exists()


def test_sizes_and_loads_are_checked_before_reading() -> None:
    assert parse_size("4m") == 4 << 20 and parse_size("64K") == 64 << 10 and parse_size("65536") == 65536
    with pytest.raises(ImageError):
        parse_size(str(MAX_IMAGE_BYTES + 4096))
    with pytest.raises(ImageError, match="not a regular file"):
        load(Path("/dev/zero"))


def test_cat_into_a_closed_pipe_is_quiet(image: Path) -> None:
    done = subprocess.run(
        f"{sys.executable} -m memoracle umfs cat {image} /docs/blob.bin | head -c 10 > /dev/null",
        shell=True, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == ""


def test_corrupt_command_reports_and_reproduces(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["umfs", "corrupt", "--flips", "20", "--anywhere", "5", "--per-field", "0", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["violations"] == [] and result["trials"] > 50
    assert main([*args, "--mutant", "inodes_unchecked", "--flips", "200"]) == 1
    violations = json.loads(capsys.readouterr().out)["violations"]
    assert violations and {v["verdict"] for v in violations} == {"SILENT"}
    first = violations[0]
    again = ["umfs", "corrupt", "--flips", "200", "--anywhere", "5", "--per-field", "0", "--json",
             "--mutant", "inodes_unchecked", "--trial", str(first["trial"])]  # fmt: skip
    assert main(again) == 1
    assert json.loads(capsys.readouterr().out)["violations"][0]["what"] == first["what"]


def test_the_image_format_is_the_scm_bytes(image: Path) -> None:
    raw = image.read_bytes()
    (base,) = struct.unpack_from("<Q", raw, 16)
    assert base == 1 << 40  # the physical address the image is loaded at
    machine = load(image)
    assert machine.scm.durable() == raw and machine.scm_base == base
