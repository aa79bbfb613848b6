"""Which strategy ``algorithm="auto"`` runs, and how each strategy is blocked.

``auto`` picks the strategy with the lowest estimated cost, in core cycles on
one thread (threads divide every strategy alike). The model, whose constants
were measured on the yardstick layers (see the README's Performance section):

* ``peak``: floating-point operations per cycle of the SIMD variant in use
  (two FMA units: 4 x the vector width in elements; the baseline has no FMA).
* ``"im2col"``: ``flops / (peak * GEMM_EFFICIENCY * fill) + PACK_CYCLES *
  N * C * R * S * P * Q``: the micro-kernel's rate, discounted for the output
  channels that do not fill its last register block (``fill``), plus copying
  the im2col rows.
* ``"1x1"`` (1x1 kernels only): the same GEMM; a stride-1 unpadded
  convolution reads the image in place, with no copy at all.
* ``"direct"``: ``flops / (peak * efficiency)``, where the efficiency grows
  with the work per output (C/groups * R * S taps) and the number of output
  channels sharing each input load (K/groups), up to DIRECT_EFFICIENCY.
"""
import math
from dataclasses import dataclass, field

from . import _conv

ALGORITHMS = ("auto", "direct", "im2col", "1x1")

#: fraction of peak the packed-GEMM micro-kernel sustains inside a convolution
GEMM_EFFICIENCY = 0.75
#: cycles per im2col element copied (a contiguous copy through L1/L2)
PACK_CYCLES = 0.35
#: best fraction of peak the direct kernel reaches (many taps, many channels)
DIRECT_EFFICIENCY = 0.6
#: taps per output and channels per input load at which direct saturates
DIRECT_TAPS, DIRECT_CHANNELS = 64, 8
#: bytes of one thread's im2col tile: about half of a typical L2 cache
TILE_BYTES = 512 * 1024

_LANES = {"avx512": 64, "avx2": 32, "baseline": 16}  # bytes per vector


def _peak(dtype):
    """Floating-point operations per cycle per core of the current SIMD variant."""
    lanes = _LANES[_conv.simd_variant()] // dtype.itemsize
    return 2 * lanes if _conv.simd_variant() == "baseline" else 4 * lanes


def _costs(g):
    """Estimated cycles of every strategy that can run geometry ``g``."""
    peak = _peak(g.dtype)
    flops = max(1, g.flops)
    kg, depth = g.K // g.groups, (g.C // g.groups) * g.R * g.S
    mr = _conv.gemm_block()[0]
    fill = kg / (math.ceil(kg / mr) * mr)
    copied = g.N * g.C * g.R * g.S * g.P * g.Q
    gemm = flops / (peak * GEMM_EFFICIENCY * fill)
    costs = {"im2col": gemm + PACK_CYCLES * copied}
    if (g.R, g.S) == (1, 1):
        pointwise = g.stride == (1, 1) and g.pad == (0, 0, 0, 0)
        costs["1x1"] = gemm + (0 if pointwise else PACK_CYCLES * copied)
    efficiency = DIRECT_EFFICIENCY * min(1, depth / DIRECT_TAPS) * min(1, kg / DIRECT_CHANNELS)
    costs["direct"] = flops / (peak * max(efficiency, 1e-3))
    return costs


def resolve(func, algorithm, g):
    """Return the concrete algorithm for geometry ``g``; raise if it cannot run."""
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"{func}: algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}"
        )
    if algorithm == "auto":
        costs = _costs(g)
        return min(costs, key=costs.get)
    if algorithm == "1x1" and (g.R, g.S) != (1, 1):
        raise ValueError(
            f"{func}: algorithm '1x1' needs a 1x1 kernel, got kernel size {(g.R, g.S)}"
        )
    return algorithm


@dataclass
class Explanation:
    """What ``algorithm="auto"`` runs for one convolution, and why.

    Attributes
    ----------
    algorithm : str
        The strategy auto picks.
    costs : dict of str to float
        Estimated cost of every strategy that can run the shape, in millions
        of core cycles on one thread (lower is better).
    reason : str
        One sentence on the choice.
    simd : str
        The SIMD variant of the micro-kernels in use.
    output_shape : tuple of int
    flops : int
        Floating-point operations of the forward pass.
    """

    algorithm: str
    costs: dict = field(repr=False)
    reason: str
    simd: str
    output_shape: tuple
    flops: int

    def __str__(self):
        rows = "\n".join(
            f"  {name:7s} {cost:10.2f} Mcycles" + ("  <- auto" if name == self.algorithm else "")
            for name, cost in sorted(self.costs.items(), key=lambda kv: kv[1])
        )
        return (
            f"conv2d -> {self.output_shape}, {self.flops / 1e9:.3f} GFLOP, "
            f"SIMD {self.simd}\n{rows}\n{self.reason}"
        )


