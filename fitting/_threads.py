"""One BLAS thread while fitting, through threadpoolctl (OpenBLAS, MKL, BLIS, Accelerate's vecLib, any OS).

The fits do many tiny linear-algebra calls (5x5 systems, L-BFGS-B's small dot products). BLAS threads that
spin-wait between them make a 2-core machine several times slower, worse still with a process pool on top
(measured: 12 ms -> 40 ms per bootstrap resample; benchmarks/results/fitting-*.md).
"""
from __future__ import annotations

import functools

from threadpoolctl import ThreadpoolController


@functools.lru_cache(maxsize=1)  # inspecting the loaded libraries costs ~1 ms; numpy and scipy load BLAS at import
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def set_blas_threads(n: int) -> None:
    """Every loaded BLAS to n threads from now on (a bootstrap worker process calls it once)."""
    _controller().limit(limits=int(n), user_api="blas")


def single_blas_thread():
    """A context manager: one BLAS thread inside, the previous counts restored on exit."""
    return _controller().limit(limits=1, user_api="blas")
