"""No leaks: 10,000 calls of every function, valid or failing, keep memory flat;
a workspace that cannot be allocated raises MemoryError, never a crash.

Two measures: the resident set size (/proc/self/statm), which catches a
workspace or an output array left behind (each call here allocates a few KiB
at least, so a leak would grow it by tens of MiB against an allowance of 4
MiB); and the number of blocks Python's allocator holds
(``sys.getallocatedblocks``), which catches a leaked reference, even of a
small object, one block per call. Under AddressSanitizer (tools/sanitize.sh)
the quarantine of freed memory makes the RSS meaningless, so only the block
count is checked there.

Allocation failures are provoked in a child interpreter whose address space
is capped (RLIMIT_AS) just above what it holds, so every failure is
deterministic whatever the machine's overcommit policy (under ASan, whose
allocator is capped instead); the child then fails the same call 300 times
and checks that the failures leak nothing either.
"""
import gc
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv

CALLS = 10_000
WARMUP = 300
RSS_ALLOWANCE = 4 * 2**20
BLOCK_ALLOWANCE = 200  # interned strings, caches filled once: not per call
SANITIZED = bool(os.environ.get("FASTCONV_SANITIZED"))
LINUX = sys.platform.startswith("linux")


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(call, n=CALLS):
    """(RSS growth, allocated-block growth) over n calls, after a warm-up."""
    for _ in range(WARMUP):
        call()
    gc.collect()
    r0, b0 = rss() if LINUX else 0, sys.getallocatedblocks()
    for _ in range(n):
        call()
    gc.collect()
    return (rss() - r0 if LINUX else 0), sys.getallocatedblocks() - b0


def raises(call, exc):
    def run():
        try:
            call()
        except exc:
            return
        raise AssertionError("no exception")
    return run


