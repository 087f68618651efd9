"""The emulated multi-queue NIC: Toeplitz RSS against Microsoft's verification vectors,
the indirection table, IRQ affinity versus balancing, in-order delivery, counters."""

from __future__ import annotations

import pytest

from impl.nic_emu import (
    INDIRECTION_ENTRIES,
    MS_RSS_KEY,
    MSS,
    Flow,
    Nic,
    ipv4,
    rss_hash,
    toeplitz_hash,
)

# Microsoft, "Verifying the RSS Hash Calculation": IPv4 with TCP ports (source -> destination).
MS_VECTORS = [
    ("66.9.149.187", 2794, "161.142.100.80", 1766, 0x51CCC178),
    ("199.92.111.2", 14230, "65.69.140.83", 4739, 0xC626B0EA),
    ("24.19.198.95", 12898, "12.22.207.184", 38024, 0x5C2B394A),
    ("38.27.205.30", 48228, "209.142.163.6", 2217, 0xAFC7327F),
    ("153.39.163.191", 44251, "202.188.127.2", 1303, 0x10E828A2),
]
# The same suite, IPv4 addresses only.
MS_IP_ONLY = [
    ("66.9.149.187", "161.142.100.80", 0x323E8FC2),
    ("199.92.111.2", "65.69.140.83", 0xD718262A),
    ("24.19.198.95", "12.22.207.184", 0xD2D0A5DE),
    ("38.27.205.30", "209.142.163.6", 0x82989176),
    ("153.39.163.191", "202.188.127.2", 0x5D1809C5),
]


@pytest.mark.parametrize("src, sport, dst, dport, expected", MS_VECTORS)
def test_rss_hash_matches_microsoft_tcp_vectors(src: str, sport: int, dst: str, dport: int, expected: int) -> None:
    assert rss_hash(Flow(ipv4(src), ipv4(dst), sport, dport)) == expected


@pytest.mark.parametrize("src, dst, expected", MS_IP_ONLY)
def test_toeplitz_matches_microsoft_ip_only_vectors(src: str, dst: str, expected: int) -> None:
    data = ipv4(src).to_bytes(4, "big") + ipv4(dst).to_bytes(4, "big")
    assert toeplitz_hash(MS_RSS_KEY, data) == expected


def test_toeplitz_rejects_short_key_and_bad_address() -> None:
    with pytest.raises(ValueError):
        toeplitz_hash(b"\x00" * 8, b"\x00" * 12)
    with pytest.raises(ValueError):
        ipv4("10.0.0.256")


def _flow(i: int) -> Flow:
    return Flow(ipv4("10.0.0.2") + i, ipv4("10.0.0.1"), 40000 + i, 11211)


def test_indirection_table_picks_the_queue() -> None:
    nic = Nic(4, 4)
    flows = [_flow(i) for i in range(40)]
    for f in flows:
        fid = nic.open_flow(f, 0)
        assert nic.rx_queue_of(fid) == (rss_hash(f) & 127) % 4
    nic.set_indirection([3] * INDIRECTION_ENTRIES)
    assert all(nic.rx_queue_of(fid) == 3 for fid in range(40))
    with pytest.raises(ValueError):
        nic.set_indirection([0] * 5)
    nic.check_invariants()


def test_packets_split_at_mss_and_delivered_in_order_by_the_irq_core() -> None:
    nic = Nic(2, 2)
    fid = nic.open_flow(_flow(1), owner_core=0)
    queue = nic.rx_queue_of(fid)
    irq_core = nic.irq_core[queue]
    data = bytes(range(256)) * 20  # 5120 bytes -> 4 packets
    nic.receive(fid, data)
    assert nic.counters.rx_packets[queue] == -(-len(data) // MSS)
    assert nic.counters.rx_bytes[queue] == len(data)
    assert nic.pending_cores() == {irq_core}
    assert nic.service(1 - irq_core, 100) == []  # the other core cannot serve it
    got = nic.service(irq_core, 2)
    assert len(got) == 2
    got += nic.service(irq_core, 100)
    assert b"".join(p for _, p in got) == data
    assert nic.counters.irqs[irq_core] == 2
    assert nic.counters.cross_core_deliveries == (len(got) if irq_core != 0 else 0)
    assert not nic.pending_cores()


def test_irq_affinity_mask_binds_to_lowest_core() -> None:
    nic = Nic(2, 4)
    nic.set_affinity(0, 0b1100)
    assert nic.irq_core[0] == 2
    nic.set_affinity(1, 0b0010)
    assert nic.irq_core[1] == 1
    with pytest.raises(ValueError):
        nic.set_affinity(0, 0b10000)  # core 4 does not exist
    nic.check_invariants()
    nic.irq_core[0] = 3  # a corrupted binding is caught
    with pytest.raises(AssertionError):
        nic.check_invariants()


def _load(nic: Nic, rounds: int) -> list[list[int]]:
    """Send one packet on every flow per round and serve all cores; the IRQ map after each round."""
    fids = [nic.open_flow(_flow(i), 0) for i in range(32)]
    history = []
    for _ in range(rounds):
        for fid in fids:
            nic.receive(fid, b"x")
        while nic.pending_cores():
            for core in sorted(nic.pending_cores()):
                nic.service(core, 8)
        history.append(list(nic.irq_core))
    return history


def test_affinity_mode_never_moves_irqs() -> None:
    nic = Nic(4, 4, irq_mode="affinity", rebalance_interval=1)
    history = _load(nic, 10)
    assert all(h == [0, 1, 2, 3] for h in history)
    assert nic.counters.irq_moves == 0


def test_balance_mode_moves_irqs_deterministically_by_seed() -> None:
    nic = Nic(4, 4, irq_mode="balance", seed=7, rebalance_interval=4)
    nic.irq_core = [0, 0, 0, 0]  # everything on core 0: the balancer must spread it
    history = _load(nic, 10)
    assert nic.counters.irq_moves > 0
    assert len(set(history[-1])) > 1
    again = Nic(4, 4, irq_mode="balance", seed=7, rebalance_interval=4)
    again.irq_core = [0, 0, 0, 0]
    assert _load(again, 10) == history
    nic.check_invariants()


def test_closed_flow_packets_are_dropped() -> None:
    nic = Nic(1, 1)
    fid = nic.open_flow(_flow(0), 0)
    nic.receive(fid, b"abc")
    nic.close_flow(fid)
    assert nic.service(0, 10) == []
    nic.transmit(0, MSS + 1)
    assert nic.counters.tx_packets[0] == 2 and nic.counters.tx_bytes[0] == MSS + 1
