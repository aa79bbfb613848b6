"""Which strategy ``algorithm="auto"`` runs, and how large its tiles are.

The rule (documented in the README and returned by :func:`fastconv.explain`):

1. a 1x1 kernel runs as a GEMM with no im2col ("1x1");
2. depthwise and other thin convolutions, whose GEMM would have fewer than
   ``DIRECT_MAX_DEPTH`` reduction terms per output (C/groups * R * S), run
   "direct": a GEMM that short cannot amortise copying the image into tiles;
3. everything else runs "im2col" (tiled im2col + GEMM);
4. shapes beyond BLAS's 32-bit dimensions always run "direct".
"""
ALGORITHMS = ("auto", "direct", "im2col", "1x1")

#: reduction length below which the direct kernel beats im2col + GEMM
DIRECT_MAX_DEPTH = 32
#: bytes of one thread's im2col tile: about half of a typical L2 cache
TILE_BYTES = 512 * 1024
#: BLAS takes 32-bit int dimensions and leading dimensions
_BLAS_MAX = 2**31 - 1


def _fits_blas(g):
    depth = (g.C // g.groups) * g.R * g.S
    return max(depth, g.P * g.Q, g.H * g.W, g.K) <= _BLAS_MAX


def resolve(func, algorithm, g):
    """Return the concrete algorithm for geometry ``g``; raise if it cannot run."""
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"{func}: algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}"
        )
    if algorithm == "auto":
        if not _fits_blas(g):
            return "direct"
        if g.R == 1 and g.S == 1:
            return "1x1"
        if (g.C // g.groups) * g.R * g.S < DIRECT_MAX_DEPTH:
            return "direct"
        return "im2col"
    if algorithm == "1x1" and (g.R, g.S) != (1, 1):
        raise ValueError(
            f"{func}: algorithm '1x1' needs a 1x1 kernel, got kernel size {(g.R, g.S)}"
        )
    if algorithm != "direct" and not _fits_blas(g):
        raise ValueError(
            f"{func}: algorithm {algorithm!r} calls BLAS, whose dimensions are 32-bit; "
            f"this shape needs algorithm='direct', got input of shape {(g.N, g.C, g.H, g.W)}"
        )
    return algorithm


def tile_pixels(g, n_threads):
    """Output pixels per im2col tile: the tile (depth x pixels) fills TILE_BYTES,
    but tiles stay small enough that every thread gets work."""
    depth = (g.C // g.groups) * g.R * g.S
    pq = g.P * g.Q
    tile = max(16, TILE_BYTES // (depth * g.dtype.itemsize))
    items = max(1, g.N * g.groups)  # N = 0 runs no tile at all
    if items < n_threads:  # too few images to share: split each image further
        tile = min(tile, -(-pq // -(-n_threads // items)))
    if tile >= pq:
        return pq
    return max(16, tile // 16 * 16)


#: output pixels per work item of the packed GEMM (its pixel block is
#: PIXEL_BLOCK x REDUCTION_BLOCK values: 384 KiB in float32, L2-resident)
PIXEL_BLOCK = 768
#: reduction rows (of C/groups * R * S) per packed block; the kernel's pixel
#: panel (REDUCTION_BLOCK x 48 in float32) then stays in L1
REDUCTION_BLOCK = 128


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
WEIGHT_TILE_BYTES = 1024 * 1024


def backward_blocks(g, n_threads):
    """``(pixels per grad_weight tile, output rows per grad_input band,
    reduction block)`` of the packed-GEMM backward."""
    pq = g.P * g.Q
    kg = g.K // g.groups
    tw = max(64, WEIGHT_TILE_BYTES // (kg * g.dtype.itemsize))
    items = max(1, g.N * g.groups)
    if items < n_threads:
        tw = min(tw, max(64, -(-pq // -(-n_threads // items))))
    return (min(tw, pq), *_backward_bands(g, n_threads))


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
