# Signatures of the compiled pooling kernels (fastconv/_pool.pyx).
# Arrays: C-contiguous NCHW of one float dtype, indices int64; outputs preallocated.
import numpy as np

def max_pool_forward(x: np.ndarray, y: np.ndarray, indices: np.ndarray | None,
                     kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int,
                     adaptive: bool, n_threads: int) -> int: ...
def max_pool_backward(gy: np.ndarray, indices: np.ndarray, gx: np.ndarray,
                      n_threads: int) -> int:
    """Returns the number of out-of-range indices (skipped)."""
def avg_pool_forward(x: np.ndarray, y: np.ndarray, kh: int, kw: int, sh: int, sw: int,
                     ph: int, pw: int, adaptive: bool, count_include_pad: bool,
                     divisor_override: int, n_threads: int) -> int: ...
def avg_pool_backward(gy: np.ndarray, gx: np.ndarray, kh: int, kw: int, sh: int, sw: int,
                      ph: int, pw: int, adaptive: bool, count_include_pad: bool,
                      divisor_override: int, n_threads: int) -> int: ...
