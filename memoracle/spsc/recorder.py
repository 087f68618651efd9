"""Record a real history: an SPSC ring shared by two OS processes.

The ring lives in a ``multiprocessing.shared_memory`` block with the layout of
``impl/spsc.py`` (``head`` at offset 0, ``tail`` at 64, slots from 128) and Lamport's
protocol with free-running counters. One process pushes ``1, 2, 3, ...`` (an attempt
that finds the ring full is a ``push -> false`` operation), the other pops; both run at
full speed on different cores when the machine has them.

Stamps: one shared monotonic counter at offset 64 of a second cache line block, taken
under one ``multiprocessing.Lock`` just before an operation's first access and just
after its last, so that ``a.ret < b.call`` implies that ``a`` really finished before
``b`` started (no clock skew between processes: Porcupine issue #40). The counter
serializes the stamps, not the ring accesses.

Assumptions, written down: every shared word is read and written through a
``memoryview`` cast to ``"Q"``, whose item access is one aligned 8-byte ``memcpy`` —
a single load or store on x86-64 and AArch64, so never torn. (``struct.pack_into`` and
``unpack_from`` are *not* usable here: they copy byte by byte, and a torn read of
``head`` once let the producer overwrite a slot the consumer had not read — the checker
caught it.) x86-TSO orders the slot write before the tail write (on weaker hardware
this recorder would need fences that Python cannot issue, and the checker would rightly
report the result).

``mutant="wrong_slot"`` makes the consumer read the slot after the right one — a broken
ring whose histories the checker must reject.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
from multiprocessing import shared_memory
from multiprocessing.synchronize import Barrier, Lock
from typing import Any, Literal

from spec.history import header_line

HEAD, TAIL, STAMP, SLOTS = 0, 64, 128, 192
Mutant = Literal["none", "wrong_slot"]


def _buffer(shm: shared_memory.SharedMemory) -> memoryview:
    buf = shm.buf
    assert buf is not None, "shared memory block is closed"
    return buf


def _words(shm: shared_memory.SharedMemory) -> memoryview:
    """The block as 8-byte words: each item access is one untorn 8-byte load or store."""
    return _buffer(shm).cast("Q")


def _stamp(words: memoryview, lock: Lock) -> int:
    with lock:
        value: int = words[STAMP // 8] + 1
        words[STAMP // 8] = value
    return value


def _producer(name: str, lock: Lock, start: Barrier, capacity: int, count: int, out: str) -> None:
    shm = shared_memory.SharedMemory(name=name)
    start.wait()
    buf = _words(shm)
    lines = []
    tail = 0
    value = 1
    for ident in range(count):
        call = _stamp(buf, lock)
        head = buf[HEAD // 8]
        if tail - head == capacity:
            ok = False
            os.sched_yield()  # let the consumer run: fewer "full" attempts
        else:
            buf[SLOTS // 8 + (tail & (capacity - 1))] = value
            tail += 1
            buf[TAIL // 8] = tail
            ok = True
        ret = _stamp(buf, lock)
        lines.append(
            f'{{"id":{2 * ident},"thread":"producer","kind":"push","arg":{value},'
            f'"result":{"true" if ok else "false"},"call":{call},"return":{ret}}}\n'
        )
        if ok:
            value += 1
    with open(out, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    buf.release()
    shm.close()


def _consumer(
    name: str, lock: Lock, start: Barrier, capacity: int, count: int, out: str, mutant: Mutant
) -> None:
    shm = shared_memory.SharedMemory(name=name)
    start.wait()
    buf = _words(shm)
    lines = []
    head = 0
    skew = 1 if mutant == "wrong_slot" else 0
    for ident in range(count):
        call = _stamp(buf, lock)
        tail = buf[TAIL // 8]
        if tail == head:
            result = "null"
            os.sched_yield()
        else:
            result = str(buf[SLOTS // 8 + ((head + skew) & (capacity - 1))])
            head += 1
            buf[HEAD // 8] = head
        ret = _stamp(buf, lock)
        lines.append(
            f'{{"id":{2 * ident + 1},"thread":"consumer","kind":"pop","arg":null,'
            f'"result":{result},"call":{call},"return":{ret}}}\n'
        )
    with open(out, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    buf.release()
    shm.close()


def record_history(
    path: str, operations: int, capacity: int = 8, *, mutant: Mutant = "none"
) -> None:
    """Run the two processes for ``operations`` operations in total (half each) and
    write the history to ``path`` in format 1 (producer's lines, then consumer's)."""
    if capacity < 1 or capacity & (capacity - 1):
        raise ValueError(f"capacity must be a power of two, not {capacity}")
    context: Any = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    lock = context.Lock()
    start = context.Barrier(2)
    shm = shared_memory.SharedMemory(create=True, size=SLOTS + 8 * capacity)
    try:
        _buffer(shm)[: SLOTS + 8 * capacity] = bytes(SLOTS + 8 * capacity)
        with tempfile.TemporaryDirectory() as tmp:
            p_out, c_out = os.path.join(tmp, "p.jsonl"), os.path.join(tmp, "c.jsonl")
            pushes = operations - operations // 2
            producer = context.Process(target=_producer, args=(shm.name, lock, start, capacity, pushes, p_out))
            consumer = context.Process(
                target=_consumer, args=(shm.name, lock, start, capacity, operations // 2, c_out, mutant)
            )
            producer.start()
            consumer.start()
            producer.join()
            consumer.join()
            if producer.exitcode or consumer.exitcode:
                raise RuntimeError(f"recorder processes failed ({producer.exitcode}, {consumer.exitcode})")
            with open(path, "w", encoding="utf-8") as out:
                out.write(header_line(capacity) + "\n")
                for part in (p_out, c_out):
                    with open(part, encoding="utf-8") as handle:
                        out.writelines(handle)
    finally:
        shm.close()
        shm.unlink()
