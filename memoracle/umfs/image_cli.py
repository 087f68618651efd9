"""``memoracle umfs …``: make, check and read UMFS image files (:mod:`memoracle.umfs.image`).

- ``umfs mkfs IMAGE --size SIZE [--inodes N] [--from DIR] [--force]``: write a fresh,
  cleanly unmounted UMFS image of SIZE bytes (``4m``, ``64k``, ``1g``, or a number),
  holding a copy of the tree DIR if given (directories and regular files).
- ``umfs fsck IMAGE [--json]``: mount the image (recovering in memory if it was not
  unmounted cleanly; the file is never written), check every structure and every relation
  between them (:func:`impl.umfs_check.fsck`), then read every path and every file's
  contents through the checked lookups.
- ``umfs ls IMAGE [PATH] [-l]``: the names in a directory (a file: its own name).
- ``umfs cat IMAGE PATH``: a file's bytes on standard output, read through the emulated
  MMU as a process would.
- ``umfs corrupt [--seed S] [--flips N] [--anywhere N] [--per-field N|all] [--mutant M]
  [--trial N] [--json]``: the corruption campaign (:mod:`memoracle.umfs.corruption`);
  0 = no damage was read wrong, crashed or looped, 1 = some was (each listed with how to
  reproduce it).

Exit codes: 0 = done, the image is consistent; 1 = the image is corrupt — one line (or the
JSON ``error``) with the reason and the damaged structure's location (its byte offset in
the file, when known); 2 = bad usage or bad input: a file that cannot be an image
(missing, not a regular file, a size that is not a whole number of pages or is out of
bounds), a path that does not exist in the image, ``cat`` of a directory, a ``--from``
tree that does not fit.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from impl.umfs import Umfs
from impl.umfs_check import fsck
from impl.umfs_layout import CorruptImage
from memoracle.arguments import int_in, output_file, seed
from memoracle.exitcodes import EXIT_OK, EXIT_USAGE, EXIT_VIOLATION
from memoracle.umfs import image
from memoracle.umfs.corruption_mutants import CORRUPTION_MUTANTS
from spec.umfs_api import O_RDONLY, FsError

#: The most random flips ``corrupt`` makes per specimen (its trials are listed up front).
MAX_FLIPS = 100_000
#: ``cat`` reads a file this many bytes at a time.
CAT_CHUNK = 1 << 20


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``memoracle umfs`` and its sub-commands on ``sub``."""
    umfs = sub.add_parser("umfs", help="make, check and read UMFS image files (mkfs, fsck, ls, cat); seeded campaigns")
    commands = umfs.add_subparsers(dest="umfs_command", required=True, metavar="COMMAND", parser_class=type(umfs))

    mkfs = commands.add_parser("mkfs", help="write a fresh UMFS image file")
    mkfs.add_argument("image", metavar="IMAGE", type=output_file, help="the image file to write")
    mkfs.add_argument("--size", required=True, help="its size: bytes, or with k, m or g (binary), e.g. 4m")
    mkfs.add_argument("--inodes", type=int_in(1, 1 << 32), help="inode slots (default: one per 16 pages, at least 32)")
    mkfs.add_argument("--from", dest="source", metavar="DIR", help="copy this directory tree into the image")
    mkfs.add_argument("--force", action="store_true", help="overwrite IMAGE if it exists")
    mkfs.set_defaults(func=cmd_mkfs)

    check = commands.add_parser("fsck", help="check an image: 0 clean, 1 corrupt (reason and offset)")
    check.add_argument("image", metavar="IMAGE", help="the image file (never written)")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=cmd_fsck)

    ls = commands.add_parser("ls", help="list a directory of an image")
    ls.add_argument("image", metavar="IMAGE", help="the image file (never written)")
    ls.add_argument("path", metavar="PATH", nargs="?", default="/", help="an absolute path (default /)")
    ls.add_argument("-l", "--long", action="store_true", help="kind, link count and size before each name")
    ls.set_defaults(func=cmd_ls)

    cat = commands.add_parser("cat", help="print a file of an image")
    cat.add_argument("image", metavar="IMAGE", help="the image file (never written)")
    cat.add_argument("path", metavar="PATH", help="an absolute path")
    cat.set_defaults(func=cmd_cat)

    corrupt = commands.add_parser(
        "corrupt", help="corruption campaign: damage images' metadata; nothing may read it wrong (0 holds, 1 violation)"
    )
    corrupt.add_argument("--seed", type=seed, default=0, help="seed of the random flips and choices (default 0)")
    corrupt.add_argument("--flips", type=int_in(0, MAX_FLIPS), default=400,
                         help=f"random bit flips in metadata bytes, per specimen (default 400, at most {MAX_FLIPS:,})")  # fmt: skip
    corrupt.add_argument("--anywhere", type=int_in(0, MAX_FLIPS), default=100,
                         help=f"random bit flips anywhere, per specimen (default 100, at most {MAX_FLIPS:,})")  # fmt: skip
    corrupt.add_argument("--per-field", default="2", help="targeted changes per metadata field, or 'all' (default 2)")
    corrupt.add_argument("--mutant", help=f"a UMFS with one check missing: {', '.join(CORRUPTION_MUTANTS)}")
    corrupt.add_argument("--trial", type=int_in(0, 1 << 40), action="append",
                         help="run only trial N of each specimen (repeatable; default: every trial)")  # fmt: skip
    corrupt.add_argument("--json", action="store_true", help="print JSON")
    corrupt.set_defaults(func=cmd_corrupt)

    from memoracle.umfs.campaign import add_command as add_campaign

    add_campaign(commands)  # umfs campaign: UMFS against the model over many seeds


