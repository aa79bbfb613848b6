#!/usr/bin/env python3
"""Coverage-guided fuzzing of fastconv with atheris (libFuzzer for Python).

Each input is decoded into one call of a public function: the function, the
input's shape (sizes 0 to 6, 2 to 5 dimensions), dtype and memory layout,
values the fuzzer chooses bit by bit (NaN, infinities, denormals included)
and every argument in one of its forms, valid or not (ints, pairs, nested
pairs, strings, floats, bools, None, values up to 2**64). The call must

* return what ``fastconv.reference`` returns (values within the dtype's
  tolerance; max pooling and indices exactly), or
* raise ValueError or TypeError whose message starts with the function's
  name, or MemoryError when a parameter is absurd (>= 2**16);

and must not modify its inputs (with absurd parameters the reference, whose
window tables could fill the memory, is not consulted). Anything else (another exception, a crash,
a sanitizer report) is a finding: libFuzzer saves the input as
``crash-<sha1>``; ``python tools/fuzz_atheris.py crash-<sha1>`` replays it.

atheris instruments fastconv's Python modules (argument handling, dispatch,
the cost model), so coverage guides the search through the argument rules;
the compiled kernels are not coverage-instrumented (that needs clang's
-fsanitize=fuzzer) but every call runs them. Under GCC's AddressSanitizer
(tools/sanitize.sh preloads libasan, whose coverage hooks then shadow
libFuzzer's) the search would be blind, so grow a corpus on the normal
build, then replay it on the sanitized one:

    python tools/fuzz_atheris.py -max_total_time=600 -timeout=20 $PWD/corpus
    tools/sanitize.sh --python tools/fuzz_atheris.py -runs=0 $PWD/corpus

(-fork=1 -ignore_timeouts=1 -ignore_ooms=1 keeps going past slow or huge
calls, which absurd sizes can make.) Not part of the test suite.
"""
import os
import resource
import sys

import atheris

with atheris.instrument_imports(include=["fastconv"]):
    import numpy as np

    import fastconv
    from fastconv import reference as ref

FUNCTIONS = [
    "conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d",
    "avg_pool2d_backward", "adaptive_max_pool2d", "adaptive_max_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
]
DTYPES = [np.float32, np.float64, np.float32, np.float64, np.float16, np.int8, np.int64,
          np.uint8, np.bool_, np.complex64, object]
ABSURD = 2**16
EXTREMES = [2**16, 2**31 - 1, 2**31, 2**40, 2**62, 2**63 - 1, 2**63, 2**64, -2**63]


