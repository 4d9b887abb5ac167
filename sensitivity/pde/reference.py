"""The wave scheme of :mod:`sensitivity.pde.wave` in plain vectorised numpy.

A reference for the compiled kernels (the tests compare them) that also runs on
:class:`sensitivity.ad.dual.Dual` models, giving forward-mode derivatives of the
data independent of the adjoint code.
"""

from __future__ import annotations

import numpy as np


def forward_numpy(setup, m, q):
    """The same scheme in vectorised numpy (reference and benchmark baseline).

    Works on :class:`sensitivity.ad.dual.Dual` models too (forward-mode
    derivatives of the data), which the tests use as an independent check.
    Returns the data, shape (nt, n_receivers).
    """
    nx, nz = setup.shape
    dt, sig = setup.dt, setup.sigma
    cs = setup._cs()
    inv_a = 1.0 / (m * (1.0 / dt**2 + sig / (2 * dt)))
    c = 2.0 * m / dt**2
    b = m * (1.0 / dt**2 - sig / (2 * dt))
    src = np.zeros((setup.nt, nx, nz))
    sw = setup._src_w()
    for p in range(setup.sources.n):
        for k in range(4):
            i, j = setup.sources.idx[p, k]
            src[:, i, j] += sw[p, k] * q[:, p]
    ri, rj = setup.receivers.idx[..., 0], setup.receivers.idx[..., 1]
    rw = setup.receivers.weights
    zx, zz = np.zeros((2, nz)), np.zeros((nx + 4, 2))

    def pad(x):
        return np.concatenate([zz, np.concatenate([zx, x, zx], axis=0), zz], axis=1)

    up = u = np.zeros((nx, nz))
    data = []
    for n in range(setup.nt):
        data.append(np.sum(rw * u[ri, rj], axis=1))
        if n == setup.nt - 1:
            break
        w = pad(u)
        lap = (
            (cs[0] + cs[3]) * u
            + cs[1] * (w[1:-3, 2:-2] + w[3:-1, 2:-2])
            + cs[2] * (w[:-4, 2:-2] + w[4:, 2:-2])
            + cs[4] * (w[2:-2, 1:-3] + w[2:-2, 3:-1])
            + cs[5] * (w[2:-2, :-4] + w[2:-2, 4:])
        )
        up, u = u, inv_a * (c * u - b * up + lap + src[n])
    return np.stack(data)
