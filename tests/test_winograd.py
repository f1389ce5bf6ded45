"""The Winograd transforms (pdc/codegen/kernels/winograd.py) in float64 NumPy: each tile's
A^T [(G g G^T) * (B^T d B)] A equals the direct 3x3 correlation, for F(2x2) and F(4x4); the compiled
paths themselves are property-tested in tests/kernels/test_conv_kernels.py."""
from __future__ import annotations

import numpy as np
import pytest

from pdc.codegen.kernels import winograd


@pytest.mark.parametrize("m", [2, 4])
def test_transforms_compute_the_correlation_of_a_tile(m):
    rng = np.random.default_rng(m)
    a = winograd.tile(m)
    at, _, bt = (np.array(x, np.float64) for x in winograd.transforms(m))
    d = rng.standard_normal((5, a, a))  # 5 input channels
    w = rng.standard_normal((7, 5, 3, 3))  # 7 output channels
    u = winograd.transform_weights(w, m).astype(np.float64).reshape(a, a, 7, 5)
    v = np.einsum("xr,crs,ys->xyc", bt, d, bt)
    y = np.einsum("ix,xykc,xyc,jy->kij", at, u, v, at)
    want = np.array([[[np.sum(d[:, i:i + 3, j:j + 3] * w[k]) for j in range(m)] for i in range(m)]
                     for k in range(7)])
    # U is stored in float32: the weights' rounding, relative to the sums' size
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-5 * np.abs(want).max())

