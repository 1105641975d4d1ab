"""The bfloat16 product on the GPU: y (M, N) float32 = bf16(x) @ W.T for float32 x (M, K) and a weight
W (N, K) stored as bfloat16 bits (uint16), summed in float32 by cuBLAS (`cublasGemmEx`).

CuPy has no bfloat16 dtype, so the weights are uint16 arrays holding the upper halves of float32
values (rounded to nearest even when they were made, `models.device_bf16.bf16_bits`) and the call
goes through CuPy's thin cuBLAS binding, whose `gemmEx` takes raw pointers and cudaDataType codes:
    gemmEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc,
           computeType, algo)
(cupy_backends/cuda/libs/cublas.pyx; a computeType >= CUBLAS_COMPUTE_16F selects the CUDA 11
cublasComputeType_t signature). The binding sets the current CuPy stream on the handle before each
call, so the product is queued on the worker's stream like every other kernel. The handle
(`cupy.cuda.device.get_cublas_handle`) is this thread's own for the current device (CuPy keeps
them per thread), so setting its pointer mode to host scalars touches no other worker.

Row-major trick: cuBLAS is column-major, and a row-major (R, C) array is the column-major (C, R)
array of its transpose. So y^T (N, M) = W (N, K) x^T: A = the weight buffer read transposed
(column-major (K, N), lda = K), B = the bf16 activations as they are (column-major (K, M),
ldb = K), C = y (column-major (N, M), ldc = N). Both operands run along K contiguously ("TN"),
the layout the tensor cores prefer. cuBLAS has no alignment requirement for correctness: odd K or
N (or unaligned pointers) only make it pick a kernel without tensor cores.

bfloat16 GEMMs need compute capability 8.0 or later: `models.device.to_device` refuses other GPUs
before any weight is made.
"""

from __future__ import annotations

import cupy
import numpy as np
from cupy_backends.cuda.libs import cublas  # what cupy.cuda.cublas names

from .kernels import launch_flat

# cudaDataType_t codes (CUDA's library_types.h); CuPy does not export them under one stable name.
CUDA_R_32F = 0
CUDA_R_16BF = 14
_ALPHA = np.ones(1, dtype=np.float32)  # host scalars (CUBLAS_POINTER_MODE_HOST): read during the call
_BETA = np.zeros(1, dtype=np.float32)


def to_bf16(x):
    """float32 cupy array -> uint16 bfloat16 bits of the same shape (round to nearest even)."""
    out = cupy.empty(x.shape, dtype=np.uint16)
    launch_flat("to_bf16", np.float32, x.size, (x, out, np.int64(x.size)))
    return out


def bf16_gemm(x, w, y) -> None:
    """y (M, N) = bf16(x) @ w.T for float32 x (M, K) and bf16 bits w (N, K), C-contiguous, summed in
    float32. x is rounded to bfloat16 first (a scratch copy), as the CPU kernels round it."""
    m, k = x.shape
    n = w.shape[0]
    if m == 0 or n == 0:
        return
    if k == 0:
        y.fill(0)  # an empty sum; cuBLAS would leave C as beta * C
        return
    xb = to_bf16(x)  # freed on return, but CuPy's pool reuses a block only on its own stream: in order
    handle = cupy.cuda.device.get_cublas_handle()
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)  # alpha, beta are host pointers
    cublas.gemmEx(
        handle, cublas.CUBLAS_OP_T, cublas.CUBLAS_OP_N, n, m, k,
        _ALPHA.ctypes.data, w.data.ptr, CUDA_R_16BF, k,
        xb.data.ptr, CUDA_R_16BF, k,
        _BETA.ctypes.data, y.data.ptr, CUDA_R_32F, n,
        cublas.CUBLAS_COMPUTE_32F, cublas.CUBLAS_GEMM_DEFAULT,
    )  # fmt: skip
