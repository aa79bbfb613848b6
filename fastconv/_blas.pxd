# One GEMM for both precisions, row-major, through SciPy's BLAS (nogil).
from scipy.linalg.cython_blas cimport sgemm, dgemm

from fastconv._types cimport floating


cdef inline void gemm_rm(bint trans_a, bint trans_b, int m, int n, int k,
                         floating alpha, const floating *a, int lda,
                         const floating *b, int ldb, floating beta,
                         floating *c, int ldc) noexcept nogil:
    """Row-major C[m, n] = alpha * op(A) @ op(B) + beta * C.

    BLAS is column-major, so this computes C^T = op(B)^T @ op(A)^T by
    swapping the operands: no data is transposed.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
              &beta, c, &ldc)
