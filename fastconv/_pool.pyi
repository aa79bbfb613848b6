# Signatures of the compiled pooling kernels (fastconv/_pool.pyx).
# Arrays: C-contiguous NCHW of one float dtype, indices int64; outputs preallocated.
# Kernels return 0 on success, -1 when out of memory (-2: see max_pool_forward).
import numpy as np

def max_pool_forward(x: np.ndarray, y: np.ndarray, indices: np.ndarray | None,
                     kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int,
                     adaptive: bool, n_threads: int) -> int:
    """-2: a window spans 2**31 or more positions (indices cannot be tracked)."""
def max_pool_backward(gy: np.ndarray, indices: np.ndarray, gx: np.ndarray,
                      kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int,
                      adaptive: bool, n_threads: int) -> int:
    """Returns the number of out-of-range indices (skipped)."""
def avg_pool_forward(x: np.ndarray, y: np.ndarray, kh: int, kw: int, sh: int, sw: int,
                     ph: int, pw: int, adaptive: bool, count_include_pad: bool,
                     divisor_override: int, n_threads: int) -> int: ...
def avg_pool_backward(gy: np.ndarray, gx: np.ndarray, kh: int, kw: int, sh: int, sw: int,
                      ph: int, pw: int, adaptive: bool, count_include_pad: bool,
                      divisor_override: int, n_threads: int) -> int: ...

def simd_variants() -> list[str]: ...
def simd_variant() -> str: ...
def set_simd_variant(name: str) -> None: ...
def set_fast_paths(enabled: bool) -> bool: ...
def _set_prefetch(ahead: int, most: int) -> tuple[int, int]: ...
def describe_plan(N: int, C: int, H: int, W: int, P: int, Q: int, kh: int, kw: int, sh: int,
                  sw: int, ph: int, pw: int, dh: int, dw: int, adaptive: bool, backward: bool,
                  n_threads: int) -> dict[str, bool | int]: ...
