#!/usr/bin/env python3
"""An HTTP proxy that makes an S3 server flaky, for the retry tests.

    flaky_proxy.py LISTEN_PORT UPSTREAM_URL RATE SEED

Forwards every request to UPSTREAM_URL, except that with probability RATE it answers
503 SlowDown (half the faults) or drops the connection without a reply (the other half)
instead. Logs one line per injected fault on stderr ("fault 503 PUT /bucket/key").
"""
import http.client
import random
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PORT, UPSTREAM, RATE, SEED = int(sys.argv[1]), urlsplit(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
RNG = random.Random(SEED)
LOCK = threading.Lock()
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with LOCK:
            roll, half = RNG.random(), RNG.random()
        if roll < RATE:
            kind = "503" if half < 0.5 else "reset"
            print(f"fault {kind} {self.command} {self.path}", file=sys.stderr, flush=True)
            if kind == "503":
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(SLOW_DOWN)))
                self.end_headers()
                self.wfile.write(SLOW_DOWN)
            else:
                self.close_connection = True
                self.connection.close()
            return
        upstream = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        reply = upstream.getresponse()
        data = reply.read()
        self.send_response(reply.status, reply.reason)
        # A HEAD reply keeps the object's Content-Length; others carry the body read here.
        dropped = ("transfer-encoding", "connection") + (() if self.command == "HEAD" else ("content-length",))
        for key, value in reply.getheaders():
            if key.lower() not in dropped:
                self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Proxy).serve_forever()
