"""The HTTP side: a ThreadingHTTPServer with a small JSON API and one static page.

    GET  /                      the page (static/index.html, app.js, app.css)
    GET  /static/plotly.min.js  plotly.js, read from the installed plotly wheel (no CDN)
    GET  /api/state             the run: sizes, settings, the classes' names and the images'
                                shape, the labels given, the strategy
    GET  /api/points            the scatter: 2-D latent means, predicted class, component,
                                uncertainty, the data's labels (cached per model version)
    GET  /api/queue             the images to label next, with the model's top-3 guesses
    GET  /api/components        the Components view: each component's decoded image, usage,
                                majority label; the confusion of components and labels
    GET  /api/info/I            one image's top-3 classes; /api/image/I.png the image
    GET  /api/progress          the training round (progress.json) and the model version
    GET  /api/runs              the run folders beside this one, with settings and metrics
    GET  /api/export.npz        the labelled set (also written as labeled.npz)
    POST /api/label {index, label}, /api/skip {index}, /api/undo, /api/strategy {name},
         /api/inspect {indices} (a lasso selection's images), /api/select {indices} (the
         selection becomes the queue),
         /api/train {epochs} or {resume: true}, /api/stop, /api/open {name}

Access: with a token (always when listening beyond the loopback) every request must carry it
as ?token=..., the X-Token header or the cookie the page gets when opened with ?token=...;
without it the answer is 403. Without a token only requests naming a loopback host (Host:
127.0.0.1, localhost, ::1) are answered (another site's DNS name pointing here gets 403),
and a POST must be JSON (415 otherwise), which a page of another site cannot send here
without the browser asking first (and being refused).
"""
from __future__ import annotations

import hmac
import importlib.util
import ipaddress
import json
import threading
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from npvae.runs import rundir as R

from .images import png_bytes
from .labels import LabelError
from .runs import list_runs
from .session import Busy, Session, open_session

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}


def plotly_js() -> Path | None:
    """plotly.min.js inside the installed plotly package, or None without the app extra."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


class App:
    """What the handlers share: the open Session (replaced by /api/open), its folder lock,
    the folder whose runs are listed, the token, and the session's settings."""

    def __init__(self, session: Session, lock: R.RunLock, runs_root: Path, token: str | None):
        self.session, self.run_lock = session, lock
        self.runs_root, self.token = Path(runs_root), token
        self.switch = threading.Lock()

    def open(self, name: str) -> dict:
        with self.switch:
            folder = (self.runs_root / name).resolve()
            if folder.parent != self.runs_root.resolve() or not (folder / R.CONFIG_FILE).is_file():
                raise ValueError(f"{name} is not a run folder in {self.runs_root}.")
            old = self.session
            if old.busy():
                raise Busy("a training round is running; stop it before opening another run.")
            new, lock = open_session(folder, old.round_epochs, old.batch, old.strategy)
            self.run_lock.release()
            self.session, self.run_lock = new, lock
            return {"opened": str(folder)}


