"""A small website on 127.0.0.1 with no sitemap, for crawling tests: pages link to each other, each page has an
ETag (a conditional request for an unchanged page gets 304), and every request is recorded."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROBOTS = b"User-agent: *\nDisallow: /private/\n"


def page_html(title: str, text: str, links: list[str]) -> str:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<html><head><title>{title}</title></head><body><nav><ul>{anchors}</ul></nav>"
        f"<main><article><h1>{title}</h1><p>{text}</p><p>{text}</p></article></main></body></html>"
    )


class LocalSite:
    """`pages`: path → (title, text, links); change it between crawls to change the site."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, str, list[str]]] = {
            "/": ("Acme home", "Acme Outdoor sells tents, stoves and rain gear.", ["/shipping", "/returns", "#top"]),
            "/shipping": (
                "Shipping",
                "We ship to every country in the European Union within three working days.",
                ["/", "/shipping/norway", "/private/staff", "https://elsewhere.example/page", "/logo.png"],
            ),
            "/shipping/norway": ("Norway", "Parcels to Norway take five working days and pay customs.", ["/"]),
            "/returns": ("Returns", "Return any item within 30 days for a full refund.", ["/returns/form"]),
            "/returns/form": ("Return form", "Print the return form and put it in the parcel.", []),
            "/private/staff": ("Staff only", "The staff room code is 4711.", []),
        }
        self.requests: list[tuple[str, dict[str, str]]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                site.requests.append((self.path, dict(self.headers.items())))
                if self.path == "/robots.txt":
                    self._send(200, ROBOTS, "text/plain")
                elif self.path in site.pages:
                    body = page_html(*site.pages[self.path]).encode()
                    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                    if self.headers.get("If-None-Match") == etag:
                        self._send(304, b"", None, etag=etag)
                    else:
                        self._send(200, body, "text/html; charset=utf-8", etag=etag)
                else:
                    self._send(404, b"not found", "text/plain")

            def _send(self, status, body, content_type, etag=None):
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                if etag:
                    self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "LocalSite":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def page_requests(self) -> list[str]:
        return [path for path, _ in self.requests if path != "/robots.txt"]