class Call:
    """One call decoded from the fuzzer's bytes."""

    def __init__(self, data):
        self.fdp = atheris.FuzzedDataProvider(data)
        self.absurd = False

    def pick(self, options):
        return options[self.fdp.ConsumeIntInRange(0, len(options) - 1)]

    def int_value(self, lo=0, hi=5):
        """Mostly small ints, sometimes an extreme one or a NumPy integer."""
        r = self.fdp.ConsumeIntInRange(0, 15)
        if r == 0:
            v = self.pick(EXTREMES)
            self.absurd = self.absurd or abs(v) >= ABSURD
            return v
        v = self.fdp.ConsumeIntInRange(lo, hi)
        return np.int64(v) if r == 1 else v

    def scalar(self, lo=0, hi=5):
        """Any value an int parameter might be given."""
        r = self.fdp.ConsumeIntInRange(0, 19)
        if r < 15:
            return self.int_value(lo, hi)
        return self.pick([None, True, 1.5, "2", [], np.float64(2.0), -1])

    def pair(self, lo=0, hi=5):
        r = self.fdp.ConsumeIntInRange(0, 9)
        if r < 5:
            return self.scalar(lo, hi)
        if r < 8:
            return (self.scalar(lo, hi), self.scalar(lo, hi))
        if r == 8:
            return [self.scalar(lo, hi), self.scalar(lo, hi)]
        return tuple(self.scalar(lo, hi) for _ in range(self.fdp.ConsumeIntInRange(0, 3)))

    def shape(self, ndim=None):
        ndim = ndim or self.pick([4, 4, 4, 3, 3, 2, 5])
        return tuple(self.fdp.ConsumeIntInRange(0, 6) for _ in range(ndim))

    def array(self, shape, dtype=None):
        dtype = np.dtype(dtype or self.pick(DTYPES))
        n = int(np.prod(shape))
        if n > 4096:
            shape, n = (1,) * len(shape), 1
        r = self.fdp.ConsumeIntInRange(0, 3)
        if r == 0 and dtype.kind == "f":  # the fuzzer's own bits: NaN, inf, denormals
            vals = np.array([self.fdp.ConsumeFloat() for _ in range(n)])
            # finite values up to 1e15: products and sums of them stay finite in
            # float32, whose overflow to inf would depend on the order of a sum
            vals = np.where(np.isfinite(vals), np.clip(vals, -1e15, 1e15), vals)
        else:
            seed = self.fdp.ConsumeIntInRange(0, 2**16)
            vals = np.random.default_rng(seed).integers(-3, 4, n) if r == 1 else \
                np.random.default_rng(seed).standard_normal(n)
        with np.errstate(all="ignore"):
            a = vals.reshape(shape).astype(dtype)
        return self.layout(a)

    def layout(self, a):
        r = self.fdp.ConsumeIntInRange(0, 7)
        if r == 1:
            return np.asfortranarray(a)
        if r == 2 and a.ndim:
            big = np.zeros(tuple(2 * n for n in a.shape), a.dtype)
            view = big[tuple(slice(None, None, 2) for _ in a.shape)]
            view[...] = a
            return view
        if r == 3 and a.ndim:
            return a[..., ::-1].copy()[..., ::-1]
        if r == 4:
            a = a.copy()
            a.flags.writeable = False
            return a
        if r == 5 and a.ndim and a.shape[0]:
            return np.broadcast_to(a[:1], a.shape)
        if r == 6 and a.dtype.kind in "fiu" and a.dtype != np.float16:
            return a.tolist()
        return a

    def build(self):
        """(function name, args, kwargs, fastconv-only kwargs)."""
        name = self.pick(FUNCTIONS)
        x = self.array(self.shape())
        kw, extra = {}, {}
        if name.startswith("conv2d"):
            wshape = self.shape(self.pick([4, 4, 4, 3]))
            w = self.array(wshape)
            kw = dict(stride=self.pair(1, 3), dilation=self.pair(1, 3),
                      groups=self.scalar(1, 3))
            r = self.fdp.ConsumeIntInRange(0, 9)
            if r < 6:
                kw["padding"] = self.pair(0, 3)
            elif r < 8:
                kw["padding"] = self.pick(["same", "valid", "full", ""])
            else:
                kw["padding"] = (self.pair(0, 3), self.pair(0, 3))
            extra["algorithm"] = self.pick(["auto", "auto", "direct", "im2col", "1x1", "x"])
            if name == "conv2d":
                b = self.array((self.fdp.ConsumeIntInRange(0, 6),)) \
                    if self.fdp.ConsumeBool() else None
                return name, (x, w, b), kw, extra
            g = self.gradient(lambda: ref.conv2d(np.zeros(np.shape(x)), np.zeros(np.shape(w)),
                                                 **kw))
            return name, (g, x, w), kw, extra
        if "adaptive" in name:
            size = self.pair(1, 7) if self.fdp.ConsumeIntInRange(0, 4) else \
                (self.pick([None, 3]), self.pick([None, 2]))
            fwd = getattr(ref, name.replace("_backward", ""))
            if not name.endswith("backward"):
                if "max" in name:
                    kw["return_indices"] = self.pick([True, False, 1, None])
                return name, (x, size), kw, extra
            g = self.gradient(lambda: fwd(np.zeros(np.shape(x)), size))
            if "max" in name and self.fdp.ConsumeBool():
                kw["indices"] = self.indices(np.shape(g), np.shape(x))
            return name, (g, x, size), kw, extra
        kw = dict(kernel_size=self.pair(1, 4), padding=self.pair(0, 2),
                  ceil_mode=self.pick([False, True, 1, None]))
        kw["stride"] = None if self.fdp.ConsumeIntInRange(0, 4) == 0 else self.pair(1, 4)
        if "max" in name:
            kw["dilation"] = self.pair(1, 3)
        else:
            kw["count_include_pad"] = self.pick([True, False, 0])
            kw["divisor_override"] = None if self.fdp.ConsumeBool() else self.scalar(-1, 5)
        fwd = getattr(ref, name.replace("_backward", ""))
        if not name.endswith("backward"):
            if "max" in name:
                kw["return_indices"] = self.pick([True, False, 1])
            return name, (x,), kw, extra
        g = self.gradient(lambda: fwd(np.zeros(np.shape(x)), **kw))
        if "max" in name and self.fdp.ConsumeBool():
            kw["indices"] = self.indices(np.shape(g), np.shape(x))
        return name, (g, x), kw, extra

    def gradient(self, forward):
        """grad_output: the forward's shape (when it has one) or any shape."""
        if self.absurd:  # the reference's window tables could fill the memory
            return self.array(self.shape())
        try:
            with np.errstate(all="ignore"):
                shape = np.shape(forward())
            if self.fdp.ConsumeIntInRange(0, 9) == 0:
                shape = self.shape(len(shape))
        except Exception:
            shape = self.shape()
        return self.array(shape)

    def indices(self, shape, x_shape):
        plane = int(np.prod(x_shape[-2:])) if len(x_shape) >= 2 else 1
        n = int(np.prod(shape))
        if n > 4096:
            return np.zeros((1,), np.int64)
        seed = self.fdp.ConsumeIntInRange(0, 2**16)
        idx = np.random.default_rng(seed).integers(-1, max(plane, 1), n).reshape(shape)
        if n and self.fdp.ConsumeIntInRange(0, 3) == 0:
            idx.flat[0] = self.pick([-2, plane, -2**63, 2**63 - 1])
        return self.layout(idx.astype(self.pick([np.int64, np.int64, np.int32, np.float32])))


