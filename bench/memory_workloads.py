"""Workloads with known memory answers, shared by bench/bench_memory.py and
tests/unit/test_heap.py (which runs them scaled down).

accuracy(scale): hold_numpy keeps 400 MB of numpy arrays alive at the peak,
hold_lists 100 MB of Python lists of floats, churn allocates 1 GB in 10 MB
buffers, freeing each before the next; all three at once in `accuracy`, so
the peak is 500 MB + one churn buffer. Sizes are multiplied by `scale`.
"""

from __future__ import annotations

import sys

import numpy as np

MB = 1_000_000


def hold_numpy(scale: float):
    n = int(100 * MB * scale) // 8
    return [np.ones(n) for _ in range(4)]


def hold_lists(scale: float):
    per_list = 1000
    base = [float(i) for i in range(per_list)]
    out = []
    target = 100 * MB * scale
    size = 0
    while size < target:
        lst = [x + 0.5 for x in base]  # new float objects, one list
        size += sys.getsizeof(lst) + sum(sys.getsizeof(x) for x in lst)
        out.append(lst)
    return out, size


def churn(scale: float) -> int:
    total = 0
    for _ in range(100):
        b = bytearray(int(10 * MB * scale))
        total += len(b)
        del b
    return total


def accuracy(scale: float = 1.0) -> dict:
    """Run the three; return the true sizes (bytes) to compare with."""
    arrays = hold_numpy(scale)
    lists, lists_bytes = hold_lists(scale)
    churned = churn(scale)
    truth = {
        "hold_numpy": {"live": sum(a.nbytes for a in arrays), "alloc": sum(a.nbytes for a in arrays)},
        "hold_lists": {"live": lists_bytes},
        "churn": {"live": int(10 * MB * scale), "alloc": churned},
    }
    del arrays, lists
    return truth


def pyalloc(n: int = 3_000_000) -> int:
    """An allocation-heavy pure-Python loop: dicts, strings, lists, tuples."""
    keep = []
    acc = 0
    for i in range(n):
        d = {"a": i, "b": str(i), "c": [i, i + 1, (i, "x")]}
        keep.append(d)
        if len(keep) > 2000:
            acc += len(keep)
            keep = []
    return acc


def numpy_work(n: int = 200) -> float:
    """A numpy-heavy loop: 8 MB temporaries, sorts, reductions."""
    rng = np.random.default_rng(0)
    a = rng.random(1_000_000)
    acc = 0.0
    for _ in range(n):
        b = np.sqrt(a * 2.0 + 1.0)
        c = np.sort(b[:100_000])
        acc += float(c[-1]) + float(b.mean())
        a = (a + 0.5) % 1.0
    return acc