class Handler(BaseHTTPRequestHandler):
    server_version = "npvae-app"
    app: App                                            # set by make_server

    def log_message(self, *args):                       # quiet: the terminal shows the URL
        pass

    # ------------------------------------------------------------------ plumbing
    def _send(self, code: int, body: bytes, ctype: str, headers: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj, code: int = 200):
        self._send(code, json.dumps(obj).encode(), "application/json")

    def _allowed(self, query: dict) -> bool:
        token = self.app.token
        if token is None:                  # loopback only: refuse other sites' host names
            return _is_loopback_name(urlparse(f"//{self.headers.get('Host', '')}").hostname)
        given = [query.get("token", [""])[0], self.headers.get("X-Token", "")]
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        if "npvae_token" in cookie:
            given.append(cookie["npvae_token"].value)
        return any(hmac.compare_digest(g.encode(), token.encode()) for g in given if g)

    def _body(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        if not n:
            return {}
        body = json.loads(self.rfile.read(n))
        if not isinstance(body, dict):
            raise ValueError("the request body must be a JSON object.")
        return body

    def _handle(self, method: str):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if not self._allowed(query):
            return self._send(403, b"403: this app needs its token (see the URL it printed)\n",
                              "text/plain")
        if method == "POST" and self.headers.get("Content-Type", "").split(";")[0].strip() \
                != "application/json":             # other sites' forms cannot send this
            return self._json({"error": "send a JSON body (Content-Type: application/json)"},
                              415)
        try:
            self._route(method, url.path, query)
        except Busy as err:
            self._json({"error": str(err)}, 409)
        except (ValueError, KeyError, IndexError, LabelError, OSError) as err:
            self._json({"error": str(err)}, 400)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    # ------------------------------------------------------------------ routes
    def _route(self, method: str, path: str, query: dict):
        s = self.app.session
        if method == "GET":
            if path in ("/", "/index.html"):
                token = query.get("token", [None])[0]
                extra = ({"Set-Cookie": f"npvae_token={token}; HttpOnly; SameSite=Strict; Path=/"}
                         if token and self.app.token else None)
                return self._send(200, (STATIC / "index.html").read_bytes(), TYPES[".html"],
                                  extra)
            if path == "/static/plotly.min.js":
                js = plotly_js()
                if js is None:
                    return self._json({"error": "plotly is not installed"}, 404)
                return self._send(200, js.read_bytes(), TYPES[".js"])
            if path.startswith("/static/"):
                f = STATIC / path[len("/static/"):]
                if f.parent != STATIC or not f.is_file():
                    return self._json({"error": "no such file"}, 404)
                return self._send(200, f.read_bytes(), TYPES.get(f.suffix, "text/plain"))
            if path == "/api/state":
                return self._json(s.state())
            if path == "/api/points":
                return self._send(200, s.points_json(), "application/json")
            if path == "/api/queue":
                return self._json({"strategy": s.strategy, "items": s.queue_items()})
            if path == "/api/components":
                return self._send(200, s.components_json(), "application/json")
            if path.startswith("/api/info/"):
                return self._json(s.info(int(path.rsplit("/", 1)[1])))
            if path.startswith("/api/image/") and path.endswith(".png"):
                i = int(path[len("/api/image/"):-4])
                if not 0 <= i < len(s.x):
                    raise IndexError(f"image {i} does not exist.")
                return self._send(200, png_bytes(s.x[i], s.shape), "image/png")
            if path == "/api/progress":
                return self._json(s.progress())
            if path == "/api/runs":
                return self._json({"root": str(self.app.runs_root),
                                   "runs": list_runs(self.app.runs_root, s.folder)})
            if path == "/api/export.npz":
                return self._send(200, s.export(), "application/octet-stream", {
                    "Content-Disposition": f'attachment; filename="{s.folder.name}_labeled.npz"'})
            return self._json({"error": f"no such page {path}"}, 404)
        body = self._body()
        if path == "/api/label":
            return self._json(s.label(int(body["index"]), int(body["label"])))
        if path == "/api/skip":
            return self._json(s.skip(int(body["index"])))
        if path == "/api/undo":
            return self._json({"undone": s.undo()})
        if path == "/api/inspect":
            return self._json(s.inspect(body.get("indices")))
        if path == "/api/select":
            return self._json({"strategy": "lasso", "items": s.select(body.get("indices"))})
        if path == "/api/strategy":
            s.set_strategy(str(body["name"]))
            return self._json({"strategy": s.strategy})
        if path == "/api/train":
            return self._json(s.train(body.get("epochs"), bool(body.get("resume"))))
        if path == "/api/stop":
            return self._json(s.stop())
        if path == "/api/open":
            try:
                return self._json(self.app.open(str(body["name"])))
            except R.FolderInUse as err:
                return self._json({"error": str(err)}, 409)
        return self._json({"error": f"no such action {path}"}, 404)


def _is_loopback_name(host: str | None) -> bool:
    """Is a Host header's name this machine's loopback (so not a DNS-rebinding name)?"""
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def make_server(app: App, host: str, port: int) -> ThreadingHTTPServer:
    """The server bound to host:port (OSError when the port is taken)."""
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
