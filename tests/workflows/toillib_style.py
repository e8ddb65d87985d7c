"""Test workflow in toil-lib's style: a Job.Service (as its Spark and database services)
whose start() returns where it listens, which a child job then uses.

The service serves one page over HTTP on 127.0.0.1 from the service's own process; the
child fetches it with the address the service's start() returned.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from typing import Any

from toilray.common import Toil
from toilray.job import Job

PAGE = b"served by the toil-lib style service"


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: Any) -> None:
        return


class PageService(Job.Service):
    def __init__(self) -> None:
        super().__init__(cores=0.1, memory="100M")
        self.server: http.server.ThreadingHTTPServer | None = None

    def start(self, job: Job) -> str:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def check(self) -> bool:
        return True

    def stop(self, job: Job) -> None:
        if self.server is not None:
            self.server.shutdown()


def fetch(job: Job, url: str) -> dict[str, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return {"url": url, "page": response.read().decode()}


def start(job: Job) -> Any:
    url = job.addService(PageService())
    return job.addChildJobFn(fetch, url, cores=0.1).rv()


if __name__ == "__main__":
    options = Job.Runner.getDefaultArgumentParser().parse_args()
    with Toil(options) as toil:
        print(json.dumps(toil.start(Job.wrapJobFn(start, cores=0.1))))
