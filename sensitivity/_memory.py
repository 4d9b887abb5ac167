"""Arrays that start on a cache line.

numpy aligns large arrays to 16 bytes only. Kernels that read rows of 32 bytes (sparse
Jacobian seeds) or write whole 64-byte lines with non-temporal stores (the store-all FWI
images) need their rows to start on a line.
"""

from __future__ import annotations

import numpy as np

CACHE_LINE = 64  # bytes


def aligned_array(shape, zeros=False):
    """A float64 array of ``shape`` whose first element starts on a 64-byte line.

    Parameters
    ----------
    shape : tuple of int
    zeros : bool
        Zero-filled (else uninitialised, like ``np.empty``).

    Returns
    -------
    ndarray, C-contiguous
    """
    size = int(np.prod(shape))
    buf = (np.zeros if zeros else np.empty)(size + CACHE_LINE // 8)
    start = (-buf.ctypes.data % CACHE_LINE) // 8
    return buf[start : start + size].reshape(shape)
