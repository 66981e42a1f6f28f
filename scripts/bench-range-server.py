#!/usr/bin/env python3
"""A loopback HTTP server for scripts/bench that honours `Range: bytes=A-B` (python's
http.server does not), serving the files of DIR with sendfile, keep-alive, many threads.

usage: bench-range-server.py DIR  (prints `PORT <n>` once it listens on 127.0.0.1:<n>)
"""

import http.server
import os
import re
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = os.path.join(self.server.root, os.path.basename(self.path))
        try:
            f = open(path, "rb")
        except OSError:
            self.send_error(404)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            start, end = 0, size - 1
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            self.wfile.flush()
            offset, left = start, end - start + 1
            while left > 0:
                sent = os.sendfile(self.connection.fileno(), f.fileno(), offset, left)
                if sent == 0:
                    break
                offset += sent
                left -= sent


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.root = sys.argv[1]
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
