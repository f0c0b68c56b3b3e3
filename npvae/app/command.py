"""`python -m npvae.app`: open a run folder (or start one) and serve the page.

    python -m npvae.app RUN_DIR                 open a folder made by npvae.app or npvae.run
    python -m npvae.app [--data PATH] [--preset NAME] [--out DIR] [any run flag]
                                                start a new folder (default --preset ssl,
                                                results/app_<YYYYmmdd_HHMMSS>) with no labels

It prints the page's URL and serves until Ctrl-C. It listens on 127.0.0.1 by default; any
other --host needs a token, printed in the URL (--token, or a random one), and requests
without it get 403. Bad input (an unknown run folder, a folder of another program's files,
bad data or settings, a port in use, a folder another npvae process holds): one sentence on
stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import time
from dataclasses import fields
from pathlib import Path

from npvae.core.config import Config, ConfigError
from npvae.experiments.active.loop import STRATEGY_NAMES
from npvae.runs import rundir as R
from npvae.runs import runner
from npvae.training.checkpoint import CheckpointError
from npvae.training.cli import add_config_flags, add_preset_flag, resolve
from npvae.training.data import DataError, fit_to_data, load_dataset

from .labels import LabelError

APP_FILE = "app.json"


def build_parser() -> argparse.ArgumentParser:
    ap = runner._Parser(prog="python -m npvae.app",
                        description="A local web app: see the data through the model, label "
                                    "images, train, compare runs.")
    g = ap.add_argument_group("app")
    g.add_argument("run_dir", nargs="?", metavar="RUN_DIR",
                   help="a run folder to open (made by npvae.app or npvae.run)")
    g.add_argument("--out", metavar="DIR", help="folder of a new run (default: "
                   "results/app_<YYYYmmdd_HHMMSS>)")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                   "127.0.0.1; any other needs the printed token)")
    g.add_argument("--port", type=int, default=8050, help="port (default: 8050; 0: any free)")
    g.add_argument("--token", help="the access token (default: none on the loopback, a random "
                   "one otherwise)")
    g.add_argument("--runs", metavar="FOLDER", help="folder whose runs the Compare view lists "
                   "(default: the run folder's parent)")
    g.add_argument("--round-epochs", type=int, default=10, metavar="N",
                   help="epochs per training round (default: 10; the page can change it)")
    g.add_argument("--batch", type=int, default=12, metavar="B",
                   help="images per queue batch (default: 12)")
    g.add_argument("--strategy", choices=STRATEGY_NAMES, default="typical",
                   help="query strategy of the queue (default: typical)")
    g.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    g.add_argument("--config", metavar="FILE", help="TOML file of settings (new runs)")
    add_preset_flag(g)
    add_config_flags(ap)
    return ap


def _check_port(host: str, port: int) -> None:
    """UsageError when host:port cannot be listened on (taken, or not an address here)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(infos[0][4])
    except OSError as err:
        raise _cannot_listen(host, port, err) from None


def _cannot_listen(host, port, err: OSError) -> runner.UsageError:
    return runner.UsageError(f"cannot listen on {host} port {port}: {err.strerror or err}; "
                             f"choose another --port or --host.")


def open_folder(args) -> Path:
    """The run folder to serve: RUN_DIR checked, or a new one made from the flags."""
    given = [f"--{f.name.replace('_', '-')}" for f in fields(Config) if f.name in vars(args)]
    given += [flag for flag, on in (("--config", args.config), ("--preset", args.preset),
                                    ("--out", args.out)) if on]
    if args.run_dir:
        folder = Path(args.run_dir)
        if given:
            raise runner.UsageError(f"{folder} has its own config.toml, so it cannot be "
                                    f"combined with {', '.join(given)}.")
        if not folder.is_dir():
            raise runner.UsageError(f"run folder {folder} does not exist; give a folder made "
                                    f"by npvae.app or npvae.run, or start a new one with "
                                    f"--data PATH or --preset NAME.")
        if not (folder / R.CONFIG_FILE).is_file():
            raise runner.UsageError(f"{folder} is not an npvae run folder (it has no "
                                    f"{R.CONFIG_FILE}); give a folder made by npvae.app or "
                                    f"npvae.run.")
        R.read_config(folder)                    # a bad config.toml: ConfigError
        return folder
    if not args.preset and not args.config:
        args.preset = "ssl"
    asked, sources = resolve(args)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    folder = runner.prepare_out(args.out or f"results/app_{stamp}", asked, stamp, False)
    from .images import load_app_data
    ds = load_dataset(asked, sources)            # bad data: refused before the folder exists
    cfg = fit_to_data(asked, ds, sources)        # its shape and classes, from the data
    load_app_data(cfg, ds)
    folder.mkdir(parents=True, exist_ok=True)
    R.write_config(folder, cfg, args.preset, {**sources, **R.from_data(asked, cfg)})
    R.write_json(folder / APP_FILE, {"program": "npvae.app", "created": stamp,
                                     "preset": args.preset, "sources": sources, "data": cfg.data,
                                     "labels": "none at the start: every label is given in "
                                               "the app (labels.csv)"})
    return folder


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return serve(args)
    except (ConfigError, DataError, runner.UsageError, CheckpointError, R.FolderInUse,
            LabelError, json.JSONDecodeError) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return runner.EXIT_BAD_INPUT


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(args) -> int:
    from .server import App, _is_loopback_name, make_server, plotly_js
    from .session import open_session

    if plotly_js() is None:
        raise runner.UsageError('plotly is not installed; install the app extra: '
                                'pip install -e ".[app]".')
    for name in ("round_epochs", "batch"):
        if getattr(args, name) < 1:
            raise runner.UsageError(f"--{name.replace('_', '-')} must be at least 1.")
    if not 0 <= args.port <= 65535:
        raise runner.UsageError(f"--port {args.port} is not a port (0..65535).")
    token = args.token or (None if _is_loopback_name(args.host) else secrets.token_urlsafe(24))
    _check_port(args.host, args.port)            # before a new folder is made
    folder = open_folder(args)
    session, lock = open_session(folder, args.round_epochs, args.batch, args.strategy)
    app = App(session, lock, Path(args.runs) if args.runs else folder.resolve().parent, token)
    try:
        server = make_server(app, args.host, args.port)
    except OSError as err:
        lock.release()
        raise _cannot_listen(args.host, args.port, err) from None
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"npvae.app: {url}  (run folder {folder}; Ctrl-C stops)", flush=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)   # (a background job ignores it)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if app.session.busy():
            app.session.stop()                   # (a worker also stops when the app is gone)
        app.run_lock.release()
    return 0
