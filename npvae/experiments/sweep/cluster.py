"""`python -m npvae.sweep ... --dask ADDRESS`: the sweep's runs as tasks on a Dask cluster.

No shared file system is assumed between the client (the machine running the sweep) and the
workers:

* data given with --data (or a TOML's `data`) is read once by the client and scattered to
  the workers as bytes; a worker keeps a copy in its local directory and reads it there
  under the path as given (npvae.training.data.copy_of), so config.toml, run.json and the report
  name the user's path, as in a local sweep; the embedded digits load on each worker;
* --config files travel as text and are written to the task's temporary folder;
* a task runs its grid point with npvae.experiments.sweep.worker.run_one (the same call as a
  local sweep's worker process) in a temporary folder of the worker and returns the run's
  files (bytes by relative path), its log and its result row; the client writes the run folder
  (npvae.experiments.sweep.state.place_run: complete under its final name, or absent).

A worker runs one npvae run at a time (npvae's thread team, $NPVAE_THREADS and the BLAS
limit belong to the process), with the worker's thread count, or $NPVAE_THREADS where the
worker has it set: `dask worker ADDRESS --nthreads T --nworkers N` runs N runs at once with
T threads each. A run's numbers depend on its thread count, so the same thread count gives
the same bits as a local sweep on the same kind of machine.

A worker that dies mid-task (kill -9, out of memory, a lost machine) costs a retry: the
scheduler gives its task to another worker (Dask's distributed.scheduler.allowed-failures,
3 by default, is how many deaths one task may see before it counts as failed). Scattered data
is sent to every worker, but Dask's memory manager may drop the extra copies; if every
worker holding it died, Dask cannot recover it and cancels the tasks that need it: the client
then scatters it again and resubmits them.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

_ONE_RUN = threading.Lock()           # one npvae run at a time in a worker process
LOST_DATA_TRIES = 3                   # submissions of a task whose scattered data was lost
EXTRA = "pip install 'npvae[dist]'"   # or: pip install 'dask[distributed]'


class DaskMissing(ImportError):
    pass


def need_dask():
    """The distributed module, or DaskMissing with the one sentence the CLI prints."""
    try:
        import distributed
    except ImportError:
        raise DaskMissing(f"--dask needs Dask's distributed scheduler, which is not installed; "
                          f"install it with {EXTRA} (or pip install 'dask[distributed]').") \
            from None
    return distributed


# ------------------------------------------------------------------------ the client side

@contextlib.contextmanager
def connect(address: str, workers: int, threads: int):
    """(Client, (the cluster in a few words, its dashboard's address)). "local": a LocalCluster on
    127.0.0.1 of `workers` processes with `threads` threads each (a local sweep's --jobs and thread
    share), closed on exit; otherwise the scheduler at `address` (tcp://host:8786, host:8786)."""
    distributed = need_dask()
    cluster = None
    try:
        if address == "local":               # every port on 127.0.0.1, chosen by the system
            cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=threads, processes=True,
                host="127.0.0.1", dashboard_address="127.0.0.1:0")
            client = distributed.Client(cluster)
        else:
            client = distributed.Client(address)     # waits distributed.comm.timeouts.connect
    except (OSError, TimeoutError) as err:
        if cluster is not None:
            cluster.close()
        raise ConnectionError(f"cannot reach the Dask scheduler at {address} ({err}); start "
                              f"one with `dask scheduler` (and workers with `dask worker "
                              f"{address}`), or use --dask local.") from None
    try:
        yield client, describe(client)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def describe(client) -> tuple[str, str]:
    info = client.scheduler_info()
    nthreads = list(client.nthreads().values())
    each = ("" if not nthreads else f" x {nthreads[0]} thread(s)" if len(set(nthreads)) == 1
            else f", {sum(nthreads)} threads in all")
    where = f"Dask cluster {info['address']}: {len(nthreads)} worker(s){each}"
    if "dashboard" in info.get("services", {}) and client.run_on_scheduler(_has_bokeh):
        return where, f"dashboard {client.dashboard_link}"     # (its pages need bokeh)
    return where, "no dashboard (pip install bokeh on the scheduler's machine for one)"


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def data_blob(path: str) -> dict:
    """The bytes of a data path, to send to the workers: a file, or the files in a folder
    and its subfolders (an IDX folder, a folder of images by class) by relative path, with
    a digest that names the workers' copy."""
    p = Path(path)
    files = ({p.name: p.read_bytes()} if p.is_file() else
             {f.relative_to(p).as_posix(): f.read_bytes() for f in sorted(p.rglob("*"))
              if f.is_file()})
    h = hashlib.sha256(p.name.encode())
    for name, data in files.items():
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return {"name": p.name, "folder": p.is_dir(), "files": files, "sha256": h.hexdigest()}


def run_all(client, out: Path, todo: list[tuple[int, str, list[str]]], cfgs, points):
    """Submit every (index, name, run argv) of `todo`; yield (index, row) as each finishes,
    after its folder and log are written under `out`. Data that the cluster lost (every
    worker holding it died) is scattered again, and the tasks that needed it resubmitted."""
    from concurrent.futures import CancelledError

    from distributed import as_completed

    if not client.nthreads():                     # (scattering needs a worker to hold it)
        print("npvae.sweep: the cluster has no worker yet; waiting for one (dask worker "
              "SCHEDULER_ADDRESS)", file=sys.stderr, flush=True)
        client.wait_for_workers(1)
    blobs = {s: data_blob(s) for s in {str(c.data) for c in cfgs if c.data is not None}}
    configs = {str(p["config"]): Path(p["config"]).read_text() for p in points if "config" in p}
    scattered: dict = {}

    def submit(i, name, argv):
        source, toml = cfgs[i].data, points[i].get("config")
        if source is not None and getattr(scattered.get(str(source)), "status", "") != "finished":
            scattered[str(source)] = client.scatter([blobs[str(source)]], broadcast=True,
                                                    hash=False)[0]
        need = {str(source): scattered[str(source)]} if source is not None else {}
        toml = {str(toml): configs[str(toml)]} if toml is not None else {}
        key = f"npvae-run-{name}-{os.urandom(4).hex()}"
        return client.submit(run_task, name, argv, toml, need, key=key, pure=False)

    futures = {submit(*t): t for t in todo}
    tries = {i: 1 for i, _, _ in todo}
    pending = as_completed(futures)
    for fut in pending:
        i, name, argv = task = futures.pop(fut)
        try:
            res = fut.result()
        except CancelledError:                    # its data was lost: once more, rescattered
            if tries[i] < LOST_DATA_TRIES:
                tries[i] += 1
                again = submit(*task)
                futures[again] = task
                pending.add(again)
                continue
            res = None
            error = "the Dask task failed: its data was lost from the cluster"
        except Exception as err:                  # noqa: BLE001 - reported in its row
            res, error = None, f"the Dask task failed: {type(err).__name__}: {err}"
        finally:
            fut.release()
        if res is None:
            yield i, {"status": "error", "error": error, "seconds": float("nan"),
                      "baselines": {}}
            continue
        yield i, _place(out, name, res)


def _place(out: Path, name: str, res: dict) -> dict:
    """Write a task's run folder and log under `out` with the paths as given on this
    machine (--out, --config) in place of the worker's; its row."""
    from .state import place_run

    back = {res["run_dir"]: str(out / name), **res["paths"]}
    files = res["files"]
    if "run.json" in files:
        info = json.loads(files["run.json"])
        info["command"] = [back.get(a, a) for a in info.get("command") or []]
        files["run.json"] = (json.dumps(info, indent=2, allow_nan=True) + "\n").encode()
    log = res["log"]
    for local, given in back.items():
        log = log.replace(local, given)
    place_run(out, name, files, log)
    return res["row"]


# ------------------------------------------------------------------------ the worker side

def run_task(name: str, argv: list[str], configs: dict[str, str], data: dict[str, dict]) -> dict:
    """One grid point on a Dask worker (see the module docstring): `configs` {--config path
    as given: its text}, `data` {data path as given: its bytes (data_blob)}. Never raises
    for a failed run (its row says so)."""
    from distributed import get_worker

    from npvae.engine.threads import THREADS_ENV
    from npvae.training.data import copy_of

    from .worker import run_one

    worker = get_worker()
    with _ONE_RUN:
        threads = int(os.environ.get(THREADS_ENV, "").strip() or worker.state.nthreads)
        tmp = Path(tempfile.mkdtemp(prefix="npvae-task-", dir=worker.local_directory))
        try:
            paths, argv = {}, list(argv)
            if "--config" in argv:                # this point's TOML, as a file of the task's
                at = argv.index("--config") + 1
                local = tmp / "config.toml"
                local.write_text(configs[argv[at]])
                paths[str(local)], argv[at] = argv[at], str(local)
            with contextlib.ExitStack() as stack:
                for given, blob in data.items():
                    stack.enter_context(copy_of(given, _local_copy(blob, worker.local_directory)))
                row = run_one(argv, str(tmp / name), str(tmp / f"{name}.log"), threads)
            files = {str(f.relative_to(tmp / name)): f.read_bytes()
                     for f in sorted((tmp / name).rglob("*"))
                     if f.is_file() and f.name != ".npvae.lock"}
            log = (tmp / f"{name}.log").read_text()
            return {"row": row, "files": files, "log": log, "run_dir": str(tmp / name),
                    "paths": paths, "threads": threads}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _local_copy(blob: dict, root) -> Path:
    """The worker's copy of a scattered data path (written once per worker, complete or
    absent: made in a staging folder, then renamed)."""
    home = Path(root) / f"npvae-data-{blob['sha256'][:20]}"
    target = home / blob["name"]
    if not home.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=".npvae-data-", dir=root))
        inside = staging / blob["name"] if blob["folder"] else staging
        inside.mkdir(parents=True, exist_ok=True)
        for fname, data in blob["files"].items():
            (inside / fname).parent.mkdir(parents=True, exist_ok=True)
            (inside / fname).write_bytes(data)
        try:
            os.replace(staging, home)
        except OSError:                           # another task made it first
            shutil.rmtree(staging, ignore_errors=True)
    return target