def _usage(message: str) -> int:
    sys.stderr.write(f"memoracle: umfs: {message}\n")
    return EXIT_USAGE


def _corrupt(path: str, error: CorruptImage) -> int:
    sys.stderr.write(f"memoracle: umfs: {path} is corrupt: {error}\n")
    return EXIT_VIOLATION


def _fs_error(path: str, error: FsError) -> int:
    return _usage(f"{path}: {os.strerror(error.code) if error.code else error}")


def cmd_mkfs(args: argparse.Namespace) -> int:
    """Write a fresh image."""
    path = Path(args.image)
    try:
        size = image.parse_size(args.size)
    except image.ImageError as error:
        return _usage(str(error))
    if path.exists() and not args.force:
        return _usage(f"{path} exists (use --force to overwrite it)")
    if not path.parent.is_dir():
        return _usage(f"{path}: no such directory {str(path.parent)!r}")
    try:
        machine = image.make(size, args.inodes, None if args.source is None else Path(args.source))
    except image.ImageError as error:
        return _usage(str(error))
    except ValueError as error:  # too many inodes for the size
        return _usage(f"{path}: {error}")
    try:
        image.save(path, machine)
    except image.ImageError as error:
        return _usage(str(error))
    fs = Umfs.mount(machine)
    print(f"{path}: UMFS of {size} bytes, {fs.sb.inode_count} inodes, {fs.sb.data_pages} data pages")
    return EXIT_OK


def _mount(path_text: str) -> Umfs:
    """Load and mount (ImageError: not an image file; CorruptImage: a damaged one)."""
    return Umfs.mount(image.load(Path(path_text)))


def cmd_fsck(args: argparse.Namespace) -> int:
    """Check an image; print the verdict."""
    result: dict[str, object] = {"image": args.image, "verdict": "clean", "error": None}
    try:
        machine = image.load(Path(args.image))
    except image.ImageError as error:
        return _usage(str(error))
    try:
        fs = Umfs.mount(machine)
        result["unmounted_cleanly"] = fs.mounted_clean
        result["recovered"] = [{"inode": ino, "op": op} for ino, op in fs.recovered]
        report = fsck(fs)
        tree = fs.observe()
        result["counts"] = report.as_json() | {"paths": len(tree)}
    except CorruptImage as error:
        result["verdict"] = "corrupt"
        result["error"] = {"reason": error.reason, "structure": error.structure, "offset": error.offset}
        if args.json:
            print(json.dumps(result, indent=2))
            return EXIT_VIOLATION
        return _corrupt(args.image, error)
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    counts = report.as_json()
    how = "unmounted cleanly" if fs.mounted_clean else "not unmounted cleanly"
    if fs.recovered:
        how += "; recovery (in memory) undid " + ", ".join(f"'{op}' logged by inode {ino}" for ino, op in fs.recovered)
    print(
        f"{args.image}: clean ({how}): {counts['files']} files, {counts['directories']} directories, "
        f"{counts['entries']} entries; {counts['used_pages']} of {counts['used_pages'] + counts['free_pages']} "
        f"data pages in use; {counts['free_inodes']} free inodes"
    )
    return EXIT_OK


