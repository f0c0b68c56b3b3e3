"""Running the fast path's work on T Python threads, next to BLAS (used by npvae/engine/mixture.py).

The calling thread is thread 0; T - 1 helper threads are made once per process and shared.
Each thread runs compiled code that releases the GIL (BLAS products, the `nogil` kernels), so
the threads truly run at once; while they do, BLAS itself is held to one thread, because
OpenBLAS's idle worker threads spin and would take the cores from ours.

    split(n, T)                  contiguous ranges of n rows or columns, one per thread
    team.run(fn, items)          fn(t, item, barrier) on thread t, results in thread order
    blas_single_thread(T)        a context: BLAS on one thread while T > 1 of ours run
    blas_one_thread()            a context: BLAS on one thread
    process_share(threads)       a context: this process's share of the cores ($NPVAE_THREADS
                                 and the BLAS limit), for sweep and active-learning workers
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

from threadpoolctl import ThreadpoolController

from npvae.core.config import ConfigError

_BLAS = None                    # threadpoolctl controller, made once (it scans loaded libraries)
_POOLS: dict[int, ThreadPoolExecutor] = {}     # helper threads, shared by every Team


THREADS_ENV = "NPVAE_THREADS"   # a process's share of the cores (set by python -m npvae.sweep)


def available_cores() -> int:
    """The fast engine's default thread count: the cores this process may use, or
    $NPVAE_THREADS when set (the sweep gives each worker process its share; BLAS is limited
    to the same share there). Another count changes the last bits of a float32 run (the
    per-thread partial sums), so run.json records it."""
    share = os.environ.get(THREADS_ENV, "").strip()
    if share:
        if not share.isdigit() or int(share) < 1:
            raise ConfigError(f"{THREADS_ENV}={share!r} is not a thread count; set it to a "
                              f"whole number >= 1 or unset it.")
        return int(share)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def split(n: int, T: int) -> list[tuple[int, int]]:
    """n rows (or columns) in contiguous ranges of near-equal length, one per thread (at most
    n of them, none empty)."""
    T = max(1, min(T, n))
    return [(t * n // T, (t + 1) * n // T) for t in range(T)]


def blas_single_thread(T: int):
    """BLAS on one thread while T > 1 of our threads run (nothing left spinning)."""
    return blas_one_thread() if T > 1 else nullcontext()


def blas_one_thread():
    """BLAS on one thread, whatever ours do (for work made of products too small for BLAS's
    threads, such as the per-image products of the conv layers)."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


@contextmanager
def process_share(threads: int):
    """While active, this process runs with `threads` threads: $NPVAE_THREADS for the fast
    engine and a BLAS limit; both as they were afterwards (a worker may be the caller)."""
    from threadpoolctl import threadpool_limits

    old = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(threads)
    try:
        with threadpool_limits(threads, user_api="blas"):
            yield
    finally:
        os.environ.pop(THREADS_ENV) if old is None else os.environ.update({THREADS_ENV: old})


class Team:
    """Up to T threads: the caller's and T - 1 shared helpers."""

    def __init__(self, T: int):
        self.size = T
        if T > 1 and T - 1 not in _POOLS:
            _POOLS[T - 1] = ThreadPoolExecutor(T - 1, thread_name_prefix="npvae")
        self.pool = _POOLS.get(T - 1)
        self.barriers: dict[int, threading.Barrier] = {}

    def run(self, fn, items) -> list:
        """fn(t, item, barrier) for every item (at most T), item t on thread t (item 0 on the
        calling thread); `barrier.wait()` inside fn waits for all of them to reach that
        point. An exception in one breaks the barrier (no thread is left waiting) and is
        raised here."""
        barrier = self.barriers.setdefault(len(items), threading.Barrier(len(items)))

        def run(t, item):
            try:
                return fn(t, item, barrier)
            except BaseException:
                barrier.abort()            # never leave the other threads waiting
                raise

        futures = [self.pool.submit(run, t, item) for t, item in enumerate(items) if t > 0]
        try:
            try:
                first = run(0, items[0])
            except threading.BrokenBarrierError:
                for f in futures:              # the error that broke the barrier, not its echo
                    err = f.exception()
                    if err is not None and not isinstance(err, threading.BrokenBarrierError):
                        raise err from None
                raise
            return [first] + [f.result() for f in futures]
        finally:
            if barrier.broken:
                for f in futures:
                    f.exception()
                barrier.reset()
