"""The benchmark behind ``python -m fastconv bench`` and ``benchmarks/``.

Everything both the command line and the pytest-benchmark suites need lives
here, so the two time exactly the same calls on exactly the same data:

- the yardstick layers (``shapes.json`` bundled beside this module, or any file
  of the same format) and their FLOP / byte counts;
- seeded inputs for a layer;
- the callables timed for each entry: every fastconv strategy, PyTorch
  (``torch.nn.functional`` forward, ``torch.ops.aten.convolution_backward``
  and the pooling backward ops) and the plain-NumPy baseline
  (:func:`numpy_conv2d`: ``as_strided`` im2col + one matmul, as NumPy users
  write it);
- the timing loop, the environment header, the table and the JSON dump.

Conventions: FLOPs of a convolution are ``2*N*K*P*Q*(C/groups)*R*S`` and its
backward (grad input + grad weight) counts twice that; a pooling layer moves
``input bytes + output bytes`` (its backward: grad_output + grad_input, the
same amount).  Every time reported is a median; the entries of one layer
are timed round-robin so that load from elsewhere hits them alike.  Each
entry's result is compared once per layer with fastconv's ``algorithm="auto"``
result, so a wrong answer is never timed silently, and inputs are read-only,
so an entry that writes to its input fails instead of corrupting the others'.
"""
import argparse
import contextlib
import functools
import gc
import json
import math
import os
import platform
import sys
import time
from importlib import resources

import numpy as np

import fastconv
from fastconv import _choose, _params

