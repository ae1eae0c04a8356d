"""A PING loop in its own process: what another client of Redis sees while a test runs.

``python -m tests.support.pinger HOST PORT``: connects, prints ``ready`` once the first PONG came
back, then sends a PING every ~0.2 ms (one at a time, on one blocking socket; it
sleeps in between, so the scheduler wakes it promptly when its PONG arrives) until a line
arrives on stdin; then prints one JSON list of ``[sent_at, latency]`` pairs, both in
seconds, ``sent_at`` on ``time.monotonic()`` (system-wide on Linux, so the test can cut
the list into windows with its own monotonic clock). Its own process, so that the test's
event loop and GIL never delay a PING.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import sys
import time

PAUSE = 0.0002  # seconds between a PONG and the next PING


def main(host: str, port: int) -> None:
    # best effort (root only): a busy machine then delays the measurer less than the measured
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples: list[tuple[float, float]] = []

    def ping() -> None:
        sent = time.monotonic()
        sock.sendall(b"PING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(64)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            reply += chunk
        if reply != b"+PONG\r\n":
            raise RuntimeError(f"unexpected reply {reply!r}")
        samples.append((sent, time.monotonic() - sent))

    ping()
    print("ready", flush=True)
    while True:
        ping()
        readable, _, _ = select.select([sys.stdin], [], [], PAUSE)
        if readable:
            break
    sock.close()
    print(json.dumps(samples), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
