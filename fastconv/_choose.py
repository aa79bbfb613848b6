"""Which strategy ``algorithm="auto"`` runs, and how each strategy is blocked.

``auto`` picks the strategy with the lowest estimated cost, in core cycles on
one thread (threads divide every strategy alike). ``peak`` is the SIMD
variant's floating-point operations per cycle (two FMA units: 4 x the vector
width in elements; the baseline has no FMA). Then, with ``flops`` the
forward's operations (twice that for a backward):

* ``"im2col"``: ``flops / (peak * GEMM_EFFICIENCY * fill) + PACK_CYCLES *
  N * C * R * S * P * Q``: the micro-kernels' rate inside a convolution,
  discounted for output channels that leave the last register block part
  empty (``fill``), plus copying the im2col rows;
* ``"1x1"`` (1x1 kernels only): the same GEMM; at stride 1 without padding,
  with few channels or small planes (in_place), the image is read in place,
  so nothing is copied;
* ``"winograd"`` (square kernels of 2 to 5 taps at stride 1, strided layers
  on their phases: see winograd_taps): for 3x3 the cheaper of F(2x2, 3x3)
  and F(4x4, 3x3) (WINOGRAD_TILES), for r x r F((7 - r) x (7 - r), r x r).
  The GEMMs of F(m x m, r x r), (m + r - 1)^2 multiply-adds per m x m
  outputs and channel pair of a group instead of r^2 m^2 (16 for 4 outputs
  of 3x3, 36 for 16), at ``WINOGRAD_EFFICIENCY`` of peak
  (small matrices: K x C per group times a block of tiles; below
  WINOGRAD_SHORT_REDUCTION input channels per group, slower; that bound
  by CPU vendor, WINOGRAD_SHORT_REDUCTION_BY_VENDOR), plus
  ``WINOGRAD_TRANSFORM_CYCLES`` per element of the transformed input and
  output tiles ((m + r - 1)^2 per tile and channel; the output's scaled
  by its tile, 6 m + m^2 values against F(4x4, 3x3)'s 40) and
  ``WINOGRAD_WEIGHT_CYCLES`` per transformed weight (once, and per work
  item); none beyond WINOGRAD_MAX_WEIGHT_BYTES of transformed weights (F(4x4)
  needs 2.25x F(2x2)'s). A dilated layer: the cost of its phases as one
  undilated batch (see dilated_phases) plus WINOGRAD_PHASE_CYCLES per element
  of their copies, none where one phase copies more than
  WINOGRAD_PHASE_BYTES; a strided one likewise its phases' stride-1
  convolution (see strided_phases), plus their copies. Its backward (stride
  1, padding at most R - 1, no dilation):
  grad_input as a Winograd forward with the channels exchanged within each
  group (its GEMMs at no more than WINOGRAD_GRAD_INPUT_VECTOR_BYTES
  vectors' peak), plus grad_weight at the lower of half of direct's cost and
  Winograd's (the forward's cost for the same shapes, plus
  WINOGRAD_GW_CYCLES per transformed element; 3x3 only, while each thread's sums
  over the tiles fit two threads in WINOGRAD_GW_BYTES);
* ``"direct"``: ``flops / (peak * efficiency)``, the efficiency by the kind
  of layer: depthwise, pointwise (1x1, and a backward whose kernel fits
  within its stride), short output rows (the register tiles run
  along rows; at stride 1 or above), or the rest, some of them by CPU vendor
  (DIRECT_EFFICIENCY_BY_VENDOR), times
  DIRECT_STRIDED_BACKWARD for a backward at a stride above 1 (except
  depthwise). Plus the copy of its input into stride x stride phase planes
  (PACK_CYCLES per element, FILL_CYCLES above stride 2).

The efficiencies were measured on the yardstick layers and others (odd
sizes, batch 1-4, 5x5, 11x11/4, 7x7/2, dilation, grouped, MobileNet blocks,
ResNet's other 1x1 layers) at one thread, every strategy timed side by side
(the README's Performance section). Last checked on 27 layers (the
yardstick, ``benchmarks/off_yardstick.json`` and four more ResNet 1x1
layers), forward and backward, float32, on AVX-512 and with the AVX2
kernels: auto picks the fastest strategy or one within 7% of it in 107 of
the 108 cases; the exception is the ResNet stem's backward on AVX-512, where
im2col measured 17% faster than direct (and on AVX2 the two tie). On an
Intel Xeon (Ice Lake, AVX-512 on two 512-bit FMA units), the 24 layers of
the yardstick and off_yardstick.json, forward and backward, one thread,
median of three runs, with the bound on grad_input's Winograd GEMMs and
DIRECT_EFFICIENCY_BY_VENDOR: within 7% in 44 of the 48 cases; the rest
b2-3x3-256's backward and grp-3x3's forward on Winograd (direct 1.11x and
1.16x faster), dil2-3x3's forward on direct (Winograd 1.11x faster) and
alex-11s4's backward (im2col 1.08x faster). With
WINOGRAD_SHORT_REDUCTION_BY_VENDOR too (grp-3x3's forward on direct), on
a busier host of the same type: 45 of 48; the rest b2-3x3-256's backward
on Winograd (direct 1.23x faster), b4-s2-64's forward on the GEMM (direct
1.09x) and c3-small's backward (1.09x "direct", its pick: noise).
"""
import math
import os
from dataclasses import dataclass, field

import numpy as np

from . import _conv

ALGORITHMS = ("auto", "direct", "im2col", "1x1", "winograd")