def explain(g):
    """The Explanation for geometry ``g`` (see fastconv.explain)."""
    costs = {k: v / 1e6 for k, v in _costs(g).items()}
    best = min(costs, key=costs.get)
    others = sorted((v, k) for k, v in costs.items() if k != best)
    depth = (g.C // g.groups) * g.R * g.S
    if best == "direct":
        why = (f"direct: {depth} taps per output and {g.K // g.groups} output channels per "
               f"group make im2col's copy cost more than a GEMM would save")
    elif best == "1x1":
        why = "1x1: a pointwise convolution is a GEMM on the image itself"
    else:
        why = (f"im2col: {depth} taps per output feed the GEMM micro-kernel well enough "
               f"to pay for copying the im2col rows")
    if others:
        why += f" (next best: {others[0][1]}, {others[0][0] / costs[best]:.1f}x the cost)"
    return Explanation(best, costs, why, _conv.simd_variant(), g.out_shape, g.flops)


#: output pixels per work item of the packed GEMM (its pixel block is
#: PIXEL_BLOCK x REDUCTION_BLOCK values: 384 KiB in float32, L2-resident)
PIXEL_BLOCK = 384
#: reduction rows (of C/groups * R * S) per packed block: the kernel's pixel
#: panel (REDUCTION_BLOCK x 48 in float32, 48 KiB) streams from L2 with the
#: weights, and fewer blocks mean fewer passes over the output (measured
#: best of 64/128/256 on the yardstick, AVX-512)
REDUCTION_BLOCK = 256


def gemm_blocks(g, n_threads):
    """``(pixels, reduction rows)`` per block of the packed-GEMM forward.

    Pixel blocks shrink when there are fewer images x groups than threads,
    so every thread gets work."""
    pq = g.P * g.Q
    nc = PIXEL_BLOCK
    items = max(1, g.N * g.groups)
    if items < n_threads:
        nc = min(nc, -(-pq // -(-n_threads // items)))
    return nc, REDUCTION_BLOCK


#: bytes of the grad_output tile the grad_weight kernel keeps in L2
WEIGHT_TILE_BYTES = 512 * 1024
#: pixels per grad_weight tile at most: the kernel's few im2col rows of the
#: tile (6 x 1024 floats = 24 KiB) then stay in L1
WEIGHT_TILE_MAX = 1024


def backward_blocks(g, n_threads):
    """``(pixels per grad_weight tile, output rows per grad_input band,
    reduction block)`` of the packed-GEMM backward."""
    pixels = max(1, g.N * g.P * g.Q)  # grad_weight tiles run across images
    kg = g.K // g.groups
    tw = max(64, min(WEIGHT_TILE_MAX, WEIGHT_TILE_BYTES // (kg * g.dtype.itemsize)))
    if g.groups * -(-pixels // tw) < n_threads:
        tw = min(tw, max(64, -(-pixels // -(-n_threads // g.groups))))
    return (min(tw, pixels), *_backward_bands(g, n_threads))


def _backward_bands(g, n_threads):
    """``(output rows per tile, reduction block)`` of the grad_input pass.

    A tile is a band of whole output rows: about TILE_BYTES of im2col, but at
    least enough rows that bands two apart never touch the same input row
    (so even and odd bands can each run in parallel), and small enough that
    the threads share the work.
    """
    sh, dh = g.stride[0], g.dilation[0]
    extent = (g.R - 1) * dh + 1
    min_rows = max(1, -(-extent // sh) - 1)
    depth = (g.C // g.groups) * g.R * g.S
    rows = max(1, TILE_BYTES // (depth * g.Q * g.dtype.itemsize))
    items = max(1, g.N * g.groups)
    if items < 2 * n_threads:  # each phase runs every other band
        rows = min(rows, -(-g.P // (2 * -(-n_threads // items))))
    return max(min_rows, min(rows, g.P)), REDUCTION_BLOCK
