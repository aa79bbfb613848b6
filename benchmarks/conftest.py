"""pytest-benchmark suites over the yardstick layers.

Run with::

    pytest benchmarks/ --benchmark-only                    # everything (several minutes)
    pytest benchmarks/ --benchmark-only -k "float32 and 1t and res-3x3-64"

Every test is ``<direction>[<threads>t-<dtype>-<layer>-<impl>]`` and lands in
the benchmark group ``<direction> <layer> <dtype> <threads>t``, so the
fastconv strategies, PyTorch and the NumPy baseline for one layer read side by
side.  The callables and data come from :mod:`fastconv._bench`, the module
behind ``python -m fastconv bench``, so both time the same calls; inputs are
built outside the timed region.  Each benchmark also checks its result against
fastconv's ``algorithm="auto"`` result, so a wrong answer fails instead of
being timed.  ``extra_info`` holds the FLOP (or byte) count and the rate.

The suite runs with ``--import-mode=importlib`` (pyproject.toml), under which
test modules cannot import this file, so what they share is handed out as
fixtures here or lives in ``fastconv._bench``.
"""
import pytest

import fastconv
from fastconv import _bench

# "All threads" is fastconv's default, read before any benchmark changes it.
ALL_THREADS = fastconv.get_num_threads()
THREADS = sorted({1, ALL_THREADS})


@pytest.fixture(scope="session")
def torch_module():
    """torch when installed, else None (its entries then skip)."""
    return _bench.import_torch()


@pytest.fixture(params=THREADS, ids=[f"{n}t" for n in THREADS])
def threads(request, torch_module):
    """Run fastconv, torch and BLAS on 1 thread, then on all; restored afterwards."""
    with _bench.thread_count(request.param, torch_module):
        yield request.param


@pytest.fixture(scope="session")
def expected():
    """fastconv's "auto" result for (direction, layer, dtype), computed once.

    Only the latest few are kept: tests run layer after layer, and the large
    layers' float64 results are tens of MB each.
    """
    cache = {}

    def get(key, compute):
        if key not in cache:
            while len(cache) >= 4:
                cache.pop(next(iter(cache)))
            cache[key] = compute()
        return cache[key]

    return get


@pytest.fixture
def run_checked(benchmark, expected):
    """Benchmark ``fn`` in ``group``, check its result, record the rate.

    ``reference`` computes the expected result (cached under ``key``);
    ``work`` is the FLOP count (``unit="GFLOP/s"``) or byte count
    (``unit="GB/s"``) the rate is computed from.
    """

    def run(fn, group, key, reference, work, unit):
        benchmark.group = group
        result = benchmark(fn)
        diff, tol = _bench.compare(result, expected(key, reference))
        assert diff <= tol, f"max |diff| vs fastconv auto = {diff:.3g} > tolerance {tol:.3g}"
        stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
        if stats is not None:
            median = stats.stats.median
            benchmark.extra_info["flops" if unit == "GFLOP/s" else "bytes"] = work
            benchmark.extra_info[unit] = work / median / 1e9 if median > 0 else None
        return result

    return run