#: fraction of peak the packed-GEMM path sustains: forward, backward
GEMM_EFFICIENCY = (0.6, 0.45)
#: cycles per im2col element copied (a contiguous copy through L1/L2)
PACK_CYCLES = 0.35
#: cycles per element of the direct kernels' phase planes at strides above 2
#: (element by element; up to stride 2 a vectorised copy, PACK_CYCLES)
FILL_CYCLES = 1.0
#: fraction of peak of the direct kernels, (forward, backward), by kind of layer
DIRECT_EFFICIENCY = {
    "depthwise": (0.2, 0.2),  # one input channel per output: few FMAs per load
    "pointwise": (0.45, 0.34),  # 1x1: nothing to reuse across taps
    # fewer than DIRECT_SMALL_IMAGE output pixels per image: each weight
    # serves few pixels, and the direct kernels stream the weights once per
    # band (batch-1 7x7x512: the GEMM 20-25% faster in float64 and on AVX2,
    # within 10% of direct in float32 on AVX-512)
    "small images": (0.35, 0.2),
    # fewer than DIRECT_LONG_ROWS output columns
    "short rows": (0.72, 0.55),
    # the same at a stride above 1 (ResNet's 3x3/2 downsampling): on AMD's
    # AVX2 (Zen 4 held to AVX2) direct ran 8-20% faster forward than the
    # GEMM and within 6% backward; for Intel, see DIRECT_EFFICIENCY_BY_VENDOR
    "strided short rows": (0.72, 0.55),
    "dense": (0.8, 0.74),
}
#: DIRECT_EFFICIENCY's entries that differ by CPU vendor (/proc/cpuinfo's
#: vendor_id). On an Intel Xeon (Ice Lake), one thread, 36 strided 3x3 layers
#: (12x12 to 26x26 outputs, 64 to 256 input and 128 to 512 output channels)
#: ran forward on the GEMM 0.92-1.34x as fast as direct in float32 (median
#: 1.15x; direct faster only on 5, by at most 8%, all with 64 or 128 output
#: channels), 0.99-1.68x in float64 (12 layers), 0.95-1.33x with the kernels
#: held to AVX2 (8 layers); 3x3-s2-128 1.14x, the yardstick layer below 80%
#: of SGEMM on direct. At 0.55 the forward takes the GEMM on all of them.
DIRECT_EFFICIENCY_BY_VENDOR = {
    "GenuineIntel": {"strided short rows": (0.55, 0.55)},
}
#: direct backward at a stride above 1, every kind but depthwise: grad_input's
#: results land strided, so it cannot hold channels in lanes (AVX-512: the
#: 7x7/2 stem ran at 47% of SGEMM, 3x3/2 layers at 48-68%, against 90-97% at
#: stride 1). 0.7 on top of each kind's efficiency fit the measured fastest
#: strategy best, 0.6 and 0.8 as well.
DIRECT_STRIDED_BACKWARD = 0.7
DIRECT_LONG_ROWS = 28
DIRECT_SMALL_IMAGE = 64
#: bytes of one thread's im2col tile: about half of a typical L2 cache
TILE_BYTES = 512 * 1024

_VECTOR_BYTES = {"avx512": 64, "avx2": 32, "baseline": 16}

#: fraction of peak of the Winograd GEMMs (U[xi] @ V[xi] for each element xi)
WINOGRAD_EFFICIENCY = 0.6
#: the output tiles m of F(m x m, 3x3) auto weighs (other kernel sizes r have
#: one, F((7 - r) x (7 - r), r x r) on 6x6 tiles: see winograd_tiles)
WINOGRAD_TILES = (2, 4)
#: By tile m, cycles per transformed element (input tiles per channel, output
#: tiles per output channel: (m + 2)^2 each) and per transformed weight
#: ((m + 2)^2 per input and output channel pair): to transform and pack it
#: once per call, and for every work item's GEMMs to stream it (with few
#: tiles, as in batch-1 14x14 layers, these dominate). F(4x4)'s were fitted to
#: it against F(2x2) on 10 layers (7x7 to 224x224, 16 to 256 channels, one
#: thread, Zen 3; the fit within 12% on each): its transforms gather a tile's
#: six columns one by one, and its weights (2.25x F(2x2)'s) stream from L3.
#: The weight transforms have since become 2-2.5x faster (each panel's
#: vectors built in registers, stored through a buffer), but their
#: once-per-call costs keep the old fit: scaled down to match, they moved
#: batch-2 and batch-4 7x7 512-channel layers to Winograd, measured 1.2-1.4x
#: slower there than im2col (this model does not see the 16 MiB of
#: transformed weights streaming from memory for each work item).
#: Keyed by the input tile's side (4 for F(2x2, 3x3), 6 for the rest: F(4x4,
#: 3x3)'s fit serves the other kernel sizes, whose transforms are the same
#: input transform and shorter or longer output ones).
WINOGRAD_TRANSFORM_CYCLES = {4: 0.3, 6: 1.3}
WINOGRAD_WEIGHT_CYCLES = {4: (3.0, 0.25), 6: (3.4, 1.4)}
#: auto's bound on the transformed weights, (m + 2)^2 x K x C / groups values
#: (K padded to whole register blocks per group) packed once per call (16 MiB:
#: 512 x 512 channels in float32 for F(2x2), 341 x 341 for F(4x4)), so that
#: with the threads' blocks a call stays within 32 MiB of workspace
WINOGRAD_MAX_WEIGHT_BYTES = 16 * 1024 * 1024
#: bytes of one thread's transformed input and output tiles (V and M), at
#: most: 0.5-4 MiB measured within 10% of each other on the three dense 3x3
#: yardstick layers (AVX-512, 1 MiB L2 per core) once the panels of tiles
#: fill the GEMM kernel's vectors (see winograd_blocks)
WINOGRAD_BLOCK_BYTES = 4096 * 1024


#: input channels per group below which the Winograd GEMMs slow down, as the
#: square root of the shortfall (each micro-kernel call loads and stores its
#: accumulators for that few multiply-adds, and the transforms' share grows).
#: Measured on Zen 3, one thread, against direct: 32 channels per group
#: (dense, or 2 to 4 groups) F(2x2) 7-33% faster forward, 4-10% backward; 16
#: channels direct 8-18% faster than F(2x2) but F(4x4) 4-31% faster than
#: direct forward, even backward. On 11 layers of 8-64 channels, forward and
#: backward, auto's pick took 2% more time than the fastest in geometric mean
#: (12% at worst: 32 16x16 images) with the square root, 5% (31%) in proportion
WINOGRAD_SHORT_REDUCTION = 32
#: WINOGRAD_SHORT_REDUCTION by CPU vendor (/proc/cpuinfo's vendor_id), where
#: it differs. On an Intel Xeon (Ice Lake, AVX-512), one thread, Winograd
#: against direct forward on 71 layers (16 to 128 channels per group, 1 or 4
#: groups, 14x14 to 56x56 images, and the stride-1 layers of the yardstick
#: and off_yardstick.json; float32 and float64): at 64 the square root moves
#: 12 forwards to direct (grp-3x3, c3-small in float64, 16- and 32-channel
#: layers), which measured 1.05-1.72x as fast on each, and 6 backwards
#: (32 channels per group), 1.21-2.38x as fast; auto within 7% of the faster
#: in 63 of the 71 forwards instead of 53. The 8 left: 14x14 images of 48
#: and 64 channels per group, and a float64 32-channel 28x28 layer, on F(2x2)
#: (direct 1.11-1.33x as fast)
WINOGRAD_SHORT_REDUCTION_BY_VENDOR = {"GenuineIntel": 64}


