#!/usr/bin/env python3
"""pexpect on the same serial stream and the same 10 patterns as benches/expect_throughput.rs.

usage: scripts/bench-expect.py STREAM [--default-prefix BYTES]

The stream (written by `cargo bench --bench expect_throughput -- --write STREAM`) is fed
through a socketpair by a forked writer process; pexpect.fdpexpect.fdspawn reads the other end
and waits for the patterns, once with default settings and once with searchwindowsize=4096.

pexpect's default (no searchwindowsize, regex patterns) copies and searches the whole buffer on
every read (maxread=2000 bytes), which is quadratic: on the full stream it would take hours. It
is measured on a prefix of the stream (cut at a line end, with the same tail), and says so.
Prints `RESULT <name> <MB/s>` lines for scripts/bench.
"""

import argparse
import os
import re
import socket
import sys
import time

import pexpect
import pexpect.fdpexpect

TAIL_START = b"\r\nDebian GNU/Linux 12 debian ttyS0"

# Same order as the Rust bench: fail patterns first (they win ties there), then want.
WANT = [
    re.escape(b"login: "),
    rb"Prompt: '\?' for help, default=\d+> ",
    rb"root@[\w-]+:~# ",
    re.escape(b"reboot: Power down"),
    rb"Press (ENTER|any key) to (continue|reboot)",
    re.escape(b"Installation complete"),
]
FAIL = [
    rb"Kernel panic",
    re.escape(b"Installation step failed"),
    rb"segfault at [0-9a-f]+ ip",
    rb"\[!!\] [A-Z]",
]
PATTERNS = [re.compile(p, re.MULTILINE) for p in WANT + FAIL]


def prefix_of(data, size):
    """The first `size` bytes of the stream, cut at a line end, plus the stream's tail."""
    tail_at = data.rfind(TAIL_START)
    if size >= tail_at:
        return data
    cut = data.rfind(b"\n", 0, size) + 1
    return data[:cut] + data[tail_at:]


def run(data, **kwargs):
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        try:
            b.sendall(data)
        finally:
            os._exit(0)
    b.close()
    child = pexpect.fdpexpect.fdspawn(a.fileno(), timeout=3600, **kwargs)
    start = time.perf_counter()
    index = child.expect(PATTERNS)
    secs = time.perf_counter() - start
    assert index == 0, index
    a.close()
    os.waitpid(pid, 0)
    return secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stream")
    ap.add_argument("--default-prefix", type=int, default=2 << 20)
    args = ap.parse_args()
    with open(args.stream, "rb") as f:
        data = f.read()

    small = prefix_of(data, args.default_prefix)
    secs = run(small)
    mbs = len(small) / 1e6 / secs
    scaled = "" if len(small) == len(data) else (
        f" (on a {len(small) / 1e6:.1f} MB prefix: the default is quadratic, "
        f"the full {len(data) / 1e6:.0f} MB would take far longer)")
    print(f"pexpect {pexpect.__version__} default (maxread=2000, no searchwindowsize): "
          f"{len(small) / 1e6:.1f} MB in {secs:.2f} s = {mbs:.1f} MB/s{scaled}")
    print(f"RESULT pexpect-default {mbs:.2f}")

    secs = run(data, searchwindowsize=4096)
    mbs = len(data) / 1e6 / secs
    print(f"pexpect {pexpect.__version__} searchwindowsize=4096: "
          f"{len(data) / 1e6:.1f} MB in {secs:.2f} s = {mbs:.1f} MB/s")
    print(f"RESULT pexpect-sws4096 {mbs:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
