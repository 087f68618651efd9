"""The ``memoracle sphinx ...`` commands (``sphinx campaign``: :mod:`memoracle.sphinx.campaign`).

``memoracle sphinx serve --port 11211 --threads 4 [--memory BYTES] [--host 127.0.0.1]
[--seed N] [--steering reuseport|incoming_cpu]`` serves the emulated Sphinx store (:class:`impl.sphinx.Sphinx`) over real
TCP with :mod:`memoracle.sphinx.server`, prints ``sphinx: listening on HOST:PORT,
T threads`` once it accepts connections, and exits 0 on SIGINT/SIGTERM. ``--port 0``
picks a free port (the line printed names it). Bad arguments, an address in use or an
unknown host print one line on stderr and exit 2. At start the soft ``RLIMIT_NOFILE`` is
raised to the hard limit; the bounds on what clients can make the server hold are in
:mod:`memoracle.sphinx.server`.
"""

from __future__ import annotations

import argparse
import errno
import sys
import time

from spec.kv_api import DEFAULT_MEMORY, DEFAULT_THREADS, SEGMENT_SIZE

from memoracle.arguments import add_subcommands
from memoracle.exitcodes import EXIT_OK, EXIT_USAGE

_SUFFIXES = {"k": 1024, "m": 1024**2, "g": 1024**3}


def parse_bytes(text: str) -> int:
    """``BYTES`` as a number, optionally with a binary suffix: ``67108864``, ``64m``,
    ``1g``, ``512k`` (case-insensitive). Raises ``ValueError`` with the reason."""
    cleaned = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = _SUFFIXES.get(cleaned[-1:], 1)
    digits = cleaned[:-1] if scale != 1 else cleaned
    if not digits.isdigit():
        raise ValueError(f"--memory wants a number of bytes (e.g. 67108864 or 64m), not {text!r}")
    return int(digits) * scale


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``memoracle sphinx`` and its sub-commands on ``sub``."""
    sphinx = sub.add_parser("sphinx", help="the Sphinx key-value store (serve, campaign, experiment, calibrate)")
    commands = add_subcommands(sphinx, "sphinx_command", "serve, campaign, experiment or calibrate")
    serve = commands.add_parser("serve", help="serve the emulated Sphinx store over real TCP (memcached protocol)")
    serve.add_argument("--port", default="11211", help="TCP port (default 11211; 0 = any free port)")
    serve.add_argument("--threads", default=str(DEFAULT_THREADS), help=f"emulated cores (default {DEFAULT_THREADS})")
    serve.add_argument(
        "--memory", default=str(DEFAULT_MEMORY),
        help=f"item memory in bytes, suffixes k/m/g allowed (default {DEFAULT_MEMORY // 1024**2}m)",
    )  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--seed", default="0", help="seed of the store's scheduler (default 0)")
    serve.add_argument(
        "--steering",
        choices=("reuseport", "incoming_cpu"),
        default="reuseport",
        help="bind connections as SO_REUSEPORT does (default) or to their RX queue's IRQ core",
    )
    serve.set_defaults(func=cmd_serve)

    from memoracle.sphinx.campaign import add_command as add_campaign
    from memoracle.sphinx.sim.cli import add_commands as add_sim_commands

    add_campaign(commands)  # sphinx campaign
    add_sim_commands(commands)  # sphinx experiment, sphinx calibrate


def _usage(message: str) -> int:
    sys.stderr.write(f"memoracle sphinx serve: {message}\n")
    return EXIT_USAGE


def _int_arg(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} wants an integer, not {text!r}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    """Validate the arguments, build the store, serve until SIGINT/SIGTERM."""
    try:
        port = _int_arg("--port", args.port)
        threads = _int_arg("--threads", args.threads)
        seed = _int_arg("--seed", args.seed)
        memory = parse_bytes(args.memory)
    except ValueError as error:
        return _usage(str(error))
    if not 0 <= port <= 65535:
        return _usage(f"--port must be between 0 and 65535, not {port}")
    if not 1 <= threads <= 256:
        return _usage(f"--threads must be between 1 and 256, not {threads}")
    if memory < threads * SEGMENT_SIZE:
        return _usage(
            f"--memory {memory} is too small: each of the {threads} threads needs at least one "
            f"{SEGMENT_SIZE // 1024**2} MiB segment ({threads * SEGMENT_SIZE} bytes in all)"
        )
    if seed < 0:
        return _usage(f"--seed must be non-negative, not {seed}")
    try:
        from impl.sphinx import Sphinx
    except ImportError as error:
        return _usage(f"the Sphinx store is not available: {error}")
    from memoracle.sphinx.server import serve

    try:
        core = Sphinx(threads, memory, seed=seed, clock=lambda: int(time.time()), steering=args.steering)
    except ValueError as error:
        return _usage(str(error))
    except MemoryError:
        return _usage(f"--memory {memory}: this machine cannot allocate that much emulated memory")

    def announce(bound_port: int) -> None:
        plural = "thread" if threads == 1 else "threads"
        print(f"sphinx: listening on {args.host}:{bound_port}, {threads} {plural}", flush=True)

    try:
        serve(core, args.host, port, on_listening=announce)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return _usage(f"port {port} on {args.host} is already in use")
        return _usage(f"cannot listen on {args.host}:{port}: {error.strerror or error}")
    except KeyboardInterrupt:
        pass
    return EXIT_OK
