"""Concurrent calls from Python threads: the kernels release the GIL, and
neither concurrency nor a thread count changed mid-flight alters a result.

Each function is called from 8 Python threads at once (each call running its
own OpenMP team), on inputs shared by every thread and on each thread's own
inputs; every result must be bitwise the result of the same call made
serially. A thread count changed by one thread while others compute applies
per call: each result must be bitwise the serial result for 1 or for 2
threads.
"""
import sys
import threading

import numpy as np
import pytest

import fastconv
from fastconv import _choose

N_THREADS = 8
ROUNDS = 2


def make_calls(rng):
    """One call of every function (and of every conv algorithm), on inputs big
    enough that the pooling kernels use threads and calls overlap."""
    x = rng.standard_normal((4, 16, 48, 44)).astype(np.float32)
    # distinct values: every thread must pick the same argmax
    xt = rng.permutation(np.linspace(-1, 1, x.size)).reshape(x.shape).astype(np.float32)
    w = rng.standard_normal((24, 8, 3, 3)).astype(np.float32)
    w1 = rng.standard_normal((24, 16, 1, 1)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    ckw = dict(stride=(1, 2), padding=((1, 0), (2, 1)), groups=2)
    calls = []
    for algorithm in ("direct", "im2col"):
        y = fastconv.conv2d(x, w, None, **ckw)
        g = rng.standard_normal(y.shape).astype(np.float32)
        calls.append((f"conv2d[{algorithm}]", fastconv.conv2d, (x, w, b),
                      dict(ckw, algorithm=algorithm)))
        calls.append((f"conv2d_backward[{algorithm}]", fastconv.conv2d_backward, (g, x, w),
                      dict(ckw, algorithm=algorithm)))
    g1 = rng.standard_normal((4, 24, 48, 44)).astype(np.float32)
    calls.append(("conv2d[1x1]", fastconv.conv2d, (x, w1, b), dict(algorithm="1x1")))
    calls.append(("conv2d_backward[1x1]", fastconv.conv2d_backward, (g1, x, w1),
                  dict(algorithm="1x1")))
    mkw = dict(kernel_size=3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True)
    y, idx = fastconv.max_pool2d(xt, return_indices=True, **mkw)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    calls.append(("max_pool2d", fastconv.max_pool2d, (xt,), dict(mkw, return_indices=True)))
    calls.append(("max_pool2d_backward", fastconv.max_pool2d_backward, (gy, xt), mkw))
    calls.append(("max_pool2d_backward[indices]", fastconv.max_pool2d_backward, (gy, xt),
                  dict(mkw, indices=idx)))
    akw = dict(kernel_size=(3, 2), stride=(2, 1), padding=1, ceil_mode=True,
               count_include_pad=False)
    ga = rng.standard_normal(fastconv.avg_pool2d(x, **akw).shape).astype(np.float32)
    calls.append(("avg_pool2d", fastconv.avg_pool2d, (x,), akw))
    calls.append(("avg_pool2d_backward", fastconv.avg_pool2d_backward, (ga, x), akw))
    gap = rng.standard_normal((4, 16, 7, 5)).astype(np.float32)
    calls.append(("adaptive_avg_pool2d", fastconv.adaptive_avg_pool2d, (x, (7, 5)), {}))
    calls.append(("adaptive_avg_pool2d_backward", fastconv.adaptive_avg_pool2d_backward,
                  (gap, x, (7, 5)), {}))
    _, aidx = fastconv.adaptive_max_pool2d(xt, (7, 5), return_indices=True)
    calls.append(("adaptive_max_pool2d", fastconv.adaptive_max_pool2d, (xt, (7, 5)),
                  dict(return_indices=True)))
    calls.append(("adaptive_max_pool2d_backward", fastconv.adaptive_max_pool2d_backward,
                  (gap, xt, (7, 5)), {}))
    calls.append(("adaptive_max_pool2d_backward[indices]", fastconv.adaptive_max_pool2d_backward,
                  (gap, xt, (7, 5)), dict(indices=aidx)))
    return calls


def as_bytes(result):
    """A result as (dtype, shape, bytes) per array: equality is bitwise."""
    results = result if isinstance(result, tuple) else (result,)
    return [(r.dtype, r.shape, r.tobytes()) for r in results]


def copy_args(args, kwargs):
    copy = lambda a: a.copy() if isinstance(a, np.ndarray) else a  # noqa: E731
    return tuple(copy(a) for a in args), {k: copy(v) for k, v in kwargs.items()}


@pytest.fixture
def team(monkeypatch):
    """Two OpenMP threads per call, even for calls too small to use them."""
    monkeypatch.setattr(_choose, "PARALLEL_MIN_FLOPS", 0)
    fastconv.set_num_threads(2)
    yield
    fastconv.set_num_threads(None)


def run_threads(target, n):
    errors = []

    def wrapped(i):
        try:
            target(i)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.mark.parametrize("shared", [True, False], ids=["shared-inputs", "own-inputs"])
def test_concurrent_calls_match_serial(rng, team, shared):
    """Shared inputs: every thread reads the same arrays. Own inputs: each
    thread has arrays of its own, with values of its own, so a result written
    through memory shared between calls would show."""
    seeds = rng.integers(0, 2**32, N_THREADS)
    calls = [make_calls(np.random.default_rng(seeds[0 if shared else i]))
             for i in range(N_THREADS)]
    serial = [{name: as_bytes(f(*args, **kwargs)) for name, f, args, kwargs in mine}
              for mine in calls]
    snapshots = [{name: copy_args(args, kwargs) for name, _, args, kwargs in mine}
                 for mine in calls]
    mismatches = []

    def work(i):
        mine = calls[i]
        for r in range(ROUNDS):
            # each thread starts at another function, so different kernels overlap
            for j in range(len(mine)):
                name, f, args, kwargs = mine[(i + r + j) % len(mine)]
                if as_bytes(f(*args, **kwargs)) != serial[i][name]:
                    mismatches.append((i, r, name))

    run_threads(work, N_THREADS)
    assert not mismatches, f"results differ from the serial ones: {mismatches[:5]}"
    for mine, snap in zip(calls, snapshots):  # no input was touched
        for name, _, args, kwargs in mine:
            old_args, old_kwargs = snap[name]
            for a, b in zip(args + tuple(kwargs.values()),
                            old_args + tuple(old_kwargs.values())):
                if isinstance(a, np.ndarray):
                    assert a.tobytes() == b.tobytes(), f"{name} modified an input"


def test_set_num_threads_while_computing(rng, team):
    """One thread flips the thread count between 1 and 2 while the others compute:
    a call uses the count it started with, so each result is the serial result
    for 1 or for 2 threads, bit for bit."""
    calls = make_calls(rng)
    serial = {}
    for n in (1, 2):
        fastconv.set_num_threads(n)
        for name, f, args, kwargs in calls:
            serial.setdefault(name, []).append(as_bytes(f(*args, **kwargs)))
    stop = threading.Event()
    flips = []
    mismatches = []

    def flipper():
        n = 0
        while not stop.is_set():
            fastconv.set_num_threads(1 + n % 2)
            n += 1
        flips.append(n)

    def work(i):
        for r in range(ROUNDS):
            for j in range(len(calls)):
                name, f, args, kwargs = calls[(i + r + j) % len(calls)]
                if as_bytes(f(*args, **kwargs)) not in serial[name]:
                    mismatches.append((i, r, name))

    flip = threading.Thread(target=flipper)
    flip.start()
    try:
        run_threads(work, N_THREADS - 1)
    finally:
        stop.set()
        flip.join()
    assert flips and flips[0] > 1, "the thread count was never changed"
    assert not mismatches, f"results corrupted: {mismatches[:5]}"
    assert fastconv.get_num_threads() in (1, 2)


@pytest.fixture
def no_preemption():
    """Python threads switch only when one blocks or a C extension releases the GIL;
    the kernels run on one OpenMP thread, so a core stays free for the waiting thread."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    fastconv.set_num_threads(1)
    yield
    sys.setswitchinterval(old)
    fastconv.set_num_threads(None)


def test_kernels_release_the_gil(rng, no_preemption):
    """A waiting thread runs while another is inside a kernel.

    With preemption off, the main thread (waiting for the GIL after starting
    the worker) can only run once the worker releases it: inside the kernel's
    ``nogil`` section if there is one, else when the worker finishes. It
    records whether the worker had finished by then. Whether the main thread
    wakes before a short kernel ends depends on the OS scheduler, so each call
    gets up to 200 tries; a kernel that holds the GIL never lets it in early.
    No NumPy operation on the way to a kernel may release the GIL first: the
    arguments are contiguous float32 (nothing is copied), and
    conv2d_backward's weight is under the 500 elements above which NumPy's
    isfinite would release it.
    """
    x = rng.standard_normal((8, 16, 128, 128)).astype(np.float32)
    xc = rng.standard_normal((4, 8, 96, 96)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    wb = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((4, 4, 96, 96)).astype(np.float32)
    calls = [
        ("conv2d[direct]", lambda: fastconv.conv2d(xc, w, padding=1, algorithm="direct")),
        ("conv2d[im2col]", lambda: fastconv.conv2d(xc, w, padding=1, algorithm="im2col")),
        ("conv2d_backward[direct]",
         lambda: fastconv.conv2d_backward(gy, xc, wb, padding=1, algorithm="direct")),
        ("conv2d_backward[im2col]",
         lambda: fastconv.conv2d_backward(gy, xc, wb, padding=1, algorithm="im2col")),
        ("max_pool2d", lambda: fastconv.max_pool2d(x, 3, 1, 1, return_indices=True)),
        ("max_pool2d_backward", lambda: fastconv.max_pool2d_backward(x, x, 3, 1, 1)),
        ("avg_pool2d", lambda: fastconv.avg_pool2d(x, 3, 1, 1)),
        ("avg_pool2d_backward", lambda: fastconv.avg_pool2d_backward(x, x, 3, 1, 1)),
        ("adaptive_max_pool2d", lambda: fastconv.adaptive_max_pool2d(x, (127, 127))),
        ("adaptive_max_pool2d_backward",
         lambda: fastconv.adaptive_max_pool2d_backward(x, x, (128, 128))),
        ("adaptive_avg_pool2d", lambda: fastconv.adaptive_avg_pool2d(x, (127, 127))),
        ("adaptive_avg_pool2d_backward",
         lambda: fastconv.adaptive_avg_pool2d_backward(x, x, (128, 128))),
    ]
    held = []
    for name, call in calls:
        for _ in range(200):
            done = []

            def worker():
                call()
                done.append(True)

            t = threading.Thread(target=worker)
            # start() waits for the worker to begin, and returns (with the
            # GIL) only once the worker releases it
            t.start()
            early = not done
            t.join()
            if early:
                break
        else:
            held.append(name)
    assert not held, f"these calls held the GIL throughout: {held}"