def results(r):
    return r if isinstance(r, tuple) else (r,)


def check(name, args, kw, extra, absurd):
    arrays = [a for a in list(args) + [kw.get("indices")] if isinstance(a, np.ndarray)]
    before = [(a, a.tobytes()) for a in arrays]
    try:
        got = getattr(fastconv, name)(*args, **kw, **extra)
    except (ValueError, TypeError) as exc:
        if not str(exc).startswith(name + ": "):
            raise AssertionError(f"message does not name {name}: {exc!r}") from exc
        got = None
    except MemoryError as exc:  # fastconv's (a workspace) or NumPy's (the result)
        if not absurd:
            raise AssertionError(f"{name}: MemoryError without an absurd size: {exc!r}") from exc
        got = None
    for a, b in before:
        if a.tobytes() != b:
            raise AssertionError(f"{name} modified an input")
    if got is None:
        return
    if absurd:  # the reference's window tables could fill the memory
        return
    if extra.get("algorithm") not in ("auto", "direct", "im2col", "1x1", None):
        raise AssertionError(f"{name} accepted algorithm={extra['algorithm']!r}")
    try:
        with np.errstate(all="ignore"):
            expected = getattr(ref, name)(*args, **kw)
    except (ValueError, TypeError) as exc:
        # fastconv checks bools and dtypes more strictly, never more loosely
        raise AssertionError(f"{name} accepted what the reference refuses: {exc}") from exc
    for r, e in zip(results(got), results(expected)):
        assert r.shape == e.shape and r.dtype == e.dtype, (name, r.shape, e.shape, r.dtype)
        if e.dtype.kind in "iu" or "max_pool2d" in name and not name.endswith("backward"):
            np.testing.assert_array_equal(r, e, err_msg=name)
            continue
        if not np.isfinite(e).all() and "adaptive_avg" in name:
            continue  # the reference's matrix product spreads NaN (see tests/test_special.py)
        finite = np.isfinite(e)
        scale = float(np.abs(e[finite]).max()) if finite.any() else 0.0
        rtol = 2e-3 if e.dtype == np.float32 else 1e-9
        # convolutions flush denormals to zero (documented): allow that much
        atol = max(rtol * scale, 1e4 * float(np.finfo(e.dtype).tiny))
        np.testing.assert_allclose(r, e, rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


def describe(a):
    if isinstance(a, np.ndarray):
        return f"array{a.shape}:{a.dtype}:strides={a.strides}"
    return repr(a) if not isinstance(a, list) else f"list(len {len(a)})"


def test_one_input(data):
    call = Call(data)
    name, args, kw, extra = call.build()
    if os.environ.get("FUZZ_VERBOSE"):  # replaying a finding: show the call
        print(f"{name}({', '.join(map(describe, args))}, "
              f"{', '.join(f'{k}={describe(v)}' for k, v in {**kw, **extra}.items())})",
              file=sys.stderr)
    check(name, args, kw, extra, call.absurd)


def main():
    if not os.environ.get("FASTCONV_SANITIZED"):
        # a huge workspace fails to allocate (MemoryError) rather than filling the
        # machine (AddressSanitizer runs cap allocations by max_allocation_size_mb)
        limit = 8 * 2**30
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    fastconv.set_num_threads(2)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
