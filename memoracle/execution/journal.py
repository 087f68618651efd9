"""The journal: shard results written as they arrive, so that a run can be resumed.

A journal is a text file of JSON lines. The first line names the campaign::

    {"memoracle_journal": 1, "campaign": "ksm campaign", "identity": {...}, "shards": 40,
     "code": "0.1.0+3f2a9c01b7d4"}

and each further line is one finished shard, written and flushed as soon as it arrives::

    {"shard": 17, "key": "ksm-campaign-1c9e4f2a-seed0-shard17of40", "result": ..., "seconds": 0.52}

(``"error"`` instead of ``"result"`` for a shard that raised). Shards that crashed their
workers are not journalled: a resumed run tries them again.

``--journal FILE`` starts a new journal (refusing a file that exists); ``--resume FILE``
reads one, checks that it belongs to the same campaign (identity, shard count, code: a
journal of another campaign or other code is refused, exit 2), runs only the shards it
lacks and appends them. A last line cut short by a crash of the driver is ignored; any
other malformed line is refused with its line number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from memoracle.execution.backends import ExecutionError
from memoracle.execution.campaign import Campaign, Plain
from memoracle.execution.version import code_version

FORMAT = 1


class JournalError(ExecutionError):
    """A journal that cannot be written, read, or resumed by this campaign."""


def header(campaign: Campaign) -> dict[str, Plain]:
    """The first line of ``campaign``'s journal."""
    return {
        "memoracle_journal": FORMAT,
        "campaign": campaign.name,
        "identity": campaign.identity,
        "shards": campaign.shards,
        "code": code_version(),
    }


class Journal:
    """An open journal, appended to as shards finish (see the module docstring)."""

    def __init__(self, path: Path, stream: TextIO) -> None:
        self.path = path
        self._stream = stream

    @classmethod
    def create(cls, path: Path, campaign: Campaign) -> Journal:
        """A new journal at ``path`` (which must not exist yet)."""
        try:
            stream = path.open("x", encoding="utf-8")
        except FileExistsError:
            raise JournalError(f"{path} exists: continue it with --resume {path}, or remove it") from None
        except OSError as error:
            raise JournalError(f"{path}: {error.strerror or error}") from None
        journal = cls(path, stream)
        journal._write(header(campaign))
        return journal

    @classmethod
    def resume(cls, path: Path, campaign: Campaign) -> tuple[Journal, dict[int, dict[str, Plain]]]:
        """Open ``path`` to append, with the envelopes of the shards it already holds."""
        done = read(path, campaign)
        try:
            stream = path.open("a", encoding="utf-8")
        except OSError as error:
            raise JournalError(f"{path}: {error.strerror or error}") from None
        return cls(path, stream), done

    def record(self, shard: int, key: str, envelope: dict[str, Plain]) -> None:
        """Append one finished shard (crashed and skipped shards are not journalled)."""
        if "crashed" in envelope or "skipped" in envelope:
            return
        line: dict[str, Plain] = {"shard": shard, "key": key}
        line.update({name: envelope[name] for name in ("result", "error", "seconds") if name in envelope})
        self._write(line)

    def _write(self, value: dict[str, Plain]) -> None:
        try:
            self._stream.write(json.dumps(value, separators=(",", ":")) + "\n")
            self._stream.flush()
        except OSError as error:
            raise JournalError(f"{self.path}: {error.strerror or error}") from None

    def close(self) -> None:
        """Close the file."""
        self._stream.close()


def read(path: Path, campaign: Campaign) -> dict[int, dict[str, Plain]]:
    """The envelopes journalled in ``path`` for ``campaign``, by shard (JournalError if the
    file is not a journal of this campaign and code)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError as error:
        raise JournalError(f"{path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise JournalError(f"{path}: not a memoracle journal (not UTF-8 text)") from None
    if not lines:
        raise JournalError(f"{path}: empty, not a memoracle journal")
    try:
        head = json.loads(lines[0])
    except json.JSONDecodeError:
        raise JournalError(f"{path}: line 1 is not a memoracle journal header") from None
    if not isinstance(head, dict) or head.get("memoracle_journal") != FORMAT:
        raise JournalError(f"{path}: line 1 is not a memoracle journal header (format {FORMAT})")
    expected = header(campaign)
    for field in ("campaign", "identity", "shards", "code"):
        if head.get(field) != expected[field]:
            raise JournalError(
                f"{path}: a journal of another {_what(field)} ({_short(head.get(field))}, "
                f"this run: {_short(expected[field])}); resume it with the command and the memoracle that wrote it"
            )
    done: dict[int, dict[str, Plain]] = {}
    for number, text in enumerate(lines[1:], start=2):
        last = number == len(lines)
        try:
            entry = json.loads(text)
            shard = entry["shard"]
            if not isinstance(shard, int) or not 0 <= shard < campaign.shards or entry["key"] != campaign.key(shard):
                raise ValueError
            envelope = {name: entry[name] for name in ("result", "error", "seconds") if name in entry}
            if ("result" in envelope) == ("error" in envelope):
                raise ValueError
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if last and not text.endswith("\n"):
                break  # the driver died while writing it
            raise JournalError(f"{path}: line {number} is not a shard of this campaign") from None
        done[shard] = envelope
    return done


def _what(field: str) -> str:
    return {"campaign": "campaign", "identity": "configuration", "shards": "shard count", "code": "memoracle code"}[field]


def _short(value: Plain) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = ["FORMAT", "Journal", "JournalError", "header", "read"]