def make_calls():
    """name -> a zero-argument call; small inputs, each call a few KiB of work."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 12, 11)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    w1 = rng.standard_normal((6, 4, 1, 1)).astype(np.float32)
    ckw = dict(padding=1, groups=2)
    y = fastconv.conv2d(x, w, **ckw)
    mp, idx = fastconv.max_pool2d(x, 3, 2, 1, return_indices=True)
    ap = fastconv.avg_pool2d(x, 3, 2, 1)
    amp, aidx = fastconv.adaptive_max_pool2d(x, (5, 4), return_indices=True)
    bad_idx = idx.copy()
    bad_idx[0, 0, 0, 0] = 10**6
    out = np.empty_like(y)
    calls = {
        "conv2d[direct]": lambda: fastconv.conv2d(x, w, b, algorithm="direct", **ckw),
        "conv2d[im2col]": lambda: fastconv.conv2d(x, w, b, algorithm="im2col", out=out, **ckw),
        "conv2d[1x1]": lambda: fastconv.conv2d(x, w1, algorithm="1x1"),
        "conv2d_backward[direct]": lambda: fastconv.conv2d_backward(y, x, w, algorithm="direct",
                                                                    **ckw),
        "conv2d_backward[im2col]": lambda: fastconv.conv2d_backward(y, x, w, algorithm="im2col",
                                                                    **ckw),
        "max_pool2d": lambda: fastconv.max_pool2d(x, 3, 2, 1, return_indices=True),
        "max_pool2d_backward": lambda: fastconv.max_pool2d_backward(mp, x, 3, 2, 1),
        "max_pool2d_backward[indices]": lambda: fastconv.max_pool2d_backward(mp, x, 3, 2, 1,
                                                                             indices=idx),
        "avg_pool2d": lambda: fastconv.avg_pool2d(x, 3, 2, 1),
        "avg_pool2d_backward": lambda: fastconv.avg_pool2d_backward(ap, x, 3, 2, 1),
        "adaptive_max_pool2d": lambda: fastconv.adaptive_max_pool2d(x, (5, 4), True),
        "adaptive_max_pool2d_backward": lambda: fastconv.adaptive_max_pool2d_backward(
            amp, x, (5, 4), indices=aidx),
        "adaptive_avg_pool2d": lambda: fastconv.adaptive_avg_pool2d(x, (5, 4)),
        "adaptive_avg_pool2d_backward": lambda: fastconv.adaptive_avg_pool2d_backward(
            amp, x, (5, 4)),
        # failing calls: refused by the argument checks ...
        "error:conv2d-stride": raises(lambda: fastconv.conv2d(x, w, stride=0), ValueError),
        "error:conv2d-dtype": raises(lambda: fastconv.conv2d(x.astype(complex), w), TypeError),
        "error:conv2d_backward-shape": raises(
            lambda: fastconv.conv2d_backward(y[:, :, 1:], x, w, **ckw), ValueError),
        "error:avg_pool2d-divisor": raises(
            lambda: fastconv.avg_pool2d(x, 2, divisor_override=0), ValueError),
        "error:adaptive_avg_pool2d-size": raises(
            lambda: fastconv.adaptive_avg_pool2d(x, (0, 2)), ValueError),
        # ... or by a kernel, after it allocated its tables
        "error:max_pool2d_backward-indices": raises(
            lambda: fastconv.max_pool2d_backward(mp, x, 3, 2, 1, indices=bad_idx), ValueError),
        "error:max_pool2d-index-span": raises(
            lambda: fastconv.max_pool2d(x, (1, 2**31), padding=(0, 2**30), return_indices=True),
            ValueError),
    }
    return calls


CALL_NAMES = list(make_calls())


@pytest.fixture(scope="module")
def calls():
    return make_calls()


@pytest.mark.skipif(SANITIZED, reason="ASan's quarantine keeps freed memory resident")
@pytest.mark.skipif(not LINUX, reason="reads /proc/self/statm")
@pytest.mark.parametrize("name", CALL_NAMES)
def test_rss_does_not_grow(calls, name):
    grown, _ = measure(calls[name])
    assert grown <= RSS_ALLOWANCE, (
        f"{name}: RSS grew by {grown / 2**20:.1f} MiB over {CALLS} calls")


@pytest.mark.parametrize("name", CALL_NAMES)
def test_python_objects_do_not_leak(calls, name):
    _, blocks = measure(calls[name], n=CALLS // 5)
    assert blocks <= BLOCK_ALLOWANCE, (
        f"{name}: {blocks} more allocated blocks after {CALLS // 5} calls")


# --------------------------------------------------------------------------
# allocation failures


CHILD = textwrap.dedent(
    """
    import gc, os, resource, sys
    import numpy as np
    import fastconv

    fastconv.set_num_threads(1)  # no thread to start under the cap
    case, margin_mib = sys.argv[1], int(sys.argv[2])
    f32 = np.float32
    x = np.ones((1, 2, 5, 7), f32)
    # workspaces of terabytes behind small arrays (windows and strides of 2**20+) ...
    huge_pool = dict(kernel_size=(1, 2**36), padding=(0, 2**35))
    # ... or just above the cap (the output, allocated first, fits under it)
    wide = np.ones((1, 1, 1, 1), f32)
    g_wide = np.ones((1, 1, 1, 2**22), f32)
    w_big = np.ones((256, 256, 3, 3), f32)
    # 440 output pixels: two blocks on one thread (384 and more than a panel
    # over), so the weights are packed
    x_big = np.ones((1, 256, 22, 24), f32)
    out_big = np.empty((1, 256, 20, 22), f32)
    calls = {
        "max_pool2d": lambda: fastconv.max_pool2d(x, **huge_pool),
        # (row buffers under 2**31 positions: the argmax is recomputed as int32 offsets)
        "max_pool2d_backward": lambda: fastconv.max_pool2d_backward(
            np.ones((1, 2, 5, 8), f32), x, (1, 2**28), 1, padding=(0, 2**27)),
        "avg_pool2d": lambda: fastconv.avg_pool2d(x, **huge_pool),
        "avg_pool2d_backward": lambda: fastconv.avg_pool2d_backward(
            np.ones((1, 2, 5, 1), f32), x, **huge_pool),
        "adaptive_max_pool2d": lambda: fastconv.adaptive_max_pool2d(wide, (1, 2**22)),
        "adaptive_max_pool2d_backward": lambda: fastconv.adaptive_max_pool2d_backward(
            g_wide, wide, (1, 2**22)),
        "adaptive_avg_pool2d": lambda: fastconv.adaptive_avg_pool2d(wide, (1, 2**22)),
        "adaptive_avg_pool2d_backward": lambda: fastconv.adaptive_avg_pool2d_backward(
            g_wide, wide, (1, 2**22)),
        "conv2d[direct]": lambda: fastconv.conv2d(
            x, np.ones((3, 2, 1, 1), f32), stride=2**20, padding=2**20, algorithm="direct"),
        "conv2d[im2col]": lambda: fastconv.conv2d(x_big, w_big, algorithm="im2col",
                                                  out=out_big),
        "conv2d_backward[direct]": lambda: fastconv.conv2d_backward(
            np.ones((1, 3, 3, 3), f32), x, np.ones((3, 2, 1, 1), f32), stride=2**20,
            padding=2**20, algorithm="direct"),
        "conv2d_backward[im2col]": lambda: fastconv.conv2d_backward(
            np.ones((1, 3, 5, 7), f32), x, np.ones((3, 2, 2, 1), f32), dilation=(2**20, 1),
            padding=(2**19, 0), algorithm="im2col"),
    }
    call = calls[case]
    name = case.split("[")[0]

    def vm():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def fail_once():
        try:
            call()
        except MemoryError as exc:
            assert str(exc).startswith(name + ": "), exc
            return
        raise AssertionError("no MemoryError")

    gc.collect()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if margin_mib:  # (under ASan, whose shadow takes terabytes, max_allocation_size_mb)
        resource.setrlimit(resource.RLIMIT_AS, (vm() + margin_mib * 2**20, hard))
    fail_once()
    for _ in range(20):
        fail_once()
    gc.collect()
    r0 = rss()
    for _ in range(300):
        fail_once()
    gc.collect()
    grown = rss() - r0
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    print(grown)
    """
)

# margins (MiB) above the child's address space: room for the call's output
# and small objects, not for its workspace
MARGINS = {
    "adaptive_max_pool2d": 48,  # output and indices: 16 + 32 MiB; tables: 128 MiB
    "adaptive_max_pool2d_backward": 56,  # the argmax recomputed: 16 + 32 MiB
    "adaptive_avg_pool2d": 24,
    "conv2d[im2col]": 1,  # the packed weights: 2.4 MiB
}


@pytest.mark.skipif(not LINUX, reason="RLIMIT_AS and /proc are Linux's")
@pytest.mark.parametrize("case", [
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_max_pool2d", "adaptive_max_pool2d_backward", "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward", "conv2d[direct]", "conv2d[im2col]",
    "conv2d_backward[direct]", "conv2d_backward[im2col]"])
def test_workspace_failure_raises_memory_error(case, tmp_path):
    margin = MARGINS.get(case, 16)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if SANITIZED:
        # ASan's shadow memory takes terabytes of address space, so no RLIMIT_AS:
        # its allocator refuses (returns NULL for) anything above 64 MiB instead,
        # which fails every workspace here but conv2d[im2col]'s 2.4 MiB
        if case == "conv2d[im2col]":
            pytest.skip("its workspace is below the allocation cap ASan can set")
        margin = 0
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":max_allocation_size_mb=64"
    out = subprocess.run([sys.executable, "-c", CHILD, case, str(margin)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, f"{case}: exit {out.returncode}\n{out.stderr[-3000:]}"
    grown = int(out.stdout.strip().splitlines()[-1])
    if not SANITIZED:  # (ASan's quarantine keeps the freed partial workspaces)
        assert grown <= RSS_ALLOWANCE, f"{case}: 300 failures grew the RSS by {grown} bytes"
