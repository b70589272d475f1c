"""Limit OpenBLAS threads while fitting.

The fits do many tiny linear-algebra calls (5x5 systems, L-BFGS-B's small dot products). OpenBLAS threads that
spin-wait between them make a 2-core machine several times slower, worse still with a process pool on top
(measured: 12 ms -> 40 ms per bootstrap resample). threadpoolctl is not a dependency, so this does the same for
OpenBLAS only: find the loaded OpenBLAS libraries (numpy's and scipy's copies) in /proc/self/maps and call their
``*_set_num_threads``.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools

_SUFFIXES = ("", "64_", "_64")
_PREFIXES = ("openblas", "scipy_openblas")


@functools.lru_cache(maxsize=1)  # numpy and scipy load their OpenBLAS at import; scanning once is enough
def _openblas_libs():
    paths = set()
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                part = line.split()
                if len(part) >= 6 and "openblas" in part[-1].lower() and ".so" in part[-1]:
                    paths.add(part[-1])
    except OSError:  # not Linux: leave threading alone
        return ()
    libs = []
    for p in sorted(paths):
        try:
            lib = ctypes.CDLL(p)
        except OSError:
            continue
        for pre in _PREFIXES:
            for suf in _SUFFIXES:
                setter = getattr(lib, f"{pre}_set_num_threads{suf}", None)
                getter = getattr(lib, f"{pre}_get_num_threads{suf}", None)
                if setter is not None and getter is not None:
                    getter.restype = ctypes.c_int
                    libs.append((setter, getter))
                    break
            else:
                continue
            break
    return tuple(libs)


def set_blas_threads(n: int) -> list[int]:
    """Set every loaded OpenBLAS to n threads; returns the previous counts."""
    old = []
    for setter, getter in _openblas_libs():
        old.append(int(getter()))
        setter(int(n))
    return old


@contextlib.contextmanager
def single_blas_thread():
    libs = _openblas_libs()
    old = [int(g()) for _, g in libs]
    for s, _ in libs:
        s(1)
    try:
        yield
    finally:
        for (s, _), n in zip(libs, old):
            s(n)