STRATEGIES = ("direct", "im2col", "1x1", "winograd", "auto")
PEERS = ("torch", "numpy")
# Peers that have an implementation of each kind of benchmark.
_SECTION_PEERS = {
    "conv2d": ("torch", "numpy"),
    "conv2d_backward": ("torch",),
    "pool": ("torch",),
    "pool_backward": ("torch",),
}
_SECTION_TITLES = {
    "conv2d": "conv2d forward",
    "conv2d_backward": "conv2d_backward (grad input + grad weight + grad bias)",
    "pool": "pooling forward",
    "pool_backward": "pooling backward",
}
# Agreement required between an entry and fastconv's "auto" result, relative
# to the largest magnitude of the auto result.  Loose enough for any summation
# order over the yardstick's reduction lengths, tight enough that a wrong
# answer (an O(1) relative error) never passes.
_RTOL = {np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-9}
# Environment variables that make OpenBLAS pick a kernel other than the best
# one for this CPU (or mis-size its blocking).
_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# OpenMP settings that change multi-threaded timings (reported when set).
_OMP_VARS = ("OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


# --------------------------------------------------------------------------
# layers


_CONV_DEFAULTS = {"stride": 1, "pad": 0, "dilation": 1, "groups": 1}
_CONV_REQUIRED = ("name", "N", "C", "H", "W", "K", "R", "S")
_POOL_DEFAULTS = {"pad": 0, "dilation": 1, "ceil_mode": False}
_POOL_REQUIRED = ("name", "N", "C", "H", "W", "k", "kind")
# Integer fields and their smallest valid value (ceil_mode is a bool).
_MINIMUM = {
    "N": 0, "C": 1, "H": 1, "W": 1, "K": 1, "R": 1, "S": 1, "k": 1,
    "stride": 1, "pad": 0, "dilation": 1, "groups": 1,
}


def load_shapes(path=None):
    """Read a shapes file (default: the bundled yardstick).

    Returns ``{"conv": [layer, ...], "pool": [layer, ...]}`` with every
    optional field filled in (conv: ``stride``, ``pad``, ``dilation``,
    ``groups``; pool: ``stride`` = ``k``, ``pad``, ``dilation``,
    ``ceil_mode``).  Raises ValueError naming the file and the layer when a
    field is missing or a name repeats.
    """
    if path is None:
        text = resources.files("fastconv").joinpath("shapes.json").read_text()
        where = "bundled shapes.json"
    else:
        with open(path) as f:
            text = f.read()
        where = os.fspath(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"bench: {where} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not set(data) <= {"conv", "pool"}:
        raise ValueError(f'bench: {where} must hold an object with "conv" and/or "pool" lists')
    shapes = {"conv": [], "pool": []}
    seen = set()
    for kind, required, defaults in (
        ("conv", _CONV_REQUIRED, _CONV_DEFAULTS),
        ("pool", _POOL_REQUIRED, _POOL_DEFAULTS),
    ):
        for i, layer in enumerate(data.get(kind, [])):
            name = layer.get("name", f"#{i}") if isinstance(layer, dict) else f"#{i}"
            if not isinstance(layer, dict):
                raise ValueError(f"bench: {where}: {kind} layer {name} must be an object")
            missing = [key for key in required if key not in layer]
            if missing:
                raise ValueError(
                    f"bench: {where}: {kind} layer {name!r} lacks {', '.join(missing)}"
                )
            if name in seen:
                raise ValueError(f"bench: {where}: layer name {name!r} appears twice")
            seen.add(name)
            full = dict(defaults)
            if kind == "pool":
                full["stride"] = layer["k"]
            full.update(layer)
            for key, value in full.items():
                minimum = _MINIMUM.get(key)
                if minimum is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                    raise ValueError(
                        f"bench: {where}: {kind} layer {name!r}: {key} must be an int >= "
                        f"{minimum}, got {value!r}"
                    )
            if kind == "pool" and full["kind"] not in ("max", "avg"):
                raise ValueError(
                    f"bench: {where}: pool layer {name!r}: kind must be 'max' or 'avg', "
                    f"got {full['kind']!r}"
                )
            if kind == "pool" and full["kind"] == "avg" and full["dilation"] != 1:
                raise ValueError(
                    f"bench: {where}: pool layer {name!r}: avg pooling has no dilation, "
                    f"got {full['dilation']!r}"
                )
            if kind == "conv" and (full["C"] % full["groups"] or full["K"] % full["groups"]):
                raise ValueError(
                    f"bench: {where}: conv layer {name!r}: groups must divide C and K, "
                    f"got groups={full['groups']}, C={full['C']}, K={full['K']}"
                )
            shapes[kind].append(full)
    return shapes


def conv_strategies(layer, backward=False):
    """The fastconv strategies that apply to a conv layer ("1x1" needs R == S == 1;
    "winograd" the kernels' own rule, fastconv._choose.winograd_fits, and
    winograd_backward_fits for a backward)."""
    pointwise = layer["R"] == 1 and layer["S"] == 1
    g = _params.conv_geometry(
        "bench", np.empty((0, layer["C"], layer["H"], layer["W"])),
        np.empty((layer["K"], layer["C"] // layer["groups"], layer["R"], layer["S"])), None,
        layer["stride"], layer["pad"], layer["dilation"], layer["groups"])
    winograd = (_choose.winograd_backward_fits if backward else _choose.winograd_fits)(g)
    return tuple(s for s in STRATEGIES
                 if (s != "1x1" or pointwise) and (s != "winograd" or winograd))


def conv_flops(layer, out_shape):
    """FLOPs of one forward convolution of ``layer`` producing ``out_shape``."""
    n, k, p, q = out_shape
    return 2 * n * k * p * q * (layer["C"] // layer["groups"]) * layer["R"] * layer["S"]


def describe(layer):
    """A one-line description of a layer's shape and arguments."""
    shape = f"{layer['N']}x{layer['C']}x{layer['H']}x{layer['W']}"
    if "K" in layer:
        text = (
            f"{shape} * {layer['K']}x{layer['C'] // layer['groups']}x{layer['R']}x{layer['S']}"
            f" stride {layer['stride']} pad {layer['pad']}"
        )
        if layer["dilation"] != 1:
            text += f" dilation {layer['dilation']}"
        if layer["groups"] != 1:
            text += f" groups {layer['groups']}"
        return text
    text = f"{shape} {layer['kind']} {layer['k']}x{layer['k']}"
    text += f" stride {layer['stride']} pad {layer['pad']}"
    if layer["dilation"] != 1:
        text += f" dilation {layer['dilation']}"
    if layer["ceil_mode"]:
        text += " ceil_mode"
    return text


def _layer_key(layer):
    return tuple(sorted(layer.items()))


@functools.lru_cache(maxsize=4)
def _conv_inputs(key, dtype, seed):
    layer = dict(key)
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    x = rng.uniform(-1, 1, (layer["N"], layer["C"], layer["H"], layer["W"])).astype(dtype)
    cg = layer["C"] // layer["groups"]
    w = rng.uniform(-1, 1, (layer["K"], cg, layer["R"], layer["S"])).astype(dtype)
    w /= np.sqrt(cg * layer["R"] * layer["S"])  # keep outputs O(1) whatever the fan-in
    b = rng.uniform(-1, 1, layer["K"]).astype(dtype)
    for a in (x, w, b):
        a.flags.writeable = False
    return x, w, b


def conv_inputs(layer, dtype, seed=0):
    """Seeded read-only ``(input, weight, bias)`` for a conv layer (cached)."""
    return _conv_inputs(_layer_key(layer), np.dtype(dtype).name, seed)


@functools.lru_cache(maxsize=4)
def _pool_input(key, dtype, seed):
    layer = dict(key)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (layer["N"], layer["C"], layer["H"], layer["W"])).astype(dtype)
    x.flags.writeable = False
    return x


def pool_input(layer, dtype, seed=0):
    """A seeded read-only input for a pooling layer (cached)."""
    return _pool_input(_layer_key(layer), np.dtype(dtype).name, seed)


def _grad_like(shape, dtype, seed=1):
    g = np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)
    g.flags.writeable = False
    return g


# --------------------------------------------------------------------------
# the NumPy baseline


def numpy_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Convolution the way NumPy users write it: ``as_strided`` im2col + one matmul.

    The ``conv_forward_strides`` of Stanford's CS231n assignments, extended to
    dilation and groups (a batched matmul over the groups).  It materialises
    the full im2col matrix ``(C*R*S, N*P*Q)``.  Symmetric integer or pair
    ``padding`` only.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    w : ndarray of shape (K, C // groups, R, S)
    b : ndarray of shape (K,) or None
    stride, padding, dilation : int or (int, int)
    groups : int

    Returns
    -------
    ndarray of shape (N, K, P, Q), ``P = (H + 2*ph - dh*(R-1) - 1) // sh + 1``.
    """
    x = np.asarray(x)
    w = np.asarray(w)
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    ph, pw = (padding, padding) if np.isscalar(padding) else padding
    dh, dw = (dilation, dilation) if np.isscalar(dilation) else dilation
    g = groups
    kg = k // g
    if ph or pw:
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    else:
        xp = np.ascontiguousarray(x)
    hp, wp = h + 2 * ph, wd + 2 * pw
    p = (hp - dh * (r - 1) - 1) // sh + 1
    q = (wp - dw * (s - 1) - 1) // sw + 1
    s_n, s_c, s_h, s_w = xp.strides
    view = np.lib.stride_tricks.as_strided(
        xp,
        shape=(g, cg, r, s, n, p, q),
        strides=(cg * s_c, s_c, dh * s_h, dw * s_w, s_n, sh * s_h, sw * s_w),
        writeable=False,
    )
    cols = view.reshape(g, cg * r * s, n * p * q)  # the copy: the full im2col matrix
    if g == 1:
        out = w.reshape(k, cg * r * s) @ cols[0]
    else:
        out = np.matmul(w.reshape(g, kg, cg * r * s), cols)
    out = out.reshape(k, n, p, q)
    if b is not None:
        out += np.asarray(b, dtype=out.dtype).reshape(k, 1, 1, 1)
    return np.ascontiguousarray(out.transpose(1, 0, 2, 3))


# --------------------------------------------------------------------------
# what gets timed


def import_torch():
    """torch, or None when it is not installed (or does not import)."""
    try:
        import torch
    except Exception:  # a broken install counts as absent
        return None
    return torch


def conv_forward_call(layer, impl, dtype, seed=0, torch=None):
    """A zero-argument callable running ``layer``'s forward with ``impl``.

    ``impl`` is a fastconv strategy ("direct", "im2col", "1x1", "winograd", "auto"),
    "torch" or "numpy".  Inputs are built (and cached) here, outside any timed
    region.  Returns None when ``impl`` is "torch" and torch is absent.
    """
    x, w, b = conv_inputs(layer, dtype, seed)
    st, pad, dil, g = layer["stride"], layer["pad"], layer["dilation"], layer["groups"]
    if impl in STRATEGIES:
        return functools.partial(fastconv.conv2d, x, w, b, st, pad, dil, g, algorithm=impl)
    if impl == "numpy":
        return functools.partial(numpy_conv2d, x, w, b, st, pad, dil, g)
    if impl == "torch":
        torch = torch or import_torch()
        if torch is None:
            return None
        # from_numpy needs writeable arrays; copies are made once, here.
        xt, wt, bt = (torch.from_numpy(a.copy()) for a in (x, w, b))
        conv = torch.nn.functional.conv2d

        def call():
            return conv(xt, wt, bt, st, pad, dil, g).numpy()

        return call
    raise ValueError(f"bench: unknown conv forward implementation {impl!r}")


def conv_backward_call(layer, impl, dtype, grad_output_shape, seed=0, torch=None):
    """A zero-argument callable computing ``(grad_input, grad_weight, grad_bias)``.

    ``impl`` is a fastconv strategy or "torch" (``aten.convolution_backward``
    with all three outputs requested).  Returns None when torch is absent.
    """
    x, w, _ = conv_inputs(layer, dtype, seed)
    go = _grad_like(grad_output_shape, x.dtype)
    st, pad, dil, g = layer["stride"], layer["pad"], layer["dilation"], layer["groups"]
    if impl in STRATEGIES:
        return functools.partial(
            fastconv.conv2d_backward, go, x, w, st, pad, dil, g, algorithm=impl
        )
    if impl == "torch":
        torch = torch or import_torch()
        if torch is None:
            return None
        got, xt, wt = (torch.from_numpy(a.copy()) for a in (go, x, w))
        op = torch.ops.aten.convolution_backward
        # bias_sizes, stride, padding, dilation, transposed, output_padding, groups, output_mask
        args = ([layer["K"]], [st, st], [pad, pad], [dil, dil], False, [0, 0], g, [True] * 3)

        def call():
            return tuple(t.numpy() for t in op(got, xt, wt, *args))

        return call
    raise ValueError(f"bench: unknown conv backward implementation {impl!r}")


def _pool_args(layer):
    return layer["k"], layer["stride"], layer["pad"]


def pool_forward_call(layer, impl, dtype, seed=0, torch=None):
    """A zero-argument callable running ``layer``'s pooling with "fastconv" or "torch"."""
    x = pool_input(layer, dtype, seed)
    k, st, pad = _pool_args(layer)
    dil, ceil = layer["dilation"], layer["ceil_mode"]
    if impl == "fastconv":
        if layer["kind"] == "max":
            return functools.partial(fastconv.max_pool2d, x, k, st, pad, dil, ceil)
        return functools.partial(fastconv.avg_pool2d, x, k, st, pad, ceil)
    if impl == "torch":
        torch = torch or import_torch()
        if torch is None:
            return None
        xt = torch.from_numpy(x.copy())
        F = torch.nn.functional
        if layer["kind"] == "max":
            return lambda: F.max_pool2d(xt, k, st, pad, dil, ceil).numpy()
        return lambda: F.avg_pool2d(xt, k, st, pad, ceil).numpy()
    raise ValueError(f"bench: unknown pooling implementation {impl!r}")


def pool_backward_call(layer, impl, dtype, seed=0, torch=None):
    """A zero-argument callable returning grad_input of ``layer``'s pooling.

    Max pooling passes the indices saved by the forward to both fastconv and
    torch (``aten.max_pool2d_with_indices_backward``), as a training step
    would; average pooling uses ``aten.avg_pool2d_backward``.
    """
    x = pool_input(layer, dtype, seed)
    k, st, pad = _pool_args(layer)
    dil, ceil = layer["dilation"], layer["ceil_mode"]
    if impl == "fastconv":
        if layer["kind"] == "max":
            out, idx = fastconv.max_pool2d(x, k, st, pad, dil, ceil, return_indices=True)
            go = _grad_like(out.shape, x.dtype)
            return functools.partial(
                fastconv.max_pool2d_backward, go, x, k, st, pad, dil, ceil, indices=idx
            )
        out = fastconv.avg_pool2d(x, k, st, pad, ceil)
        go = _grad_like(out.shape, x.dtype)
        return functools.partial(fastconv.avg_pool2d_backward, go, x, k, st, pad, ceil)
    if impl == "torch":
        torch = torch or import_torch()
        if torch is None:
            return None
        xt = torch.from_numpy(x.copy())
        F = torch.nn.functional
        aten = torch.ops.aten
        if layer["kind"] == "max":
            out, idx = F.max_pool2d(xt, k, st, pad, dil, ceil, return_indices=True)
            got = torch.from_numpy(_grad_like(tuple(out.shape), x.dtype).copy())
            args = ([k, k], [st, st], [pad, pad], [dil, dil], ceil, idx)
            return lambda: aten.max_pool2d_with_indices_backward(got, xt, *args).numpy()
        out = F.avg_pool2d(xt, k, st, pad, ceil)
        got = torch.from_numpy(_grad_like(tuple(out.shape), x.dtype).copy())
        args = ([k, k], [st, st], [pad, pad], ceil, True, None)
        return lambda: aten.avg_pool2d_backward(got, xt, *args).numpy()
    raise ValueError(f"bench: unknown pooling implementation {impl!r}")


# --------------------------------------------------------------------------
# measuring and checking


def measure_interleaved(fns, repeat=5, min_time=0.2, max_samples=100_000, settle=0.0):
    """Time single calls of each callable in ``fns`` (name -> callable), round-robin.

    Each round calls every entry that still needs samples once, so a burst of
    load from elsewhere on a shared machine hits all entries alike instead of
    whichever happened to be running.  An entry needs samples until it has
    ``repeat`` of them and its calls (with their settling) add up to
    ``min_time`` seconds.  The
    caller runs a warm-up call first; the garbage collector is off while
    timing, as in :mod:`timeit`.  Returns ``(times, errors)``: name -> list of
    per-call seconds, and name -> exception for entries that raised.

    ``settle``: seconds of untimed calls before each timed one.  On several
    threads, each library's OpenMP runtime (torch bundles its own) keeps its
    idle workers spinning for milliseconds after a call; timed right after
    another library, an entry would share the cores with those spinners.
    """
    times = {name: [] for name in fns}
    spent = dict.fromkeys(fns, 0.0)
    errors = {}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while True:
            pending = [
                name
                for name, t in times.items()
                if name not in errors
                and len(t) < max_samples
                and (len(t) < repeat or spent[name] < min_time)
            ]
            if not pending:
                return times, errors
            for name in pending:
                fn = fns[name]
                try:
                    ts = time.perf_counter()
                    while time.perf_counter() - ts < settle:
                        fn()
                    t0 = time.perf_counter()
                    fn()
                    t1 = time.perf_counter()
                except Exception as exc:
                    errors[name] = exc
                    continue
                times[name].append(t1 - t0)
                # settling counts towards min_time: a sub-millisecond entry
                # would otherwise settle 30 ms for each of its ~1000 samples
                spent[name] += t1 - ts
    finally:
        if gc_was_enabled:
            gc.enable()


def measure(fn, repeat=5, min_time=0.2, max_samples=100_000):
    """Per-call times (s) of ``fn``: see :func:`measure_interleaved`."""
    times, errors = measure_interleaved({"fn": fn}, repeat, min_time, max_samples)
    if errors:
        raise errors["fn"]
    return times["fn"]


def compare(result, expected):
    """Largest abs difference between two results (arrays or tuples of arrays)
    and the tolerance it must meet; ``(inf, tol)`` on a shape mismatch."""
    if not isinstance(result, tuple):
        result, expected = (result,), (expected,)
    worst, worst_tol = 0.0, 0.0
    for r, e in zip(result, expected):
        r, e = np.asarray(r), np.asarray(e)
        rtol = _RTOL.get(e.dtype, 1e-3)
        tol = rtol * max(1.0, float(np.max(np.abs(e)))) if e.size else 0.0
        if r.shape != e.shape:
            return math.inf, tol
        diff = float(np.max(np.abs(r.astype(np.float64) - e))) if e.size else 0.0
        if not diff <= tol:  # also catches NaN
            return (math.inf if math.isnan(diff) else diff), tol
        if diff / tol >= (worst / worst_tol if worst_tol else 0.0):
            worst, worst_tol = diff, tol
    return worst, worst_tol


def gemm_call(dtype, n=1536):
    """An ``n x n x n`` GEMM through NumPy's BLAS (fastconv itself calls no
    BLAS), warmed up: the yardstick for "% of SGEMM"."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(2)
    a = rng.uniform(-1, 1, (n, n)).astype(dtype)
    b = rng.uniform(-1, 1, (n, n)).astype(dtype)
    fn = functools.partial(np.matmul, a, b)
    fn()
    return fn


def gemm_rate(dtype, n=1536, repeat=5, min_time=0.2):
    """GFLOP/s of the GEMM yardstick, the best of at least 5 calls: what the
    machine can do, so a burst of load from elsewhere should not lower it.
    Returns ``(gflops, label)``.
    """
    name = ("SGEMM" if np.dtype(dtype) == np.float32 else "DGEMM") + f" {n}^3"
    t = min(measure(gemm_call(dtype, n), max(repeat, 5), min_time))
    time.sleep(BLAS_COOLDOWN_S)  # let BLAS's workers block before anything else is timed
    return 2.0 * n**3 / t / 1e9, f"{name} (numpy matmul)"


# --------------------------------------------------------------------------
# the environment


_ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "asimd", "sve", "sve2",
)


def _available_cpus():
    """CPUs this process may run on.

    With OMP_PROC_BIND/OMP_PLACES set, the OpenMP runtime has already pinned
    the main thread to one place, so the affinity mask no longer tells: count
    the machine's CPUs then.
    """
    bound = any(
        os.environ.get(v, "").lower() not in ("", "false") for v in ("OMP_PROC_BIND", "OMP_PLACES")
    )
    try:
        if not bound:
            return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    return os.cpu_count() or 1


def _fastconv_simd():
    """The SIMD variant each kernel module runs, with the CPU's choices:
    e.g. "_conv avx512, _pool avx512 (of avx512, avx2, baseline)"."""
    import importlib

    parts, choices = [], None
    for name in ("_conv", "_direct", "_pool"):
        try:
            module = importlib.import_module(f"fastconv.{name}")
        except ImportError:
            continue
        if hasattr(module, "simd_variant"):
            parts.append(f"{name} {module.simd_variant()}")
            choices = choices or module.simd_variants()
    if not parts:
        return None
    return ", ".join(parts) + (f" (of {', '.join(choices)})" if choices else "")


def _busy_cpus(interval=0.25):
    """CPUs kept busy by other processes over ``interval`` s while this one sleeps.

    Read from /proc/stat (Linux); None elsewhere.  Unlike the load average,
    it is not raised by a benchmark that just finished.
    """
    def sample():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # guest time is already in user/nice

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def environment(threads, torch=None):
    """Facts about the machine and libraries that the numbers depend on."""
    model, flags, _ = _choose.cpu_info()
    if not model:
        model = platform.processor() or platform.machine() or "unknown CPU"
    env = {
        "cpu": model,
        "isa": [f for f in _ISA_FLAGS if f in flags],
        "cpus_available": _available_cpus(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "fastconv": getattr(fastconv, "__version__", "unknown"),
        "fastconv_simd": _fastconv_simd(),
        "torch": getattr(torch, "__version__", None),
        "threads": threads,
        "threadpools": [],
        "busy_cpus": _busy_cpus(),
        "env": {v: os.environ[v] for v in _OPENBLAS_VARS + _OMP_VARS if v in os.environ},
    }
    try:
        import threadpoolctl

        env["threadpools"] = threadpoolctl.threadpool_info()
    except Exception:  # threadpoolctl is optional for the bench itself
        pass
    return env


def header_lines(env, dtype, gemm):
    lines = [
        f"# fastconv {env['fastconv']} bench: {np.dtype(dtype).name}, {env['threads']} thread(s)"
    ]
    cpu = f"# CPU: {env['cpu']} ({env['cpus_available']} CPUs available"
    cpu += f"; {' '.join(env['isa'])})" if env["isa"] else ")"
    lines.append(cpu)
    if env["fastconv_simd"]:
        lines.append(f"# fastconv kernels: {env['fastconv_simd']}")
    versions = f"# python {env['python']}, numpy {env['numpy']}"
    versions += f", torch {env['torch']}" if env["torch"] else ", torch not used"
    lines.append(versions + f"; {env['platform']}")
    pools = sorted(env["threadpools"], key=lambda p: p.get("user_api") != "blas")
    for pool in pools:
        path = pool.get("filepath", "?")
        lib = os.path.basename(path)
        if pool.get("user_api") == "blas":
            # NumPy's BLAS serves the numpy baseline and the %GEMM yardstick
            user = " [NumPy's: numpy baseline, %GEMM]" if f"{os.sep}numpy" in path else ""
            lines.append(
                f"# BLAS: {pool.get('internal_api')} {pool.get('version')} ({lib}){user}, "
                f"kernel {pool.get('architecture')}, {pool.get('threading_layer')} threading, "
                f"{pool.get('num_threads')} thread(s)"
            )
        else:
            lines.append(
                f"# {pool.get('user_api')}: {lib} ({pool.get('internal_api')}), "
                f"{pool.get('num_threads')} thread(s)"
            )
    if gemm is not None:
        lines.append(f"# {gemm[1]}: {gemm[0]:.1f} GFLOP/s on {env['threads']} thread(s), best run")
    omp_vars = [f"{v}={env['env'][v]}" for v in _OMP_VARS if v in env["env"]]
    if omp_vars:
        lines.append(f"# OpenMP settings: {' '.join(omp_vars)}")
    set_vars = {v: env["env"][v] for v in _OPENBLAS_VARS if v in env["env"]}
    if set_vars:
        lines.append(
            "# WARNING: "
            + ", ".join(f"{k}={v}" for k, v in set_vars.items())
            + " is set: OpenBLAS may run an older kernel or mis-sized blocking; "
            "unset it for representative numbers"
        )
    busy = env["busy_cpus"]
    if busy is not None and busy >= 0.2:
        lines.append(
            f"# WARNING: other processes keep {busy:.1f} of {os.cpu_count()} CPUs busy: "
            "timings will be noisy, most on as many threads as CPUs (a thread team waits "
            "for its slowest member)"
        )
    if env["threads"] > env["cpus_available"]:
        lines.append(
            f"# WARNING: {env['threads']} threads on {env['cpus_available']} available CPUs "
            "oversubscribes the cores"
        )
    return lines


@contextlib.contextmanager
def thread_count(n, torch=None):
    """Run fastconv, torch and BLAS on ``n`` threads; restore all on exit."""
    saved_fastconv = fastconv.get_num_threads()
    saved_torch = torch.get_num_threads() if torch is not None else None
    limiter = contextlib.nullcontext()
    try:
        import threadpoolctl

        limiter = threadpoolctl.threadpool_limits(limits=n, user_api="blas")
    except ImportError:
        pass
    try:
        fastconv.set_num_threads(n)
        if torch is not None:
            torch.set_num_threads(n)
        with limiter:
            yield
    finally:
        fastconv.set_num_threads(saved_fastconv)
        if torch is not None:
            torch.set_num_threads(saved_torch)


# --------------------------------------------------------------------------
# running


#: untimed calls before each timed one when running on several threads: about
#: twice the time GNU OpenMP's idle workers spin (GOMP_SPINCOUNT) on our machines
SETTLE_S = 0.03

#: sleep after multi-threaded OpenBLAS calls (the NumPy peer, the GEMM
#: yardstick): its idle workers spin for 2**28 TSC cycles (0.1 s at 2.6 GHz)
#: before blocking, and 2-thread calls timed meanwhile ran 2-3x slower
BLAS_COOLDOWN_S = 0.2

#: entries that run NumPy's BLAS: timed apart from the others, each followed
#: by BLAS_COOLDOWN_S (interleaved, every round would need that sleep)
_BLAS_PEERS = ("numpy",)


def _run_entries(entries, repeat, min_time):
    """Warm up, check against "auto" (or the first fastconv entry) and time each entry.

    ``entries`` maps impl name -> zero-argument callable (or an exception
    raised while building it).  Returns impl -> record.
    """
    records, outputs, timed = {}, {}, {}
    threaded = fastconv.get_num_threads() > 1
    for impl, fn in entries.items():
        record = {"impl": impl}
        records[impl] = record
        if isinstance(fn, BaseException):
            record["error"] = f"{type(fn).__name__}: {fn}"
            continue
        try:
            outputs[impl] = fn()  # warm-up, and the result to check
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
            continue
        timed[impl] = fn
        if threaded and impl in _BLAS_PEERS:
            time.sleep(BLAS_COOLDOWN_S)
    settle = SETTLE_S if threaded else 0.0
    together = {impl: fn for impl, fn in timed.items() if impl not in _BLAS_PEERS}
    times, errors = measure_interleaved(together, repeat, min_time, settle=settle)
    for impl in [i for i in timed if i in _BLAS_PEERS]:
        apart, failed = measure_interleaved({impl: timed[impl]}, repeat, min_time)
        times.update(apart)
        errors.update(failed)
        if threaded:
            time.sleep(BLAS_COOLDOWN_S)
    for impl, err in errors.items():
        records[impl]["error"] = f"{type(err).__name__}: {err}"
    for impl, t in times.items():
        if impl not in errors:
            records[impl]["times_s"] = t
            records[impl]["median_s"] = float(np.median(t))
    ref_impl = "auto" if "auto" in outputs else next(
        (i for i in outputs if i in STRATEGIES or i == "fastconv"), None
    )
    for impl, out in outputs.items():
        if impl == ref_impl:
            records[impl]["check"] = "ref"
            continue
        if ref_impl is None:
            continue
        diff, tol = compare(out, outputs[ref_impl])
        records[impl]["max_abs_diff"] = diff
        records[impl]["tolerance"] = tol
        records[impl]["check"] = "ok" if diff <= tol else "MISMATCH"
        records[impl]["checked_against"] = ref_impl
    return records


def forward_shape(kind, layer, dtype):
    """The output shape of a layer's forward (from fastconv), None if it fails."""
    try:
        if kind == "conv":
            x, w, b = conv_inputs(layer, dtype)
            args = layer["stride"], layer["pad"], layer["dilation"], layer["groups"]
            return tuple(fastconv.conv2d(x, w, b, *args).shape)
        return tuple(pool_forward_call(layer, "fastconv", dtype)().shape)
    except Exception:
        return None


def _build(factory, *args, **kwargs):
    try:
        return factory(*args, **kwargs)
    except Exception as exc:
        return exc


def _progress(stream, records):
    parts = []
    for impl, rec in records.items():
        if "median_s" in rec:
            text = f"{impl} {rec['median_s'] * 1e3:.3g} ms"
        else:
            text = f"{impl} error"
        if rec.get("check") == "MISMATCH":
            text += " (MISMATCH)"
        parts.append(text)
    print(", ".join(parts), file=stream, flush=True)


def run_benchmarks(shapes, *, dtype, compare_with, backward, repeat, min_time, torch, stream,
                   gemm_size=0):
    """Run every section; returns a list of result records (dicts).

    With ``gemm_size``, the GEMM yardstick is timed right after each
    convolution's entries (median, like theirs) and stored in their records
    as ``gemm_gflops``: the machine's rate at the moment the layer ran, since
    on shared machines it drifts by 10-20% over a run.
    """
    dtype = np.dtype(dtype)
    gemm = gemm_call(dtype, gemm_size) if gemm_size else None
    threaded = fastconv.get_num_threads() > 1
    peers = tuple(compare_with)
    jobs = []
    for layer in shapes["conv"]:
        jobs.append(("conv2d", layer))
    if backward:
        jobs += [("conv2d_backward", layer) for layer in shapes["conv"]]
    jobs += [("pool", layer) for layer in shapes["pool"]]
    if backward:
        jobs += [("pool_backward", layer) for layer in shapes["pool"]]
    results = []
    out_shapes = {}
    width = len(str(len(jobs)))
    for index, (section, layer) in enumerate(jobs, 1):
        print(
            f"[{index:{width}d}/{len(jobs)}] {_SECTION_TITLES[section].split(' (')[0]} "
            f"{layer['name']} ({describe(layer)}): ",
            end="",
            file=stream,
            flush=True,
        )
        section_peers = [p for p in peers if p in _SECTION_PEERS[section]]
        kind = "conv" if section.startswith("conv2d") else "pool"
        if layer["name"] not in out_shapes:
            out_shapes[layer["name"]] = forward_shape(kind, layer, dtype)
        out_shape = out_shapes[layer["name"]]
        entries = {}
        if section == "conv2d":
            for impl in conv_strategies(layer) + tuple(section_peers):
                entries[impl] = _build(conv_forward_call, layer, impl, dtype, torch=torch)
        elif section == "conv2d_backward":
            for impl in conv_strategies(layer, backward=True) + tuple(section_peers):
                entries[impl] = _build(
                    conv_backward_call, layer, impl, dtype, out_shape or (0, 0, 0, 0), torch=torch
                )
        elif section == "pool":
            for impl in ("fastconv",) + tuple(section_peers):
                entries[impl] = _build(pool_forward_call, layer, impl, dtype, torch=torch)
        else:
            for impl in ("fastconv",) + tuple(section_peers):
                entries[impl] = _build(pool_backward_call, layer, impl, dtype, torch=torch)
        records = _run_entries(entries, repeat, min_time)
        gemm_gflops = None
        if gemm is not None and kind == "conv":
            gemm_gflops = 2.0 * gemm_size**3 / float(np.median(measure(gemm, repeat, min_time)))
            gemm_gflops /= 1e9
            if threaded:
                time.sleep(BLAS_COOLDOWN_S)
        _progress(stream, records)
        for impl, rec in records.items():
            rec.update(section=section, layer=layer["name"], dtype=dtype.name)
            rec["out_shape"] = list(out_shape) if out_shape is not None else None
            if gemm_gflops is not None:
                rec["gemm_gflops"] = gemm_gflops
            if "median_s" in rec and out_shape is not None:
                if kind == "conv":
                    # backward = grad input + grad weight: twice the forward's FLOPs
                    flops = conv_flops(layer, out_shape)
                    if section == "conv2d_backward":
                        flops *= 2
                    rec["flops"] = flops
                    rec["gflops"] = flops / rec["median_s"] / 1e9
                else:
                    in_size = layer["N"] * layer["C"] * layer["H"] * layer["W"]
                    nbytes = (math.prod(out_shape) + in_size) * dtype.itemsize
                    rec["bytes"] = nbytes
                    rec["gbps"] = nbytes / rec["median_s"] / 1e9
            results.append(rec)
    return results


def _ratio(peer_rec, rec):
    if peer_rec is None or "median_s" not in peer_rec or "median_s" not in rec:
        return None
    return peer_rec["median_s"] / rec["median_s"]


def _rate(value):
    return f"{value:.2f}" if value >= 1 else f"{value:.3g}"  # tiny layers: keep 3 digits


def _percent(value):
    return f"{value:.0f}%" if value >= 9.95 else f"{value:.1f}%"


def _format_table(headers, rows, right):
    widths = [max([len(str(h))] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]
    lines = []
    for row in [headers] + rows:
        cells = [
            (str(c).rjust(w) if right[i] else str(c).ljust(w))
            for i, (c, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def geometric_means(results, section, peers, base="auto"):
    """Per peer: (geomean of peer time / base time, number of layers, (lowest ratio, layer))."""
    by_layer = {}
    for rec in results:
        if rec["section"] == section:
            by_layer.setdefault(rec["layer"], {})[rec["impl"]] = rec
    base_impl = base if section.startswith("conv2d") else "fastconv"
    means = {}
    for peer in peers:
        ratios = []
        for layer, recs in by_layer.items():
            r = _ratio(recs.get(peer), recs.get(base_impl, {}))
            if r is not None:
                ratios.append((r, layer))
        if ratios:
            gm = math.exp(sum(math.log(r) for r, _ in ratios) / len(ratios))
            means[peer] = (gm, len(ratios), min(ratios))
    return means


def report_lines(results, peers, gemm):
    """The results tables and geometric means, as lines of text."""
    lines = []
    for section in ("conv2d", "conv2d_backward", "pool", "pool_backward"):
        recs = [r for r in results if r["section"] == section]
        if not recs:
            continue
        conv = section.startswith("conv2d")
        section_peers = [p for p in peers if p in _SECTION_PEERS[section]]
        present = [p for p in section_peers if any(r["impl"] == p for r in recs)]
        headers = ["layer", "impl", "ms", "GFLOP/s" if conv else "GB/s"]
        if conv and gemm is not None:
            headers.append(f"%{gemm[1].split()[0]}")
        headers += [f"vs {p}" for p in present] + ["check"]
        rows = []
        lookup = {(r["layer"], r["impl"]): r for r in recs}
        for rec in recs:
            if "median_s" in rec:
                row = [rec["layer"], rec["impl"], f"{rec['median_s'] * 1e3:.3f}"]
                rate = rec.get("gflops" if conv else "gbps")
                row.append(_rate(rate) if rate is not None else "-")
                if conv and gemm is not None:
                    row.append(
                        _percent(100 * rate / rec["gemm_gflops"]) if rate is not None else "-"
                    )
            else:
                row = [rec["layer"], rec["impl"], "error", "-"]
                if conv and gemm is not None:
                    row.append("-")
            for p in present:
                if rec["impl"] in PEERS:
                    row.append("")
                    continue
                r = _ratio(lookup.get((rec["layer"], p)), rec)
                row.append(f"{r:.2f}x" if r is not None else "-")
            check = rec.get("check", "")
            if check == "MISMATCH":
                check = f"MISMATCH vs {rec['checked_against']}"
            elif "error" in rec:
                check = "ERROR"
            row.append(check)
            rows.append(row)
        right = [False, False] + [True] * (len(headers) - 3) + [False]
        lines.append("")
        lines.append(f"== {_SECTION_TITLES[section]}, {recs[0]['dtype']}")
        lines += _format_table(headers, rows, right)
        if present:
            lines.append("   vs PEER = PEER time / this time (above 1: faster than PEER)")
        means = geometric_means(results, section, present)
        base = "fastconv(auto)" if conv else "fastconv"
        for peer, (gm, count, (low, low_layer)) in means.items():
            lines.append(
                f"   geometric mean {peer} / {base} over {count} layer(s): {gm:.2f}x"
                f" (lowest {low:.2f}x on {low_layer})"
            )
    problems = [r for r in results if "error" in r or r.get("check") == "MISMATCH"]
    if problems:
        lines.append("")
        lines.append("PROBLEMS")
        for rec in problems:
            if "error" in rec:
                lines.append(f"  {rec['section']} {rec['layer']} {rec['impl']}: {rec['error']}")
            else:
                lines.append(
                    f"  {rec['section']} {rec['layer']} {rec['impl']}: max |diff| vs "
                    f"{rec['checked_against']} = {rec['max_abs_diff']:.3g} "
                    f"(tolerance {rec['tolerance']:.3g})"
                )
    return lines


# --------------------------------------------------------------------------
# the command line


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return value


def _nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {text!r}")
    return value


def add_arguments(parser):
    """Add the ``bench`` options to an argparse parser."""
    parser.add_argument(
        "--shapes", metavar="FILE",
        help="JSON file of layers in the yardstick's format (default: the bundled yardstick)",
    )
    parser.add_argument(
        "--layers", metavar="NAME,...",
        help="only these layers (comma-separated names, conv or pool)",
    )
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument(
        "--threads", type=_positive_int, metavar="N",
        help="threads for fastconv, torch and BLAS (default: fastconv's default, all cores). "
        "Where the OS scheduler stacks threads on one core (seen on small VMs), "
        "OMP_PROC_BIND=true steadies multi-threaded timings",
    )
    parser.add_argument(
        "--compare", metavar="PEER,...",
        help="peers to time beside fastconv: torch, numpy, or none "
        "(default: every importable one)",
    )
    parser.add_argument(
        "--repeat", type=_positive_int, default=5, metavar="R",
        help="minimum number of timed calls per entry; the median is reported (default 5)",
    )
    parser.add_argument(
        "--min-time", type=_nonnegative_float, default=0.2, metavar="SECONDS",
        help="keep timing each entry until its calls add up to this many seconds (default 0.2)",
    )
    parser.add_argument(
        "--backward", action="store_true",
        help="also time conv2d_backward (vs torch's convolution_backward) and pooling backward",
    )
    parser.add_argument(
        "--gemm-size", type=_nonnegative_int, default=1536, metavar="N",
        help="size of the N^3 GEMM whose rate the %%GEMM column refers to, timed right "
        "after each convolution layer; 0 skips it (default 1536)",
    )
    parser.add_argument("--json", metavar="FILE", help="write every raw result to FILE")
    parser.add_argument(
        "--plot", metavar="FILE.png",
        help="write a grouped bar chart of GFLOP/s and GB/s (needs matplotlib)",
    )
    return parser


def _select_peers(text, stream):
    """Parse --compare; returns (peers, torch module or None) or raises ValueError."""
    if text is None:
        wanted, explicit = list(PEERS), False
    else:
        wanted = [p.strip().lower() for p in text.split(",") if p.strip()]
        explicit = True
        if wanted == ["none"]:
            wanted = []
        unknown = [p for p in wanted if p not in PEERS]
        if unknown:
            raise ValueError(
                f"bench: --compare must list peers among {', '.join(PEERS)} (or none), "
                f"got {text!r}"
            )
    torch = None
    if "torch" in wanted:
        torch = import_torch()
        if torch is None:
            wanted.remove("torch")
            if explicit:
                print("bench: torch is not importable; comparing without it", file=stream)
    return tuple(wanted), torch


def _filter_layers(shapes, text):
    if not text:
        return shapes
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = [layer["name"] for kind in ("conv", "pool") for layer in shapes[kind]]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"bench: --layers must name layers of the shapes file, got {', '.join(unknown)} "
            f"(known: {', '.join(known)})"
        )
    return {kind: [layer for layer in shapes[kind] if layer["name"] in names] for kind in shapes}


def _plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = [s for s in _SECTION_TITLES if any(r["section"] == s for r in results)]
    fig, axes = plt.subplots(len(sections), 1, figsize=(12, 3.5 * len(sections)), squeeze=False)
    for ax, section in zip(axes[:, 0], sections):
        recs = [r for r in results if r["section"] == section and "median_s" in r]
        layers = list(dict.fromkeys(r["layer"] for r in recs))
        order = ("fastconv",) + STRATEGIES + PEERS
        impls = sorted({r["impl"] for r in recs}, key=order.index)
        key = "gflops" if section.startswith("conv2d") else "gbps"
        width = 0.8 / max(1, len(impls))
        for j, impl in enumerate(impls):
            values = {r["layer"]: r.get(key, 0.0) for r in recs if r["impl"] == impl}
            xs = [i + (j - (len(impls) - 1) / 2) * width for i in range(len(layers))]
            ax.bar(xs, [values.get(layer, 0.0) for layer in layers], width, label=impl)
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(layers, rotation=20, ha="right")
        ax.set_ylabel("GFLOP/s" if key == "gflops" else "GB/s")
        ax.set_title(_SECTION_TITLES[section])
        ax.legend(fontsize="small", ncol=len(impls))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args, stdout=None, stderr=None):
    """Run ``bench`` with parsed ``args``; returns the exit status.

    0: all entries ran and agree; 1: some entry failed or disagreed with
    fastconv's "auto" result (listed under PROBLEMS); 2: bad options.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        shapes = _filter_layers(load_shapes(args.shapes), args.layers)
        peers, torch = _select_peers(args.compare, stderr)
    except (OSError, ValueError) as exc:
        message = str(exc)
        print(message if message.startswith("bench:") else f"bench: error: {message}", file=stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("bench: --plot needs matplotlib (pip install matplotlib)", file=stderr)
            return 2
    threads = args.threads or fastconv.get_num_threads()
    with thread_count(threads, torch):
        env = environment(threads, torch)
        gemm = None
        if args.gemm_size:
            gemm = gemm_rate(args.dtype, args.gemm_size, args.repeat, args.min_time)
        header = header_lines(env, args.dtype, gemm)
        print("\n".join(header), file=stdout, flush=True)
        results = run_benchmarks(
            shapes, dtype=args.dtype, compare_with=peers, backward=args.backward,
            repeat=args.repeat, min_time=args.min_time, torch=torch, stream=stderr,
            gemm_size=args.gemm_size,
        )
    lines = report_lines(results, peers, gemm)
    if gemm is not None:
        name = gemm[1].split()[0]
        beside = sorted({r["gemm_gflops"] for r in results if "gemm_gflops" in r})
        lines.append(
            f"# %{name}: of the median rate of {gemm[1]} timed right after each layer "
            + (f"({beside[0]:.1f} to {beside[-1]:.1f} GFLOP/s); " if beside else "; ")
            + f"best run before the run: {gemm[0]:.1f}"
        )
    print("\n".join(lines), file=stdout, flush=True)
    if args.json:
        payload = {
            "environment": env,
            "options": {k: v for k, v in vars(args).items() if k != "func"},
            "gemm": {"gflops": gemm[0], "label": gemm[1]} if gemm else None,
            "results": results,
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1, default=str)
    if args.plot:
        _plot(results, args.plot, header[0].lstrip("# "))
    failed = any("error" in r or r.get("check") == "MISMATCH" for r in results)
    return 1 if failed else 0
