"""Sphinx's per-connection and per-thread state: reply slots, connections, forwarded
messages, workers and the store's counters (used by :mod:`impl.sphinx`).

A connection's replies are written in request order through its FIFO of
:class:`ReplySlot` s; ``written_seq``/``next_seq`` number them. A connection may be
*stalled*: its next request waits, unparsed, until ``written_seq >= wait_seq`` (a
``stats`` waits for every earlier reply; a hang-up for those up to the last flush point,
``flush_seq``).

Replies travel as :data:`~impl.sphinx_store.Piece` s (bytes, or ``VALUE`` blocks holding
stored values by reference) from the executing thread to the connection's ``out``, and
are transmitted into ``to_client`` as parts: bytes or
:class:`~impl.sphinx_log.StoredValue` s, never joined.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from impl.nic_emu import Flow
from impl.sphinx_log import StoredValue
from impl.sphinx_proto import Control, GetOp, KeyOp
from impl.sphinx_store import Partition, Piece


class ReplySlot:
    """A place in a connection's reply order: ``parts`` joined once none is missing."""

    __slots__ = ("seq", "parts", "missing", "close_after", "silenced", "flush")

    def __init__(
        self, seq: int, parts: list[Piece | None], missing: int, close_after: bool = False, flush: bool = False
    ) -> None:
        self.seq = seq
        self.parts = parts
        self.missing = missing
        self.close_after = close_after
        self.silenced = False  # its reply was discarded (see ``bad_get_key``)
        self.flush = flush  # transmit once written (a retrieval, ``mn``)


class Connection:
    """Server-side state of one client connection."""

    __slots__ = (
        "id", "flow", "fid", "thread", "inbuf", "swallow", "slots", "next_seq",
        "written_seq", "out", "to_client", "to_client_size", "server_closed", "client_closed",
        "dropped", "stalled", "wait_seq", "flush_seq", "scanned",
    )

    def __init__(self, conn_id: int, flow: Flow, fid: int, thread: int) -> None:
        self.id = conn_id
        self.flow = flow
        self.fid = fid
        self.thread = thread
        self.inbuf = bytearray()
        self.swallow = 0
        self.slots: deque[ReplySlot] = deque()
        self.next_seq = 0  # sequence number of the next request's slot
        self.written_seq = 0  # sequence number of the next slot to write
        self.out: list[Piece] = []  # written in this quantum, not yet transmitted
        #: Transmitted, not yet received by the client: bytes and stored values.
        self.to_client: deque[bytes | StoredValue] = deque()
        self.to_client_size = 0  # bytes in ``to_client``
        self.server_closed = False
        self.client_closed = False
        self.dropped = False  # its server-side state was released
        self.stalled = False  # parsing waits until ``written_seq >= wait_seq``
        self.wait_seq = 0
        self.flush_seq = 0  # replies before this sequence number are sent even on a hang-up
        #: ``inbuf[:scanned]`` holds no ``\n`` after the request being parsed starts (the
        #: search for a line's end resumes there, so a long line is scanned once).
        self.scanned = 0


class Message:
    """A forwarded request (``op``) and, once executed, its ``reply``."""

    __slots__ = ("src", "conn", "slot", "parts", "op", "keys", "reply")

    def __init__(
        self, src: int, conn: Connection, slot: ReplySlot, parts: list[int],
        op: KeyOp | GetOp | Control, keys: list[bytes],
    ) -> None:
        self.src = src
        self.conn = conn
        self.slot = slot
        self.parts = parts
        self.op = op
        self.keys = keys
        self.reply: list[Piece] = []


@dataclass
class SphinxCounters:
    """What the store has done: key requests, where they ran, segment expiries."""

    threads: int
    requests: int = 0  # commands parsed
    local: int = 0  # key requests executed on the connection's thread
    forwarded: int = 0  # key requests sent to the owner through a ring
    ring_full: int = 0  # pushes refused by a full ring (retried later)
    evicted_segments: int = 0
    per_thread: list[int] = field(default_factory=list)  # commands parsed per thread
    executed_per_thread: list[int] = field(default_factory=list)  # key requests run per owner

    def __post_init__(self) -> None:
        if not self.per_thread:
            self.per_thread = [0] * self.threads
        if not self.executed_per_thread:
            self.executed_per_thread = [0] * self.threads


class Worker:
    """One thread: its partition, its connections, its rings' consumer and producer ends."""

    def __init__(self, index: int, partition: Partition) -> None:
        self.index = index
        self.partition = partition
        self.ready: dict[int, Connection] = {}
        #: Messages waiting for space in the ring to each thread (back-pressure).
        self.pending: dict[int, deque[Message]] = {}
        self.doorbell_addr = 0
