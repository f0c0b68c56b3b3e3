"""The compile options every kernel shares.

`cache=True`: compiled code is kept in __pycache__ beside each kernel's file. No `fastmath`
flags that assume away NaN or inf: only `reassoc` (a row sum may be vectorised) and `contract`
(fused multiply-adds). `error_model="numpy"`: division by zero gives inf/NaN as in NumPy.
"""
FASTMATH = {"reassoc", "contract"}       # no nnan / ninf: NaN and inf propagate as in NumPy
JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
