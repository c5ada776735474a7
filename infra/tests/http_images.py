#!/usr/bin/env python3
"""A loopback HTTP server of images that misbehave, for tests/tests/http_images.rs
(standard library only):

    http_images.py PORT FOLDER

  /img/NAME        FOLDER/NAME, image/jpeg (or image/png)
  /missing.jpg     404
  /slow.jpg        answers after 6 s
  /flaky/NAME      500 on the first request for the path, then the image
  /reset/NAME      drops the first connection without an answer, then the image
  /redirect/NAME   302 to /img/NAME
  /loop.jpg        302 to itself
  /page.jpg        200 with text/html
Every request's path and User-Agent is appended to FOLDER/requests.log."""
import http.server, os, socketserver, sys, time

PORT, FOLDER = int(sys.argv[1]), sys.argv[2]
seen = set()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def image(self, name):
        data = open(os.path.join(FOLDER, name), "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "image/png" if name.endswith(".png") else "image/jpeg")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with open(os.path.join(FOLDER, "requests.log"), "a") as log:
            log.write(f"{self.path}\t{self.headers.get('User-Agent')}\n")
        path, first = self.path.split("?")[0], self.path not in seen
        seen.add(self.path)
        if path.startswith("/img/"):
            self.image(path[5:])
        elif path == "/slow.jpg":
            time.sleep(6)
            self.image("0000000.jpg")
        elif path.startswith("/flaky/"):
            if first:
                self.send_error(500)
            else:
                self.image(path[7:])
        elif path.startswith("/reset/"):
            if first:
                self.close_connection = True
                self.connection.shutdown(2)
            else:
                self.image(path[7:])
        elif path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "/img/" + path[10:])
            self.end_headers()
        elif path == "/loop.jpg":
            self.send_response(302)
            self.send_header("Location", "/loop.jpg")
            self.end_headers()
        elif path == "/page.jpg":
            body = b"<html><body>not an image</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


Server(("127.0.0.1", PORT), Handler).serve_forever()
