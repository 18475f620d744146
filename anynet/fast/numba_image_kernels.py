"""Numba kernels for images, channels last ``(N, H, W, C)``: the windows of a convolution and a
pool, and batch normalization with its activation, each one compiled pass where NumPy takes one
pass per kernel offset (im2col with padding: a copy into a padded buffer, then one strided copy;
col2im and the pools: ``kH * kW`` passes over the batch each).

:func:`compile_kernels` is called by :func:`anynet.fast.numba_kernels.load`, with its ``jit``;
:class:`~anynet.fast.numba_ops.NumbaOps` calls the kernels, each the twin of a
:class:`~anynet.fast.numpy_ops.NumpyOps` method (``tests/test_fast_conv.py`` checks them equal).
The innermost loop is always the channels, contiguous in every buffer, so it vectorizes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compile_kernels"]


def compile_kernels(jit: Any) -> dict[str, Any]:
    """The kernels, compiled with ``jit`` (numba's ``njit`` with the family's options)."""
    import numpy as np

    @jit
    def im2col(X, top, left, kh, kw, sh, sw, cols):
        """cols[n, y, x, i, j, :] = X[n, y*sh + i - top, x*sw + j - left, :], zero outside."""
        N, H, W, C = X.shape
        Ho, Wo = cols.shape[1], cols.shape[2]
        for n in range(N):
            for y in range(Ho):
                for x in range(Wo):
                    for i in range(kh):
                        r = y * sh + i - top
                        for j in range(kw):
                            s = x * sw + j - left
                            if 0 <= r < H and 0 <= s < W:
                                for c in range(C):
                                    cols[n, y, x, i, j, c] = X[n, r, s, c]
                            else:
                                for c in range(C):
                                    cols[n, y, x, i, j, c] = 0

    @jit
    def col2im(dcols, top, left, sh, sw, dX):
        """dX = 0, then dX[n, y*sh + i - top, x*sw + j - left, :] += dcols[n, y, x, i, j, :]
        inside the image (the padding's share is dropped)."""
        N, H, W, C = dX.shape
        Ho, Wo, kh, kw = dcols.shape[1], dcols.shape[2], dcols.shape[3], dcols.shape[4]
        dX[...] = 0
        for n in range(N):
            for y in range(Ho):
                for x in range(Wo):
                    for i in range(kh):
                        r = y * sh + i - top
                        if r < 0 or r >= H:
                            continue
                        for j in range(kw):
                            s = x * sw + j - left
                            if s < 0 or s >= W:
                                continue
                            for c in range(C):
                                dX[n, r, s, c] += dcols[n, y, x, i, j, c]

    @jit
    def max_pool(X, kh, kw, sh, sw, Y, arg):
        """Y = each window's maximum, arg = its offset (the first of equal maxima). Selects, not
        branches, so the loop over the channels vectorizes."""
        N, Ho, Wo, C = Y.shape
        for n in range(N):
            for y in range(Ho):
                for x in range(Wo):
                    for c in range(C):
                        Y[n, y, x, c] = X[n, y * sh, x * sw, c]
                        arg[n, y, x, c] = 0
                    for i in range(kh):
                        for j in range(kw):
                            k = i * kw + j
                            if k == 0:
                                continue
                            r, s = y * sh + i, x * sw + j
                            for c in range(C):
                                v, best = X[n, r, s, c], Y[n, y, x, c]
                                Y[n, y, x, c] = v if v > best else best
                                arg[n, y, x, c] = k if v > best else arg[n, y, x, c]

    @jit
    def max_pool_2x2(X, Y, arg):
        """max_pool for 2x2 windows, stride 2, the usual one: the window's four rows named, so
        the loop over the channels vectorizes (measured: 20x the general kernel's speed)."""
        N, Ho, Wo, C = Y.shape
        for n in range(N):
            for y in range(Ho):
                for x in range(Wo):
                    a, b = X[n, 2 * y, 2 * x], X[n, 2 * y, 2 * x + 1]
                    c_, d = X[n, 2 * y + 1, 2 * x], X[n, 2 * y + 1, 2 * x + 1]
                    out, won = Y[n, y, x], arg[n, y, x]
                    for c in range(C):
                        best, k = a[c], 0
                        if b[c] > best:
                            best, k = b[c], 1
                        if c_[c] > best:
                            best, k = c_[c], 2
                        if d[c] > best:
                            best, k = d[c], 3
                        out[c] = best
                        won[c] = k

    @jit
    def max_pool_backward(dY, arg, kh, kw, sh, sw, zero, dX):
        """dX = each dY at its window's arg position, zero elsewhere. Windows that tile the
        image (stride = kernel) write every position they cover, so only the rows and columns
        no window covers are zeroed first; overlapping ones zero dX and add."""
        N, Ho, Wo, C = dY.shape
        H, W = dX.shape[1], dX.shape[2]
        if sh == kh and sw == kw:
            for n in range(N):
                for r in range(Ho * kh, H):
                    dX[n, r, :, :] = 0
                for r in range(Ho * kh):
                    for s in range(Wo * kw, W):
                        dX[n, r, s, :] = 0
                for y in range(Ho):
                    for x in range(Wo):
                        for i in range(kh):
                            for j in range(kw):
                                k = i * kw + j
                                r, s = y * sh + i, x * sw + j
                                for c in range(C):
                                    g = dY[n, y, x, c]
                                    dX[n, r, s, c] = g if arg[n, y, x, c] == k else zero
            return
        dX[...] = 0
        for n in range(N):
            for y in range(Ho):
                for x in range(Wo):
                    for c in range(C):
                        k = arg[n, y, x, c]
                        dX[n, y * sh + k // kw, x * sw + k % kw, c] += dY[n, y, x, c]

    @jit
    def batch_norm(Z, gamma, beta, eps, relu, Xhat, A, stats):
        """stats = (mean, biased variance, 1 / sqrt(var + eps)) of Z's columns, accumulated in
        float64; Xhat = (Z - mean) * inv_std; A = Xhat * gamma + beta, then max(A, 0) if
        ``relu``. The same operations, in the same order, as the generic layer's."""
        M, C = Z.shape
        total = np.zeros(C, np.float64)
        for r in range(M):
            for c in range(C):
                total[c] += Z[r, c]
        for c in range(C):
            stats[0, c] = total[c] / M
            total[c] = 0.0
        for r in range(M):
            for c in range(C):
                d = Z[r, c] - stats[0, c]
                total[c] += d * d
        for c in range(C):
            stats[1, c] = total[c] / M
            stats[2, c] = 1 / np.sqrt(stats[1, c] + eps)
        for r in range(M):
            for c in range(C):
                h = (Z[r, c] - stats[0, c]) * stats[2, c]
                Xhat[r, c] = h
                a = h * gamma[c] + beta[c]
                A[r, c] = (a if a > 0 else 0) if relu else a

    @jit
    def batch_norm_backward(dA, A, relu, Xhat, gamma, stats, dgamma, dbeta, zero, dX, want_dX):
        """dY = dA where A > 0 (if ``relu``; dA is overwritten), dbeta and dgamma its column
        sums (float64), then dX = gamma inv_std (dY - (Xhat dgamma + dbeta) / M)."""
        M, C = dA.shape
        sum_dy = np.zeros(C, np.float64)
        sum_dyx = np.zeros(C, np.float64)
        for r in range(M):
            for c in range(C):
                d = dA[r, c]
                if relu:
                    d = d if A[r, c] > 0 else zero
                    dA[r, c] = d
                sum_dy[c] += d
                sum_dyx[c] += d * Xhat[r, c]
        for c in range(C):
            dbeta[c] = sum_dy[c]
            dgamma[c] = sum_dyx[c]
        if not want_dX:
            return
        for r in range(M):
            for c in range(C):
                mix = Xhat[r, c] * dgamma[c] + dbeta[c]
                dX[r, c] = (gamma[c] * stats[2, c]) * (dA[r, c] - mix / M)

    return {
        "im2col": im2col,
        "col2im": col2im,
        "max_pool": max_pool,
        "max_pool_2x2": max_pool_2x2,
        "max_pool_backward": max_pool_backward,
        "batch_norm": batch_norm,
        "batch_norm_backward": batch_norm_backward,
    }
