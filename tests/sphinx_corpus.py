"""The command corpus of the Sphinx-vs-memcached differential test.

Each :class:`Case` runs on its own fresh connection; its steps are written one at a
time and the replies to a step are read before the next step is written (so a step
is a pipelined batch, and steps are the client waiting). ``{cas}`` in a step stands
for the CAS unique of the last ``VALUE`` line that server sent on this connection.
Keys are unique per case (so cases do not disturb each other); ``fresh`` cases start
after a ``flush_all``. The junk is generated from a fixed seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    """One scenario of the differential test."""

    name: str
    steps: tuple[bytes, ...]
    fresh: bool = False


def _junk(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(size))


def _set(key: bytes, value: bytes, flags: int = 0, exptime: int = 0, suffix: bytes = b"") -> bytes:
    return b"set %s %d %d %d%s\r\n%s\r\n" % (key, flags, exptime, len(value), suffix, value)


MIB = 1024 * 1024
KEY_250 = b"k" * 250
KEY_251 = b"k" * 251
ZEROS = b"0" * 5000
NINES = b"9" * 5000

CASES: list[Case] = [
    # --- storage and retrieval ------------------------------------------------------
    Case("set_get", (_set(b"sg", b"hello", flags=5) + b"get sg\r\n",)),
    Case("set_noreply_get", (_set(b"sn", b"v", suffix=b" noreply") + b"get sn\r\n",)),
    Case("get_miss", (b"get nothing_here\r\n",)),
    Case("get_no_key", (b"get\r\n",)),
    Case("multi_get", (_set(b"mg1", b"a") + _set(b"mg2", b"bb") + _set(b"mg3", b"ccc"),
                       b"get mg1 mg_missing mg2 mg3 mg1\r\n")),  # fmt: skip
    Case("set_overwrite", (_set(b"so", b"one") + _set(b"so", b"two", flags=9) + b"get so\r\n",)),
    Case("empty_value", (_set(b"ev", b"") + b"get ev\r\n",)),
    Case("flags_max", (_set(b"fm", b"x", flags=4294967295) + b"get fm\r\n",)),
    Case("flags_over_32_bits", (_set(b"fo", b"x", flags=4294967296) + b"get fo\r\n",)),
    Case("flags_negative", (b"set fn -1 0 1\r\nx\r\nget fn\r\n",)),
    Case("exptime_negative", (_set(b"en", b"x", exptime=-1) + b"get en\r\n",)),
    Case("exptime_relative", (_set(b"er", b"x", exptime=1000) + b"get er\r\n",)),
    Case("exptime_absolute_past", (_set(b"ep", b"x", exptime=1_000_000_000) + b"get ep\r\n",)),
    Case("exptime_absolute_future", (_set(b"ef", b"x", exptime=4_102_444_800) + b"get ef\r\n",)),
    Case("value_binary", (_set(b"vb", bytes(range(256)) * 4) + b"get vb\r\n",)),
    Case("value_with_crlf", (_set(b"vc", b"a\r\nb\r\n") + b"get vc\r\n",)),
    Case("add", (b"add ad 0 0 1\r\n1\r\nadd ad 0 0 1\r\n2\r\nget ad\r\n",)),
    Case("add_noreply", (b"add an 0 0 1 noreply\r\n1\r\nadd an 0 0 1 noreply\r\n2\r\nget an\r\n",)),
    Case("replace", (b"replace rp 0 0 1\r\n1\r\n" + _set(b"rp", b"x") + b"replace rp 3 0 1\r\n2\r\nget rp\r\n",)),
    Case("replace_noreply", (b"replace rn 0 0 1 noreply\r\n1\r\nget rn\r\n",)),
    Case("append_prepend", (_set(b"ap", b"mid", flags=3) + b"append ap 9 0 3\r\nend\r\nprepend ap 9 0 3\r\nbeg\r\n"
                            b"get ap\r\n",)),  # fmt: skip
    Case("append_missing", (b"append am 0 0 1\r\nx\r\nprepend am 0 0 1\r\nx\r\nget am\r\n",)),
    Case("append_noreply", (_set(b"apn", b"a") + b"append apn 0 0 1 noreply\r\nb\r\n"
                            b"prepend apn 0 0 1 noreply\r\nc\r\nget apn\r\n",)),  # fmt: skip
    # --- gets and cas ---------------------------------------------------------------
    Case("gets_cas_ok", (_set(b"gc", b"v1"), b"gets gc\r\n", b"cas gc 7 0 2 {cas}\r\nv2\r\nget gc\r\n")),
    Case("cas_stale", (_set(b"cs", b"v1"), b"gets cs\r\n", _set(b"cs", b"v2") + b"cas cs 0 0 2 {cas}\r\nv3\r\n"
                       b"get cs\r\n")),  # fmt: skip
    Case("cas_missing", (b"cas cm 0 0 1 12345\r\nx\r\n",)),
    Case("cas_after_delete", (_set(b"cd", b"v"), b"gets cd\r\n", b"delete cd\r\ncas cd 0 0 1 {cas}\r\nx\r\n")),
    Case("gets_many", (_set(b"gm1", b"a") + _set(b"gm2", b"b"), b"gets gm1 gm_missing gm2\r\n")),
    Case("cas_noreply", (_set(b"cn", b"v1"), b"gets cn\r\n", b"cas cn 0 0 2 {cas} noreply\r\nv2\r\nget cn\r\n")),
    Case("cas_bad_unique", (_set(b"cb", b"v"), b"cas cb 0 0 1 abc\r\nx\r\n")),
    Case("cas_missing_unique", (b"cas cu 0 0 1\r\nx\r\n",)),
    # --- delete, incr/decr, touch, gat ----------------------------------------------
    Case("delete", (_set(b"dl", b"x") + b"delete dl\r\ndelete dl\r\nget dl\r\n",)),
    Case("delete_noreply", (_set(b"dn", b"x") + b"delete dn noreply\r\nget dn\r\n",)),
    Case("delete_with_time", (b"delete dt 0\r\ndelete dt 5\r\n",)),
    Case("incr_decr", (_set(b"ic", b"10") + b"incr ic 5\r\ndecr ic 3\r\nget ic\r\n",)),
    Case("decr_shrinks_in_place", (_set(b"ds", b"10") + b"decr ds 1\r\nget ds\r\n",)),
    Case("decr_floor", (_set(b"df", b"3") + b"decr df 10\r\nget df\r\n",)),
    Case("incr_wrap", (_set(b"iw", b"18446744073709551615") + b"incr iw 2\r\nget iw\r\n",)),
    Case("incr_missing", (b"incr im 1\r\ndecr im 1\r\n",)),
    Case("incr_non_numeric", (_set(b"in", b"abc") + b"incr in 1\r\n",)),
    Case("incr_bad_delta", (_set(b"ib", b"1") + b"incr ib -1\r\nincr ib abc\r\nincr ib 18446744073709551616\r\n",)),
    Case("incr_noreply", (_set(b"inr", b"1") + b"incr inr 1 noreply\r\ndecr inr 5 noreply\r\nget inr\r\n",)),
    Case("incr_grows", (_set(b"ig", b"99") + b"incr ig 1\r\nget ig\r\n",)),
    Case("touch", (_set(b"tc", b"x") + b"touch tc 0\r\ntouch tc_missing 0\r\nget tc\r\n",)),
    Case("touch_expires", (_set(b"tx", b"x") + b"touch tx -1\r\nget tx\r\n",)),
    Case("touch_noreply", (_set(b"tn", b"x") + b"touch tn 100 noreply\r\nget tn\r\n",)),
    Case("gat_gats", (_set(b"gt", b"x", flags=2) + b"gat 100 gt gt_missing\r\ngats 0 gt\r\n",)),
    Case("gat_bad_exptime", (_set(b"ge", b"x") + b"gat abc ge\r\n",)),
    Case("gat_no_key", (b"gat 0\r\n",)),
    # --- flush_all, verbosity, version, stats, quit --------------------------------------
    Case("flush_all", (_set(b"fa", b"x") + b"flush_all\r\nget fa\r\n",), fresh=True),
    Case("flush_all_noreply", (_set(b"fn2", b"x") + b"flush_all noreply\r\nget fn2\r\n",), fresh=True),
    Case("flush_all_zero", (_set(b"fz", b"x") + b"flush_all 0\r\nget fz\r\n",), fresh=True),
    Case("verbosity", (b"verbosity 1\r\nverbosity\r\nverbosity 1 noreply\r\n",)),
    Case("version", (b"version\r\n",)),
    Case("version_extra_args", (b"version foo bar\r\n",)),
    Case("stats", (b"stats\r\n",), fresh=True),
    Case("stats_reset", (b"stats reset\r\n",)),
    Case("stats_unknown", (b"stats bogus\r\n",)),
    Case("meta_noop", (b"mn\r\n",)),
    Case("shutdown_refused", (b"shutdown\r\n",)),
    Case("quit", (b"quit\r\nget anything\r\n",)),
    Case("quit_after_set", (_set(b"qs", b"x") + b"quit\r\n",)),
    Case("quit_after_verbosity", (b"verbosity 1\r\nquit\r\n",)),
    # a hang-up or a bad-key retrieval discards the replies queued since the last
    # retrieval (which transmitted them); replies of an earlier step were transmitted
    Case("hangup_drops_queued", (b"verbosity 1\r\nGET / HTTP/1.0\r\n",)),
    Case("hangup_keeps_get", (_set(b"hk", b"x") + b"get hk\r\nverbosity 1\r\nGET / HTTP/1.0\r\n",)),
    Case("hangup_keeps_multi_get", (_set(b"hm1", b"1") + _set(b"hm2", b"2") + b"get hm1 hm2 hm3\r\n"
                                    b"delete hm1\r\nGET / HTTP/1.0\r\n",)),  # fmt: skip
    Case("hangup_in_next_step", (b"verbosity 1\r\n", b"GET / HTTP/1.0\r\n")),
    Case("long_line_keeps_get", (b"gets ll1\r\nverbosity 1\r\n" + b"x" * 3000,)),
    Case("long_line_drops_queued", (_set(b"ld", b"x") + b"x" * 3000,)),
    Case("meta_noop_then_hangup", (b"verbosity 1\r\nmn\r\nverbosity 1\r\nGET / HTTP/1.0\r\n",)),
    Case("bad_key_get_drops_queued", (b"verbosity 1\r\nget bk " + KEY_251 + b"\r\nverbosity 1\r\n",)),
    Case("bad_key_get_keeps_get", (_set(b"bg", b"x") + b"get bg\r\nget " + KEY_251 + b"\r\n",)),
    # --- malformed lines --------------------------------------------------------------
    Case("uppercase_command", (b"GET a\r\nSET a 0 0 1\r\n",)),
    Case("unknown_command", (b"frobnicate\r\n",)),
    Case("empty_line", (b"\r\n",)),
    Case("bare_newline", (b"get bn\n",)),
    Case("tab_separator", (b"get\tts\r\n",)),
    Case("double_space", (_set(b"dsp", b"x") + b"get  dsp\r\n",)),
    Case("set_too_few_args", (b"set k 0 0\r\n",)),
    Case("set_too_many_args", (b"set tm 0 0 1 noreply extra\r\nx\r\n",)),
    Case("set_bad_flags", (b"set bf abc 0 1\r\nx\r\n",)),
    Case("set_bad_exptime", (b"set be 0 abc 1\r\nx\r\n",)),
    Case("set_negative_length", (b"set nl 0 0 -1\r\nx\r\n",)),
    Case("bad_data_chunk", (b"set bd 0 0 3\r\nabcd\r\nget bd\r\n",)),
    Case("short_data_then_more", (b"set sd 0 0 5\r\nab", b"cde\r\nget sd\r\n")),
    Case("key_250", (_set(KEY_250, b"x") + b"get " + KEY_250 + b"\r\n",)),
    Case("key_251_set", (_set(KEY_251, b"x") + b"get " + KEY_251 + b"\r\n",)),
    Case("key_251_get", (b"get ok " + KEY_251 + b"\r\n",)),
    Case("key_251_delete", (b"delete " + KEY_251 + b"\r\n",)),
    Case("key_control_char", (b"get a\x01b\r\n",)),
    Case("nul_in_line", (b"get a\x00b\r\nverbosity\x00 1\r\n",)),
    Case("http_request", (b"GET / HTTP/1.0\r\n\r\n",)),
    Case("long_line_no_newline", (b"x" * 10000,)),
    Case("long_get_line", (b"get " + b" ".join(b"lg%d" % i for i in range(1000)) + b"\r\n",)),
    Case("binary_junk", (_junk(4096, seed=1),)),
    # numbers of thousands of digits (C's strtoull skips leading zeros; more than 20
    # significant digits are out of range; CPython refuses int() of over 4,300 digits)
    Case("numbers_with_5000_leading_zeros", (_set(b"nz", b"5") + b"gat " + ZEROS + b"7 nz\r\nincr nz " + ZEROS
                                             + b"3\r\nget nz\r\n",)),  # fmt: skip
    Case("numbers_of_5000_digits", (_set(b"nd", b"5") + b"gat " + NINES + b" nd\r\nincr nd " + NINES + b"\r\n",)),
    Case("flags_and_length_with_5000_leading_zeros", (b"set nf " + ZEROS + b"3 0 " + ZEROS + b"2\r\nab\r\nget nf\r\n",)),
    Case("incr_of_a_5000_digit_value", (_set(b"nv", NINES) + b"incr nv 1\r\n" + _set(b"nw", ZEROS + b"42")
                                        + b"incr nw 1\r\nget nw\r\n",)),  # fmt: skip
    Case("binary_junk_lines", (b"\r\n".join(_junk(60, seed=i) for i in range(40)) + b"\r\n",)),
    # --- sizes ------------------------------------------------------------------------
    Case("value_just_under_1mib", (_set(b"vu", b"u" * (MIB - 1024)) + b"get vu\r\n",)),
    Case("value_1mib", (_set(b"v1m", b"m" * MIB) + b"get v1m\r\n",)),
    Case("value_over_1mib", (_set(b"vo", b"o" * (MIB + 1)) + b"get vo\r\n",)),
    Case("value_2mib", (_set(b"v2", b"t" * (2 * MIB)) + b"get v2\r\n",)),
    Case("oversize_set_drops_old", (_set(b"od", b"old") + _set(b"od", b"n" * (2 * MIB)) + b"get od\r\n",)),
    # --- pipelining -------------------------------------------------------------------
    Case("pipelined_mix", (_set(b"p1", b"1") + _set(b"p2", b"22") + b"get p1 p2\r\nincr p1 41\r\ndelete p2\r\n"
                           b"get p1 p2\r\nadd p2 0 0 1\r\nz\r\nget p2\r\nversion_not\r\n",)),  # fmt: skip
    Case("pipelined_many_keys", (b"".join(_set(b"pk%d" % i, b"%d" % i) for i in range(50))
                                 + b"get " + b" ".join(b"pk%d" % i for i in range(50)) + b"\r\n",)),  # fmt: skip
    Case("pipelined_noreply", (b"".join(_set(b"pn%d" % i, b"x", suffix=b" noreply") for i in range(20))
                               + b"delete pn3 noreply\r\nget pn2 pn3 pn19\r\n",)),  # fmt: skip
]
