"""A local arXiv API for the tests: replays the recorded Atom answers of tests/data/arxiv/, counts requests.

Each file there is arXiv's answer to ``id_list=<that id>``; a request for several ids gets one feed with
their entries, in reverse order (arXiv does not keep the order of ``id_list``), and an id with no file gets
none (arXiv's answer to an id it does not know: ``empty.xml``). A malformed id gets ``error.xml`` with HTTP
400, as arXiv answers one. ``answers`` lets a test serve its own body for an id asked alone (an attack).
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "arxiv"
_ENTRY = re.compile(r"  <entry>\n.*?</entry>\n", re.DOTALL)
_NEW_STYLE = re.compile(r"\d{4}\.\d{5}(v\d+)?")


def recorded(arxiv: str) -> str:
    """The recorded answer for one id (without version), as text a test may alter."""
    return (DATA / f"{arxiv.split('v')[0]}.xml").read_text(encoding="utf-8")


@dataclass
class ArxivServer:
    url: str
    requests: list[dict[str, str]] = field(default_factory=list)  # each GET: its id_list and User-Agent
    answers: dict[str, bytes] = field(default_factory=dict)

    def answer(self, ids: list[str]) -> tuple[int, bytes]:
        if len(ids) == 1 and ids[0] in self.answers:
            return 200, self.answers[ids[0]]
        if not all(_NEW_STYLE.fullmatch(i) for i in ids):
            return 400, (DATA / "error.xml").read_bytes()
        entries = [e for i in reversed(ids) for e in self._entries(i)]
        feed = (DATA / "empty.xml").read_text(encoding="utf-8")
        return 200, feed.replace("</feed>", "".join(entries) + "</feed>").encode()

    def _entries(self, arxiv: str) -> list[str]:
        path = DATA / f"{arxiv.split('v')[0]}.xml"
        found = _ENTRY.findall(path.read_text(encoding="utf-8")) if path.exists() else []
        return [e for e in found if "v" not in arxiv or f"/abs/{arxiv}</id>" in e]


@contextmanager
def arxiv_server() -> Iterator[ArxivServer]:
    """The server on a free loopback port, its API at ``.url``, stopped on exit."""
    server = ArxivServer("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            ids = [i for i in query.get("id_list", [""])[0].split(",") if i]
            server.requests.append({"id_list": ",".join(ids), "max_results": query.get("max_results", [""])[0],
                                    "user_agent": self.headers.get("User-Agent", "")})
            status, body = server.answer(ids)
            self.send_response(status)
            self.send_header("Content-Type", "application/atom+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}/api/query"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