def cmd_ls(args: argparse.Namespace) -> int:
    """List a directory (or name a file)."""
    try:
        fs = _mount(args.image)
        info = fs.stat(args.path)
        if info.kind == "file":
            names = [(args.path, info)]
        else:
            base = args.path.rstrip("/")
            names = [(name, fs.stat(f"{base}/{name}")) for name in fs.listdir(args.path)]
    except image.ImageError as error:
        return _usage(str(error))
    except CorruptImage as error:
        return _corrupt(args.image, error)
    except FsError as error:
        return _fs_error(args.path, error)
    lines = []
    for name, stat in names:
        shown = name + ("/" if stat.kind == "dir" and name != args.path else "")
        lines.append(f"{stat.kind[0]} {stat.nlink:4} {stat.size:12} {shown}" if args.long else shown)
    return _write(("\n".join(lines) + "\n").encode() if lines else b"")


def cmd_cat(args: argparse.Namespace) -> int:
    """Print a file, read through a process's mapping of it."""
    try:
        fs = _mount(args.image)
        pid = fs.spawn()
        fd = fs.open(pid, args.path, O_RDONLY)
        chunks = []
        while chunk := fs.read(pid, fd, CAT_CHUNK):
            chunks.append(chunk)
    except image.ImageError as error:
        return _usage(str(error))
    except CorruptImage as error:
        return _corrupt(args.image, error)
    except FsError as error:
        return _fs_error(args.path, error)
    return _write(b"".join(chunks))


def _write(data: bytes) -> int:
    """Write ``data`` to standard output: a closed pipe ends quietly, a full device is
    one line and exit 2."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's own flush is quiet too
        return EXIT_OK
    except OSError as error:
        if error.errno != errno.EPIPE:
            return _usage(f"standard output: {error.strerror or error}")
    return EXIT_OK


def cmd_corrupt(args: argparse.Namespace) -> int:
    """Run the corruption campaign; print the verdicts per kind of damage, then one
    verdict line (on stderr with ``--json``)."""
    import resource

    from rich.console import Console
    from rich.table import Table

    from memoracle.progress import Progress, verdict_line
    from memoracle.umfs.corruption import run_campaign

    if args.per_field != "all" and not (args.per_field.isdigit() and int(args.per_field) >= 0):
        return _usage(f"--per-field {args.per_field!r}: want a count or 'all'")
    if args.mutant is not None and args.mutant not in CORRUPTION_MUTANTS:
        return _usage(f"unknown mutant {args.mutant!r} (known: {', '.join(CORRUPTION_MUTANTS)})")
    umfs_cls = Umfs if args.mutant is None else CORRUPTION_MUTANTS[args.mutant].umfs_cls
    per_field = None if args.per_field == "all" else int(args.per_field)
    with Progress(None, "umfs corrupt", unit="trials", enabled=not args.json) as progress:
        report = run_campaign(
            args.seed, args.flips, args.anywhere, per_field, umfs_cls, args.trial, progress=progress.update,
        )  # fmt: skip
    if report.trials == 0:  # every --trial named past the end: nothing was checked
        return _usage(f"--trial {' '.join(map(str, args.trial or []))}: no such trial in any specimen")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reproduce = (
        f"memoracle umfs corrupt --seed {args.seed} --flips {args.flips} --anywhere {args.anywhere} "
        f"--per-field {args.per_field}" + (f" --mutant {args.mutant}" if args.mutant else "")
    )
    line = verdict_line(
        len(report.violations),
        [(report.trials, "trial"), (len(report.undetected_forgeries), "forgery read as valid", "forgeries read as valid")],
        report.seconds,
    ) + f", peak RSS {peak_mib:.0f} MiB"
    if args.json:
        print(json.dumps(report.as_json() | {"peak_rss_mib": round(peak_mib, 1)}, indent=2))
        print(line, file=sys.stderr)
        return EXIT_OK if report.ok else EXIT_VIOLATION
    verdicts = ["mount", "lookup", "fsck", "harmless", "data", "SILENT", "CRASH", "BUDGET"]
    table = Table(title=f"umfs corrupt (seed {args.seed}{', mutant ' + args.mutant if args.mutant else ''})")
    table.add_column("damage", no_wrap=True)
    for verdict in verdicts:
        table.add_column(verdict, justify="right")
    for kind, counts in sorted(report.counts.items()):
        table.add_row(kind, *(str(counts.get(v, 0)) for v in verdicts))
    console = Console()
    console.print(table)
    console.print("(forged SILENT: forgeries nothing could tell from valid contents; reported, not failed)")
    for name, result in report.violations[:10]:
        console.print(
            f"{result.verdict}: {name} trial {result.trial.index} ({result.trial.kind}) {result.trial.what}: "
            f"{result.detail}\n  reproduce: {reproduce} --trial {result.trial.index}",
            markup=False, highlight=False,
        )  # fmt: skip
    print(line)
    return EXIT_OK if report.ok else EXIT_VIOLATION