def winograd_taps(g):
    """The side r of the r x r kernel the Winograd kernels run for geometry
    ``g``, or None when they cannot run it: a square kernel of 2 to 5 taps at
    stride 1 (dilated: through its phases, see dilated_phases), or at an
    equal stride s on both axes without dilation or groups, whose ceil(R / s)
    is 2 to 5 (run on its s x s phases as input channels, see
    strided_phases)."""
    if g.R != g.S:
        return None
    if g.stride == (1, 1):
        taps = g.R
    elif g.stride[0] == g.stride[1] and g.dilation == (1, 1) and g.groups == 1:
        taps = -(-g.R // g.stride[0])
    else:
        return None
    return taps if 2 <= taps <= 5 else None


def winograd_fits(g):
    """Whether the Winograd kernels can run geometry ``g`` (see winograd_taps)."""
    return winograd_taps(g) is not None


def winograd_tiles(taps):
    """The output tiles m of F(m x m, r x r) for ``taps`` = r: F(2x2, 3x3) and
    F(4x4, 3x3) (WINOGRAD_TILES), else the one on 6x6 tiles (m + r = 7)."""
    return WINOGRAD_TILES if taps == 3 else (7 - taps,)


#: Winograd's grad_weight (see conv2d_grad_weight_winograd): one thread's
#: sums dU ((m + 2)^2 x K x C / groups values) may take half of
#: WINOGRAD_GW_BYTES, which bounds all the threads' (a call runs on fewer
#: threads beyond it), so that with two threads' blocks a call stays within
#: 32 MiB of workspace (F(2x2) on 512 x 512 float32 channels would take 16 MiB
#: a thread; the blocks, like the forward's, grow with the threads)
WINOGRAD_GW_BYTES = 16 * 1024 * 1024
#: its cycles per transformed element (E (C + K) per slot) beyond the
#: forward's model: each element's V transposed and Z packed for the GEMMs.
#: Fitted on Zen 3, one thread, to 16- and 32-channel layers (where the
#: transforms weigh most) and checked on 64 to 256 channels (14x14 to
#: 224x224): within about 20% of the measured times, which varied as much
#: from run to run
WINOGRAD_GW_CYCLES = {2: 1.1, 4: 1.5}


def winograd_backward_fits(g):
    """Whether grad_input of geometry ``g`` can run as a Winograd forward: the
    R x R convolution of grad_output at stride 1 with padding R - 1 - p per
    side (so each padding at most R - 1), without dilation."""
    return (winograd_fits(g) and g.stride == (1, 1) and g.dilation == (1, 1)
            and all(0 <= p < g.R for p in g.pad))


#: bytes of the copies a dilated layer's Winograd makes at a time (a block of
#: phases, input and output): with its transformed weights (16 MiB
#: at most) and the threads' blocks, a call stays within 32 MiB
WINOGRAD_PHASE_BYTES = 8 * 1024 * 1024
#: cycles per element of those copies (strided: 0.29 ms for 0.6 M elements
#: on one thread on Zen 3)
WINOGRAD_PHASE_CYCLES = 1.5


def dilated_phases(g):
    """A dilated 3x3 convolution at stride 1 as undilated ones: output row
    dh p' + a reads rows dh (p' + r) + a of the zero-padded input, so phase
    (a, b) of the output (rows a, a + dh, ..., columns b, b + dw, ...) is the
    valid (unpadded) 3x3 convolution of the padded input's phase (a, b).
    Returns ``(Hs, Ws, phases, bytes)``: every phase padded with zeros to the
    largest one's Hs x Ws, so that a call runs a block of ``phases`` of them
    (image by image, all of an image's phases in turn) as one batch, and the
    bytes one phase copies (its input and output)."""
    dh, dw = g.dilation
    hs, ws = _phase_sizes(g, dh, dw)
    per_phase = (g.C * hs * ws + g.K * (hs - g.R + 1) * (ws - g.S + 1)) * g.dtype.itemsize
    block = max(1, min(g.N * dh * dw, WINOGRAD_PHASE_BYTES // per_phase))
    return hs, ws, block, per_phase


def phase_geometry(g, xs=None, phases=None):
    """The undilated forward geometry of a block of ``phases`` phases (all of
    the batch's when None; ``xs`` their stacked copies, None for the cost
    model)."""
    hs, ws, _, _ = dilated_phases(g)
    n = g.N * g.dilation[0] * g.dilation[1] if phases is None else phases
    return _GradInput(xs, g.w, n, g.C, g.K, hs - g.R + 1, ws - g.R + 1, (0, 0, 0, 0), g.dtype,
                      g.groups, getattr(g, "b", None), g.R)


def _phase_sizes(g, dh, dw):
    """Rows and columns of the largest phase (a, b) of the zero-padded input,
    rows a, a + dh, ... and columns b, b + dw, ..."""
    return -(-(g.H + g.pad[0] + g.pad[1]) // dh), -(-(g.W + g.pad[2] + g.pad[3]) // dw)


def strided_phases(g):
    """A convolution at stride s (both axes) as one at stride 1 on the
    zero-padded input's s x s phases (space-to-depth): output row p reads
    rows s p + i, i < R, that is rows p + i' of phase a for s i' + a = i, so
    with the phases as s^2 C input channels (phase-major: channel (a s + b)
    C + c) the weights become ceil(R / s) x ceil(R / s) taps, zero where s
    i' + a >= R. Returns ``(Hs, Ws, images, bytes)``: the phases' size (each
    padded to the largest one's, see phases_in), the images copied at a
    time (within WINOGRAD_PHASE_BYTES) and the bytes one image copies."""
    s = g.stride[0]
    hs, ws = _phase_sizes(g, s, s)
    per_image = s * s * g.C * hs * ws * g.dtype.itemsize
    return hs, ws, max(1, min(g.N, WINOGRAD_PHASE_BYTES // per_image)), per_image


def strided_geometry(g, xs=None, w=None, images=None):
    """The stride-1 forward geometry of a block of ``images`` images of
    strided geometry ``g`` (all of them when None) on their phases (see
    strided_phases; ``xs`` and ``w`` the copies, None for the cost model)."""
    s = g.stride[0]
    return _GradInput(xs, w, g.N if images is None else images, s * s * g.C, g.K, g.P, g.Q,
                      (0, 0, 0, 0), g.dtype, 1, getattr(g, "b", None), -(-g.R // s))


def strided_weights(g):
    """The weights of strided_geometry: w'[k, (a s + b) C + c, i, j] =
    w[k, c, s i + a, s j + b], zero past the kernel."""
    s, r = g.stride[0], -(-g.R // g.stride[0])
    w = np.zeros((g.K, g.C, s * r, s * r), g.dtype)
    w[:, :, :g.R, :g.S] = g.w
    # [k][c][i][a][j][b] -> [k][a][b][c][i][j]
    return np.ascontiguousarray(w.reshape(g.K, g.C, r, s, r, s).transpose(0, 3, 5, 1, 2, 4)
                                .reshape(g.K, s * s * g.C, r, r))


@dataclass
class _GradInput:
    """A forward R x R convolution at stride 1 the Winograd kernel runs for
    another (its operands, shapes and blocking): grad_input's (grad_output
    convolved with the flipped weights, input and output channels exchanged
    within each group), a dilated layer's phases', or a strided layer's on
    its phases as input channels."""

    x: object
    w: object
    N: int
    C: int
    K: int
    P: int
    Q: int
    pad: tuple
    dtype: object
    groups: int
    b: object = None
    R: int = 3  # the kernel's side


def grad_input_geometry(g, gy=None, n_threads=1):
    """grad_input = conv2d(grad_output, flipped transposed weights, padding R - 1 - p);
    without ``gy`` the shapes only (for the cost model)."""
    wt = None
    if gy is not None:  # [g][k][c] -> [g][c][k], each tap flipped
        wt = np.empty((g.C, g.K // g.groups, g.R, g.S), g.dtype)
        _conv.flip_transpose(g.w, wt, g.groups, n_threads)
    return _GradInput(gy, wt, g.N, g.K, g.C, g.H, g.W, tuple(g.R - 1 - p for p in g.pad),
                      g.dtype, g.groups, None, g.R)


def winograd_gw_blocks(g, n_threads, tile):
    """``(rows of tiles per work item, reduction block, shared)`` of
    Winograd's grad_weight: the forward's blocking (each thread summing its
    items into its own sums), or, on more than one thread where the whole
    batch's V and Z ((m + 2)^2 x (C + K) values per slot) fit in the
    threads' blocks (WINOGRAD_BLOCK_BYTES each) and take no more than the
    threads' sums would, one item per group whose elements the threads share
    (``shared``: one set of sums, none added). Measured on Zen 3, two
    threads: the 2x256x14x14 layer's grad_weight 1.76x faster shared, a
    1x128x28x28 one 1.29x; 4x64x24x24 and 2x96x31x31 ones (sums of 0.6 and
    1.1 MiB a thread) 1.0-1.1x slower shared, whose tiles stream from memory."""
    rows_total = g.N * -(-g.P // tile)
    vz = ((tile + 2) ** 2 * (g.C + g.K) * rows_total * winograd_slots(g.Q, tile)
          * g.dtype.itemsize)
    if (n_threads > 1 and vz <= n_threads * WINOGRAD_BLOCK_BYTES
            and vz <= n_threads * _winograd_sums_bytes(g, tile)):
        return max(1, rows_total), REDUCTION_BLOCK, True
    return (*winograd_blocks(g, n_threads, tile), False)


def winograd_slots(Q, tile, taps=3):
    """The GEMMs' columns per row of tiles: its tiles, and for F(2x2, 3x3) one
    more (see conv2d_winograd)."""
    return -(-Q // tile) + (tile + taps == 5)


def winograd_blocks(g, n_threads, tile=2):
    """``(rows of tiles per work item, reduction block)`` of the Winograd
    forward F(tile x tile, 3x3).

    Rows of tiles are numbered through the batch (small images share an
    item). V and M of an item (E x (C + K) / groups x its tiles, E = (tile +
    2)^2) take about WINOGRAD_BLOCK_BYTES, but an item has at least one row of
    tiles and one panel of them where the batch has that many, and the items
    are shared evenly among the threads."""
    rows_total = g.N * -(-g.P // tile)
    slots = winograd_slots(g.Q, tile, g.R)
    nr = _conv.gemm_block()[1 if g.dtype.itemsize == 4 else 2]
    per_group = (g.C + g.K) // g.groups  # an item's channels: one group's
    rows = WINOGRAD_BLOCK_BYTES // ((tile + g.R - 1) ** 2 * per_group * slots
                                    * g.dtype.itemsize)
    rows = max(1, rows, -(-nr // slots))
    fewest = max(1, -(-rows_total // rows))
    fewest = -(-fewest // n_threads) * n_threads  # a multiple of the threads
    # more items (up to twice as many) where an item's last panel of slots
    # would take fewer than two of the kernel's three vectors: such a panel
    # and the one before it run as narrower blocks (items of 8 rows of 8
    # slots, 64 = 48 + 16, ran the 256-channel 14x14 layer 14% slower than 12)
    for items in range(fewest, 2 * fewest + 1, n_threads):
        last = -(-rows_total // items) * slots % nr
        if last == 0 or last >= 2 * nr // 3:
            break
    else:
        items = fewest
    return max(1, -(-rows_total // items)), REDUCTION_BLOCK


def _peak(dtype):
    """Floating-point operations per cycle per core of the current SIMD variant."""
    lanes = _VECTOR_BYTES[_conv.simd_variant()] // dtype.itemsize
    return 2 * lanes if _conv.simd_variant() == "baseline" else 4 * lanes


#: the backward's cost bounds the GEMMs of grad_input by Winograd (a Winograd
#: forward with the channels exchanged) at the peak of vectors this wide (48:
#: 3/4 of AVX-512's, so AVX2 and the baseline are unbounded). On an Intel
#: Xeon (Ice Lake, two 512-bit FMA units), one thread, the Winograd backward
#: of c3-small, grp-3x3 and b2-3x3-256 took 9.0, 9.7 and 16.9 ms with the
#: AVX-512 kernels against 9.1, 10.9 and 22.9 with the AVX2 ones, while the
#: direct kernels went from 10.1, 14.9 and 31.3 to 5.6, 7.2 and 15.0 ms
#: (Winograd's transformed tiles stream through L2, the direct kernels'
#: operands stay in registers and L1). At AVX-512's full peak auto took
#: Winograd's grad_input on c3-small and grp-3x3, 1.27x and 1.18x slower
#: than direct; at AVX2's (32) it also moved odd-3x3-96 and 5x5-48 to
#: direct, 1.16x and 1.10x slower there.
WINOGRAD_GRAD_INPUT_VECTOR_BYTES = 48


def _winograd_grad_input_peak(dtype):
    """_peak, at most that of WINOGRAD_GRAD_INPUT_VECTOR_BYTES vectors."""
    return min(_peak(dtype), 4 * WINOGRAD_GRAD_INPUT_VECTOR_BYTES // dtype.itemsize)


def _direct_kind(g, backward=False):
    if g.groups > 1 and g.C // g.groups == 1:
        return "depthwise"
    if (g.R, g.S) == (1, 1):
        return "pointwise"
    # a backward whose (dilated) kernel fits within its stride ("patchify"
    # layers, 2x2/2 and 4x4/4, whose windows do not overlap): each of
    # grad_input's phases meets one tap, a 1x1 convolution. Ice Lake, nine
    # such layers (3 to 384 input channels), one and two threads: the GEMM's
    # backward 1.0-2.4x as fast (ViT's 16x16/16 8.8-11.7x), where direct's
    # cost had been the lower. Their forwards keep the kinds below: direct
    # 1.4x faster on the 4x4/4 stem of 3 channels, 1.04-1.76x slower on 2x2/2
    # from 64 to 384 channels
    (sh, sw), (dh, dw) = g.stride, g.dilation
    if backward and (g.R - 1) * dh < sh and (g.S - 1) * dw < sw:
        return "pointwise"
    if g.P * g.Q < DIRECT_SMALL_IMAGE:
        return "small images"
    if g.Q < DIRECT_LONG_ROWS:
        return "strided short rows" if max(g.stride) > 1 else "short rows"
    return "dense"


def _direct_efficiency(kind, backward):
    """DIRECT_EFFICIENCY of a kind of layer, on this CPU's vendor."""
    return DIRECT_EFFICIENCY_BY_VENDOR.get(CPU_VENDOR, {}).get(
        kind, DIRECT_EFFICIENCY[kind])[backward]


def _direct_filled(g):
    """Elements the direct kernels copy into their phase planes: stride_h x
    stride_w planes of (P + taps' reach) x (Q + taps' reach) per channel,
    whether or not a tap reads them. Negligible on usual layers; with a
    stride far beyond the kernel (16 x 16 planes for 3 x 3 taps) it is what
    the call costs."""
    (sh, sw), (dh, dw) = g.stride, g.dilation
    rows = g.P + (g.R - 1) * dh // sh
    cols = g.Q + (g.S - 1) * dw // sw
    return g.N * g.C * sh * sw * rows * cols


def _costs(g, backward=False):
    """Estimated cycles of every strategy that can run geometry ``g``."""
    peak = _peak(g.dtype)
    flops = max(1, g.flops) * (2 if backward else 1)
    kg = g.K // g.groups
    mr = _conv.gemm_block()[0]
    fill = kg / (math.ceil(kg / mr) * mr)
    copied = g.N * g.C * g.R * g.S * g.P * g.Q
    gemm = flops / (peak * GEMM_EFFICIENCY[backward] * fill)
    costs = {}
    if (g.R, g.S) == (1, 1):
        pointwise = g.stride == (1, 1) and g.pad == (0, 0, 0, 0) and in_place("1x1", g)
        costs["1x1"] = gemm + (0 if pointwise else PACK_CYCLES * copied)
    costs["im2col"] = gemm + PACK_CYCLES * copied
    kind = _direct_kind(g, backward)
    efficiency = _direct_efficiency(kind, backward)
    if backward and max(g.stride) > 1 and kind != "depthwise":
        efficiency *= DIRECT_STRIDED_BACKWARD
    fill = PACK_CYCLES if max(g.stride) <= 2 else FILL_CYCLES  # vectorised up to stride 2
    costs["direct"] = flops / (peak * efficiency) + fill * _direct_filled(g)
    if backward and winograd_backward_fits(g):
        # grad_input by Winograd; grad_weight by Winograd or as the direct
        # kernels compute it (half their work), whichever is cheaper
        gi = _winograd_cost(grad_input_geometry(g), _winograd_grad_input_peak(g.dtype))
        if gi is not None:
            gw = _winograd_grad_weight_cost(g, peak)
            costs["winograd"] = min(costs["direct"] / 2, gw[1] if gw else math.inf) + gi
    elif not backward and winograd_fits(g):
        cost = (_strided_winograd_cost(g, peak) if g.stride != (1, 1)
                else _winograd_cost(g, peak) if g.dilation == (1, 1)
                else _dilated_winograd_cost(g, peak))
        if cost is not None:
            costs["winograd"] = cost
    return costs


def _strided_winograd_cost(g, peak):
    """Winograd's estimated cycles for strided geometry ``g`` (see
    strided_phases): its phases' stride-1 convolution, the weights transformed
    again for every block of images, and the phases' copies; None beyond
    WINOGRAD_PHASE_BYTES per image or WINOGRAD_MAX_WEIGHT_BYTES."""
    _, _, block, per_image = strided_phases(g)
    if per_image > WINOGRAD_PHASE_BYTES:
        return None
    return _phased_winograd_cost(strided_geometry(g), peak, -(-g.N // block),
                                 per_image // g.dtype.itemsize * g.N)


def _dilated_winograd_cost(g, peak):
    """Winograd's estimated cycles for dilated geometry ``g``: its phases' as
    one undilated batch, the weights transformed again for every block of
    phases, and the phases' copies in and out; None beyond
    WINOGRAD_PHASE_BYTES per phase or WINOGRAD_MAX_WEIGHT_BYTES."""
    _, _, block, per_phase = dilated_phases(g)
    if per_phase > WINOGRAD_PHASE_BYTES:
        return None
    sub = phase_geometry(g)
    return _phased_winograd_cost(sub, peak, -(-sub.N // block),
                                 sub.N * (g.C * (sub.P + g.R - 1) * (sub.Q + g.R - 1)
                                          + g.K * sub.P * sub.Q))


def _phased_winograd_cost(sub, peak, blocks, copied):
    """A dilated or strided layer's Winograd cost from its phases' stride-1
    geometry ``sub`` (all of the batch's): their convolution, the weights
    transformed again for every block after the first, and WINOGRAD_PHASE_CYCLES
    per element of the ``copied`` values; None beyond WINOGRAD_MAX_WEIGHT_BYTES."""
    tile = winograd_tile(sub)
    if tile is None:
        return None
    e = tile + sub.R - 1
    return (_winograd_cost(sub, peak, tile)
            + (blocks - 1) * WINOGRAD_WEIGHT_CYCLES[e][0] * e * e * sub.K * (sub.C // sub.groups)
            + WINOGRAD_PHASE_CYCLES * copied)


def _winograd_grad_weight_cost(g, peak):
    """``(tile, estimated cycles)`` of Winograd's grad_weight for geometry
    ``g``, the cheaper of WINOGRAD_TILES whose sums fit two threads in
    WINOGRAD_GW_BYTES; None when none does. Its GEMMs and transforms are the
    forward's sizes (dU[xi][K, C] reduced over the tiles, V and Z of every
    tile), its back transform and per-item dU traffic the forward's weights'."""
    best = None
    for m in WINOGRAD_TILES if g.R == 3 else ():  # (3x3 kernels only)
        e = (m + 2) ** 2
        fwd = _winograd_cost(g, peak, m)
        if fwd is None or 2 * _winograd_sums_bytes(g, m) > WINOGRAD_GW_BYTES:
            continue
        slots = g.N * -(-g.P // m) * winograd_slots(g.Q, m)
        cost = fwd + WINOGRAD_GW_CYCLES[m] * e * (g.C + g.K) * slots
        if best is None or cost < best[1]:
            best = (m, cost)
    return best


def _winograd_sums_bytes(g, tile):
    return (tile + 2) ** 2 * g.K * (g.C // g.groups) * g.dtype.itemsize


def _winograd_gw_threads(g, tile, n_threads):
    """Threads of Winograd's grad_weight: at most as many as have their sums
    fit in WINOGRAD_GW_BYTES."""
    return max(1, min(n_threads, WINOGRAD_GW_BYTES // _winograd_sums_bytes(g, tile)))


def _winograd_grad_weight_tile(g, forced=False, n_threads=1):
    """The tile of grad_weight by Winograd in a backward that runs grad_input
    by Winograd, or None for the direct kernels: auto's choice by the cost
    model (its cost scaled up where fewer than ``n_threads`` threads run it,
    the direct kernels keeping them all); ``forced`` (algorithm="winograd")
    whenever the sums fit."""
    def pick():
        gw = _winograd_grad_weight_cost(g, _peak(g.dtype))
        if gw is None:
            return None
        cost = gw[1] * n_threads / _winograd_gw_threads(g, gw[0], n_threads)
        if not forced and cost >= _costs(g, True)["direct"] / 2:
            return None
        return gw[0]
    return _remembered(g, ("grad_weight tile", forced, n_threads), pick)


def winograd_grad_weight(g, n_threads, forced):
    """``(tile, threads)`` for grad_weight by Winograd on up to ``n_threads``
    threads (see _winograd_grad_weight_tile), or None."""
    tile = _winograd_grad_weight_tile(g, forced, n_threads)
    return None if tile is None else (tile, _winograd_gw_threads(g, tile, n_threads))


def winograd_tile(g):
    """The output tile m of F(m x m, r x r), among winograd_tiles(r), with the
    lowest estimated cost for stride-1 forward geometry ``g`` (r = g.R); None
    when every one's weights exceed WINOGRAD_MAX_WEIGHT_BYTES."""
    peak = _peak(g.dtype)
    costs = {m: _winograd_cost(g, peak, m) for m in winograd_tiles(g.R)}
    costs = {m: c for m, c in costs.items() if c is not None}
    return min(costs, key=costs.get) if costs else None


def _winograd_cost(g, peak, tile=None):
    """Winograd F(tile x tile, r x r)'s estimated cycles for stride-1 forward
    geometry ``g`` (r = g.R; the cheapest tile when None), or None beyond
    WINOGRAD_MAX_WEIGHT_BYTES."""
    if tile is None:
        tile = winograd_tile(g)
        if tile is None:
            return None
    mr = _conv.gemm_block()[0]
    kg, cg = g.K // g.groups, g.C // g.groups
    side = tile + g.R - 1
    e = side * side  # elements per tile
    weights = e * g.groups * -(-kg // mr) * mr * cg  # transformed, packed
    if weights * g.dtype.itemsize > WINOGRAD_MAX_WEIGHT_BYTES:
        return None
    fill = kg / (math.ceil(kg / mr) * mr)
    short = WINOGRAD_SHORT_REDUCTION_BY_VENDOR.get(CPU_VENDOR, WINOGRAD_SHORT_REDUCTION)
    efficiency = WINOGRAD_EFFICIENCY * math.sqrt(min(1, cg / short))
    tile_rows = g.N * -(-g.P // tile)
    slots = tile_rows * winograd_slots(g.Q, tile, g.R)
    items = -(-tile_rows // winograd_blocks(g, 1, tile)[0])  # per group
    once, per_item = WINOGRAD_WEIGHT_CYCLES[side]
    # the output transform's work by its tile (6 m + m^2 values a tile, F(4x4,
    # 3x3)'s 40 where the constants were fitted)
    out = 1 if side == 4 else (6 * tile + tile * tile) / 40
    return (2 * e * g.K * cg * slots / (peak * efficiency * fill)
            + WINOGRAD_TRANSFORM_CYCLES[side] * e * (g.C + out * g.K) * slots
            + (once + per_item * items) * e * g.K * cg)


#: auto's choices by shape (the strategy, and Winograd's grad_weight tile):
#: the cost model is pure Python and took 6-12 microseconds of a tiny call's
#: 24 (Zen 3), 48 for grad_weight's choice; a training loop asks the same few
#: shapes again and again. Bounded: emptied when it reaches AUTO_CACHE_SIZE.
_auto_cache: dict[tuple, object] = {}
AUTO_CACHE_SIZE = 4096
_MISSING = object()


def _remembered(g, question, answer):
    """``answer()`` for geometry ``g`` and ``question`` (a tuple), computed
    once per shape, dtype and SIMD variant (see _auto_cache)."""
    key = (g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.stride, g.pad, g.dilation, g.groups,
           g.dtype.char, _conv.simd_variant(), *question)
    value = _auto_cache.get(key, _MISSING)
    if value is _MISSING:
        value = answer()
        if len(_auto_cache) >= AUTO_CACHE_SIZE:
            _auto_cache.clear()
        _auto_cache[key] = value
    return value


def _auto(g, backward):
    """The strategy with the lowest estimated cost for geometry ``g``."""
    def cheapest():
        costs = _costs(g, backward)
        return min(costs, key=costs.get)
    return _remembered(g, ("strategy", backward), cheapest)


def clear_cache():
    """Forget auto's choices (after changing this module's cost constants)."""
    _auto_cache.clear()


def resolve(func, algorithm, g, backward=False):
    """Return the concrete algorithm for geometry ``g``; raise if it cannot run."""
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"{func}: algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}"
        )
    if algorithm == "auto":
        return _auto(g, backward)
    if algorithm == "winograd" and not winograd_fits(g):
        raise ValueError(
            f"{func}: algorithm 'winograd' needs a square kernel of 2 to 5 taps at stride "
            f"1, or one at stride s on both axes (no dilation, groups 1) whose ceil(taps / "
            f"s) is 2 to 5, got kernel size {(g.R, g.S)}, stride {g.stride}, dilation "
            f"{g.dilation}, groups {g.groups}"
        )
    if algorithm == "winograd" and backward and not winograd_backward_fits(g):
        return "im2col"
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

    Examples
    --------
    >>> import fastconv
    >>> e = fastconv.explain((8, 32, 28, 28), (32, 1, 3, 3), padding=1, groups=32)
    >>> e.output_shape, e.algorithm in ('direct', 'im2col', '1x1')
    ((8, 32, 28, 28), True)
    >>> min(e.costs, key=e.costs.get) == e.algorithm
    True
    """

    algorithm: str
    costs: dict = field(repr=False)
    reason: str
    simd: str
    output_shape: tuple
    flops: int

    def __str__(self):
        rows = "\n".join(
            f"  {name:8s} {cost:10.2f} Mcycles" + ("  <- auto" if name == self.algorithm else "")
            for name, cost in sorted(self.costs.items(), key=lambda kv: kv[1])
        )
        return (
            f"conv2d -> {self.output_shape}, {self.flops / 1e9:.3f} GFLOP, "
            f"SIMD {self.simd}\n{rows}\n{self.reason}"
        )


def explain(g, backward=False):
    """The Explanation for geometry ``g`` (see fastconv.explain)."""
    costs = {k: v / 1e6 for k, v in _costs(g, backward).items()}
    best = min(costs, key=costs.get)
    others = sorted((v, k) for k, v in costs.items() if k != best)
    if best == "direct":
        why = (f"direct: a {_direct_kind(g, backward)} layer, where the direct kernels beat a GEMM "
               f"that first copies the im2col rows")
    elif best == "1x1":
        why = "1x1: a pointwise convolution is a GEMM on the image's pixels"
    elif best == "winograd":
        run = (grad_input_geometry(g) if backward else strided_geometry(g)
               if g.stride != (1, 1) else g if g.dilation == (1, 1) else phase_geometry(g))
        m, r, s = winograd_tile(run), run.R, g.stride[0]
        fewer = g.R * g.S * m * m / ((m + r - 1) ** 2 * s * s)  # (the phases' s^2 C channels)
        why = (f"winograd: a {g.R}x{g.S} layer with {g.C // g.groups} input and "
               f"{g.K // g.groups} output channels per group, enough for the transforms "
               f"of F({m}x{m}, {r}x{r}) to pay for {fewer:.2f}x fewer multiplications"
               f"{' in grad_input' if backward else ''}")
        if backward:
            m = _winograd_grad_weight_tile(g)
            why += (f", and of F({m}x{m}, 3x3) in grad_weight" if m is not None
                    else " (grad_weight: the direct kernels)")
        if g.dilation != (1, 1):
            why += ", on the dilated layer's phases (copied a block at a time)"
        if g.stride != (1, 1):
            why += (f", at stride 1 on the strided layer's {g.stride[0]}x{g.stride[1]} phases "
                    f"as {run.C} input channels (copied a block of images at a time)")
    else:
        why = (f"im2col: {(g.C // g.groups) * g.R * g.S} taps per output and "
               f"{g.K // g.groups} output channels per group keep the GEMM micro-kernel "
               f"busy enough to pay for copying the im2col rows")
    if others:
        why += f" (next best: {others[0][1]}, {others[0][0] / costs[best]:.2f}x the cost)"
    return Explanation(best, costs, why, _conv.simd_variant(), g.out_shape, g.flops)


#: below this many floating-point operations (~10 microseconds of one core's
#: work) a call runs on one thread: waking an OpenMP team costs more
PARALLEL_MIN_FLOPS = 2_000_000


def threads_for(g, n_threads, backward=False):
    """The thread count worth using for one call of geometry ``g``."""
    return n_threads if g.flops * (2 if backward else 1) >= PARALLEL_MIN_FLOPS else 1


#: "1x1" reads a stride-1 unpadded image in place as the GEMM's pixel panel
#: when it has at most IN_PLACE_MAX_CHANNELS channels per group or rows of at
#: most IN_PLACE_MAX_ROW_BYTES: a panel's rows lie one image plane apart, and
#: past a few pages apart the reads miss the TLB. Measured on 7 pointwise
#: layers (24-2048 channels, AVX-512 at 1 and 2 threads, AVX2): in place took
#: 0.69-0.96x the time of copying the rows first within these bounds; beyond
#: them float32 was mixed (0.9-1.14x) and float64 up to 2.3x slower.
#: Not in place either where an image's pixels leave more than a sixteenth
#: of the kernel's vector lanes idle, there are more images than threads and
#: at least BATCHED_MIN_OUTPUTS output channels per group to pay for the
#: copy: copied, the pixels of the batch run as one axis. Zen 3, float32, on
#: 7x7 images (49 pixels in 7 vectors of 8 lanes), one thread: 2048 to 512
#: channels 1.31x as fast, 512 to 2048 1.29x, 160 to 960 1.17x, but 960 to
#: 160 0.94x; two threads: 4 images 512 to 2048 1.15x, but 2 images 2048 to
#: 512 0.87x (in place, one image a thread); on 14x14 (196 of 200 lanes) in
#: place stays 1.1x faster.
#: Nor where the image's rows are a multiple of IN_PLACE_CONFLICT_BYTES
#: apart: a panel's rows then fall in at most 4 of L1's 64 sets and evict
#: each other (Zen 3, float32, one thread, 128-1024 channels: on 16x16,
#: 32x32 and 64x64 images in place ran at 57-75 GFLOP/s, copied at 78-83;
#: on 8x8, 24x24, 40x40 and 56x56 in place stays 1.01-1.2x faster).
IN_PLACE_MAX_CHANNELS = 64
IN_PLACE_MAX_ROW_BYTES = 16 * 1024
IN_PLACE_CONFLICT_BYTES = 1024
BATCHED_MIN_OUTPUTS = 256


def in_place(algorithm, g, n_threads=1):
    """Whether the GEMM kernels may read the image itself as the pixel panel
    on ``n_threads`` threads."""
    if algorithm != "1x1":
        return False
    pixels = g.H * g.W
    if pixels * g.dtype.itemsize % IN_PLACE_CONFLICT_BYTES == 0:
        return False
    vl = _conv.gemm_block()[1 if g.dtype.itemsize == 4 else 2] // 3
    if (g.N > n_threads and g.K // g.groups >= BATCHED_MIN_OUTPUTS
            and 16 * (-pixels % vl) > -(-pixels // vl) * vl):
        return False
    return (g.C // g.groups <= IN_PLACE_MAX_CHANNELS
            or pixels * g.dtype.itemsize <= IN_PLACE_MAX_ROW_BYTES)


#: output pixels per work item of the packed GEMM (its pixel block is
#: PIXEL_BLOCK x REDUCTION_BLOCK values: 384 KiB in float32, L2-resident),
#: counted in bytes per row: 384 float32 or 192 float64 pixels (at 384,
#: float64 rows 3 KiB apart ran 5-15% slower on the dense 3x3 layers)
PIXEL_BLOCK_BYTES = 1536
#: reduction rows (of C/groups * R * S) per packed block: the kernel's pixel
#: panel (REDUCTION_BLOCK x 48 in float32, 48 KiB) streams from L2 with the
#: weights, and fewer blocks mean fewer passes over the output (measured
#: best of 64/128/256 on the yardstick, AVX-512)
REDUCTION_BLOCK = 256


def _l2_bytes():
    """One core's L2 cache, as Linux reports it (1 MiB where it does not)."""
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(root)):
            with open(os.path.join(root, index, "level")) as f:
                if f.read().strip() != "2":
                    continue
            with open(os.path.join(root, index, "size")) as f:
                size = f.read().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
            return int(size.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return 1 << 20


#: per-core L2, read once: the GEMM paths' blocks are sized to it
L2_BYTES = _l2_bytes()


def cpu_info():
    """``(model, flags, vendor)`` of the first CPU in /proc/cpuinfo, or
    ``(None, set(), "")`` where it is absent; vendor: vendor_id
    ("GenuineIntel", "AuthenticAMD"), "" where not reported."""
    model, flags, vendor = None, set(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                value = value.strip()
                # x86: "model name"; ARM: "Hardware"/"Processor" (x86's "processor" is a number)
                names = ("model name", "hardware", "cpu model", "processor")
                if model is None and key in names and value and not value.isdigit():
                    model = value
                elif not flags and key in ("flags", "features"):
                    flags = set(value.split())
                elif not vendor and key == "vendor_id":
                    vendor = value
                if model is not None and flags and vendor:
                    break  # the first CPU's (a file of every core's)
    except OSError:
        pass
    return model, flags, vendor


#: read once: the key of the *_BY_VENDOR tables
CPU_VENDOR = cpu_info()[2]

#: reduction rows per block of the im2col and 1x1 paths where the weights'
#: block and the pixel block (REDUCTION_BLOCK rows of each) would not fit in
#: L2 together. On AMD Zen 3 (512 KiB of L2, one thread, interleaved runs):
#: the 512-channel stride-2 1x1 layer (896 KiB at 256 rows) ran 12% faster
#: forward and 8% backward at 160 rows, the 1024-to-256 1x1 layer 7% forward
#: (float64: 11-13% forward on both), the batch-1 7x7 512-channel 3x3 1%
#: slower; where both fit (the 64-channel ResNet 1x1) 160 rows ran 3% slower
#: (two passes over the output instead of one), so those keep 256
SPILL_REDUCTION_BLOCK = 160


def gemm_reduction_block(g, rows, pixels):
    """Reduction rows per block of the im2col and 1x1 paths (forward and
    grad_input): ``rows`` of the weight operand (output channels forward,
    C/groups * R * S for grad_input), ``pixels`` per block of the other."""
    mr = _conv.gemm_block()[0]
    rows = -(-rows // mr) * mr
    if (rows + pixels) * REDUCTION_BLOCK * g.dtype.itemsize <= L2_BYTES:
        return REDUCTION_BLOCK
    return SPILL_REDUCTION_BLOCK


def gemm_blocks(g, n_threads):
    """``(pixels, reduction rows)`` per block of the packed-GEMM forward.

    Pixel blocks shrink when there are fewer images x groups than threads,
    so every thread gets work; below two panels of pixels each (a batch-1
    7x7 image) only if the kernel cannot split the output channels among
    the threads instead (fewer than a register block of them per thread)."""
    pq = g.P * g.Q
    nc = PIXEL_BLOCK_BYTES // g.dtype.itemsize
    mr, nr32, nr64 = _conv.gemm_block()
    nr = nr32 if g.dtype.itemsize == 4 else nr64
    items = max(1, g.N * g.groups)
    share = -(-pq // -(-n_threads // items))
    if items < n_threads and (share >= 2 * nr or g.K // g.groups < n_threads * mr):
        nc = min(nc, share)
    return nc, gemm_reduction_block(g, g.K // g.groups, nc)


#: bytes of the grad_output tile the grad_weight kernel keeps in L2
WEIGHT_TILE_BYTES = 512 * 1024
#: pixels per grad_weight tile at most: the kernel's few im2col rows of the
#: tile (6 x 1024 floats = 24 KiB) then stay in L1
WEIGHT_TILE_MAX = 1024


#: grad_weight runs on the GEMM micro-kernel (grad_weight itself the output,
#: reduced over pixels) from this many output channels per group (and one
#: panel of columns C/groups * R * S): enough multiply-adds per im2col value
#: to pay for transposing it
GW_GEMM_MIN_CHANNELS = 128
#: pixels per tile and columns (c, r, s) per block of that path: the
#: transposed im2col tile (256 x 480 floats, 480 KiB) stays in L2
GW_GEMM_PIXELS = 256
GW_GEMM_COLUMNS = 480
#: below GW_GEMM_MIN_CHANNELS, from this many output channels per group,
#: grad_weight runs on the GEMM micro-kernel transposed (grad_weight^T =
#: im2col rows @ dY^T: only dY's tile is transposed, a pointwise layer's
#: image read in place), in blocks of up to GW_GEMM_COLUMNS rows (c, r, s).
#: Zen 3, one thread, against the "dot" kernel (whole backward): ResNet's
#: 256-to-64 1x1 1.29x faster, MobileNet's 144-to-32 1.38x, 3x3 layers of 64
#: channels 4-9%; with 16 channels 1.04-1.8x; below 12 the "dot" kernel won
GWT_MIN_CHANNELS = 16
#: deeper layers (GW_GEMM_MIN_CHANNELS and more) take the transposed GEMM
#: too where an image has this many output pixels. Zen 3, whole backward,
#: against the GEMM with grad_weight as its output: 28x28 and larger outputs
#: 1.04-1.33x faster in 11 of 12 layer and thread-count pairs (one 3% slower),
#: 14x14 ones 0.94-1.05x, 12x12 and 7x7 ones 0.71-0.99x
GWT_MIN_PIXELS = 512
#: bytes of a thread's grad_weight^T block (rows x Kg) and of its transposed
#: tile of dY (pixels x Kg) at most, on that path: for deep layers (2048
#: output channels, float64) they bound the rows and the pixels per tile, so
#: a call's workspace stays small whatever the layer
GWT_BLOCK_BYTES = 1 << 20


def _gw_blocks(crs, groups, n_threads, step, most=GW_GEMM_COLUMNS):
    """Rows or columns (c, r, s) per grad_weight block of the GEMM paths:
    at most ``most`` (but one ``step``), whole multiples of ``step``, and
    blocks x groups a multiple of the thread count where possible, so no
    thread idles."""
    most = max(step, most // step * step)
    blocks = -(-crs // most)
    while (blocks * groups) % n_threads and blocks < crs:
        blocks += 1
    size = -(-crs // blocks)
    return min(max(step, -(-size // step) * step), most)


def backward_blocks(g, n_threads):
    """``(pixels per grad_weight tile, grad_weight path (0: the "dot"
    kernel, 1: the GEMM, 2: the GEMM transposed), rows or columns per block
    of the GEMM paths, output rows per grad_input band, reduction block)``
    of the packed-GEMM backward."""
    kg = g.K // g.groups
    mr, nr32, nr64 = _conv.gemm_block()
    nr = nr32 if g.dtype.itemsize == 4 else nr64
    crs = (g.C // g.groups) * g.R * g.S
    pq = g.P * g.Q
    tw = min(GW_GEMM_PIXELS, max(1, pq))  # the GEMM paths' tile: one image's pixels
    # grad_weight's columns (c, r, s) fill the GEMM's pixel vectors: fewer
    # than one panel's worth (a 24-channel 1x1) and the "dot" kernel wins
    deep = kg >= GW_GEMM_MIN_CHANNELS and crs >= nr
    if deep and pq < GWT_MIN_PIXELS:
        return (tw, 1, _gw_blocks(crs, g.groups, n_threads, nr), *_backward_bands(g, n_threads))
    if deep or GWT_MIN_CHANNELS <= kg < GW_GEMM_MIN_CHANNELS:
        most = GWT_BLOCK_BYTES // (kg * g.dtype.itemsize)  # rows, or pixels
        tw = min(tw, max(mr, most))
        rows = _gw_blocks(crs, g.groups, n_threads, mr, min(GW_GEMM_COLUMNS, most))
        return (tw, 2, rows, *_backward_bands(g, n_threads))
    pixels = max(1, g.N * g.P * g.Q)  # grad_weight tiles run across images
    tw = max(64, min(WEIGHT_TILE_MAX, WEIGHT_TILE_BYTES // (kg * g.dtype.itemsize)))
    if g.groups * -(-pixels // tw) < n_threads:
        tw = min(tw, max(64, -(-pixels // -(-n_threads // g.groups))))
    return (min(tw, pixels), 0, 0, *_backward_bands(g, n_threads))


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
    rows = max(min_rows, min(rows, g.P))
    return rows, gemm_reduction_block(g, depth, rows * g.Q)
