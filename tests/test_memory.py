"""Extra memory of one call stays bounded (tiles, not a full im2col), whatever the batch.

Each case runs in a fresh interpreter so its peak resident set size
(ru_maxrss) belongs to that one call: peak - (baseline + inputs + outputs)
is the memory the call itself allocated.
"""
import subprocess
import sys
import textwrap

import pytest

LIMIT_MIB = 32

SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    import fastconv

    fastconv.set_num_threads(2)
    kind, algorithm = sys.argv[1], sys.argv[2]
    dilation = 1
    if algorithm == "winograd-dilated":
        # a deep dilated layer (Winograd on its phases, copied 8 MiB at a
        # time): one image's input and output take 9 MiB each, its phases
        # 20 MiB, its F(4x4) weights 9 MiB
        x = np.ones((1, 256, 96, 96), np.float32)
        w = np.ones((256, 256, 3, 3), np.float32)
        y = np.ones((1, 256, 96, 96), np.float32)
        pad, dilation, algorithm = 2, 2, "winograd"
    elif algorithm == "winograd-deep":
        # a deep 14x14 layer: Winograd's grad_weight keeps each thread's sums
        # over the tiles, 16 x 256 x 256 values (4 MiB) for F(2x2)
        x = np.ones((8, 256, 14, 14), np.float32)
        w = np.ones((256, 256, 3, 3), np.float32)
        y = np.ones((8, 256, 14, 14), np.float32)
        pad, algorithm = 1, "winograd"
    elif algorithm != "1x1":
        # VGG's 3x3 layer at 224x224: a full im2col of it would be 110 MiB
        x = np.ones((1, 64, 224, 224), np.float32)
        w = np.ones((64, 64, 3, 3), np.float32)
        y = np.ones((1, 64, 224, 224), np.float32)
        pad = 1
    else:
        # a deep float64 1x1 layer: grad_weight^T blocks of 2048 channels
        x = np.ones((2, 512, 28, 28))
        w = np.ones((2048, 512, 1, 1))
        y = np.ones((2, 2048, 28, 28))
        pad = 0
    gx = np.ones_like(x)
    gw = np.ones_like(w)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind == "forward":
        fastconv.conv2d(x, w, padding=pad, dilation=dilation, algorithm=algorithm, out=y)
    else:
        # the results are fresh arrays of the size of gx and gw, held above
        del gx, gw
        fastconv.conv2d_backward(y, x, w, padding=pad, dilation=dilation, algorithm=algorithm)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) / 1024)  # KiB -> MiB
    """
)


@pytest.mark.parametrize("kind", ["forward", "backward"])
@pytest.mark.parametrize("algorithm", ["direct", "im2col", "winograd", "1x1", "winograd-dilated",
                                       "winograd-deep"])
def test_extra_memory_is_bounded(kind, algorithm, tmp_path):
    # run outside the source tree, so the child imports the installed package
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, kind, algorithm],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    extra_mib = float(out.stdout.strip())
    assert extra_mib <= LIMIT_MIB, f"{kind} {algorithm} allocated {extra_mib:.1f} MiB"
