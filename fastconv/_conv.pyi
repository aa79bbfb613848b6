# Signatures of the compiled convolution kernels (fastconv/_conv.pyx).
# Arrays: C-contiguous, all float32 or all float64; outputs preallocated.
# Each returns 0, or -1 when a workspace allocation failed.
import numpy as np

def conv2d_direct(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, y: np.ndarray,
                  sh: int, sw: int, pt: int, pl: int, dh: int, dw: int, groups: int,
                  n_threads: int) -> int: ...
def conv2d_backward_direct(gy: np.ndarray, x: np.ndarray, w: np.ndarray, gx: np.ndarray,
                           gw: np.ndarray, sh: int, sw: int, pt: int, pl: int, dh: int,
                           dw: int, groups: int, n_threads: int) -> int: ...
def conv2d_gemm(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, y: np.ndarray,
                sh: int, sw: int, pt: int, pl: int, dh: int, dw: int, groups: int,
                tile: int, copy_free: bool, n_threads: int) -> int: ...
def conv2d_backward_gemm(gy: np.ndarray, x: np.ndarray, w: np.ndarray, gx: np.ndarray,
                         gw: np.ndarray, sh: int, sw: int, pt: int, pl: int, dh: int,
                         dw: int, groups: int, tile: int, copy_free: bool,
                         n_threads: int) -> int: ...
