"""The CUDA source of the image kernels: im2col, col2im, the pools and batch norm's element-wise
parts, on channels-last ``(N, H, W, C)`` buffers.

Each kernel computes one output element per work item of a grid-stride loop, as chainer's
im2col does: the backward ones (col2im, the pools' backward) *gather* what each input position
receives rather than scatter into it, so there are no atomics and the sums run in a fixed
order, the same on every run. The matrix products around them are cuBLAS's and the batch
statistics CuPy's reductions (:class:`~anynet.fast.cuda.ops.CudaOps`). Each kernel is the twin
of a :class:`~anynet.fast.numpy_ops.NumpyOps` method, checked against the generic engine on the
host build (``tests/test_fast_conv.py``).

Shapes travel as one ``i64`` array ``dims``: ``N, H, W, C, Ho, Wo, kH, kW, sH, sW, top, left``.
"""

from __future__ import annotations

__all__ = ["IMAGE_KERNELS", "IMAGE_SIGNATURES"]

IMAGE_KERNELS = r"""
// The shapes every image kernel takes, in this order, as one int64 array.
#define AN_DIMS                                                                          \
    const long long N = dims[0], H = dims[1], W = dims[2], C = dims[3], Ho = dims[4],    \
                    Wo = dims[5], kh = dims[6], kw = dims[7], sh = dims[8], sw = dims[9], \
                    top = dims[10], left = dims[11];                                     \
    (void)N; (void)top; (void)left

// cols[n, y, x, i, j, c] = X[n, y*sh + i - top, x*sw + j - left, c], zero outside the image.
template <typename T>
__global__ void im2col(const T* X, T* cols, const long long* dims) {
    AN_DIMS;
    ANYNET_FOR(e, N * Ho * Wo * kh * kw * C) {
        long long q = e;
        const long long c = q % C; q /= C;
        const long long j = q % kw; q /= kw;
        const long long i = q % kh; q /= kh;
        const long long x = q % Wo; q /= Wo;
        const long long y = q % Ho;
        const long long n = q / Ho;
        const long long r = y * sh + i - top, s = x * sw + j - left;
        cols[e] = (r >= 0 && r < H && s >= 0 && s < W) ? X[((n * H + r) * W + s) * C + c] : T(0);
    }
}

// dX[n, r, s, c] = the sum of dcols over every window position that read X[n, r, s, c].
template <typename T>
__global__ void col2im(const T* dcols, T* dX, const long long* dims) {
    AN_DIMS;
    ANYNET_FOR(e, N * H * W * C) {
        long long q = e;
        const long long c = q % C; q /= C;
        const long long s = q % W; q /= W;
        const long long r = q % H;
        const long long n = q / H;
        T total = T(0);
        for (long long i = 0; i < kh; ++i) {
            const long long yy = r + top - i;
            if (yy < 0 || yy % sh != 0 || yy / sh >= Ho) continue;
            for (long long j = 0; j < kw; ++j) {
                const long long xx = s + left - j;
                if (xx < 0 || xx % sw != 0 || xx / sw >= Wo) continue;
                const long long row = (n * Ho + yy / sh) * Wo + xx / sw;
                total += dcols[((row * kh + i) * kw + j) * C + c];
            }
        }
        dX[e] = total;
    }
}

// Y = each window's maximum; arg = its offset i*kw + j, the first of equal maxima.
template <typename T>
__global__ void max_pool(const T* X, T* Y, unsigned char* arg, const long long* dims) {
    AN_DIMS;
    ANYNET_FOR(e, N * Ho * Wo * C) {
        long long q = e;
        const long long c = q % C; q /= C;
        const long long x = q % Wo; q /= Wo;
        const long long y = q % Ho;
        const long long n = q / Ho;
        T best = X[((n * H + y * sh) * W + x * sw) * C + c];
        int won = 0;
        for (long long i = 0; i < kh; ++i) {
            for (long long j = 0; j < kw; ++j) {
                const T v = X[((n * H + y * sh + i) * W + x * sw + j) * C + c];
                if (v > best) { best = v; won = (int)(i * kw + j); }
            }
        }
        Y[e] = best;
        arg[e] = (unsigned char)won;
    }
}

// The windows holding input position (r, s): rows y with y*sh <= r < y*sh + kh, likewise x.
#define AN_WINDOWS_OF(r, s)                                                     \
    const long long y0 = (r) >= kh ? ((r) - kh) / sh + 1 : 0;                   \
    const long long y1 = (r) / sh < Ho - 1 ? (r) / sh : Ho - 1;                 \
    const long long x0 = (s) >= kw ? ((s) - kw) / sw + 1 : 0;                   \
    const long long x1 = (s) / sw < Wo - 1 ? (s) / sw : Wo - 1

// dX[n, r, s, c] = the sum of dY over the windows whose maximum was at (r, s).
template <typename T>
__global__ void max_pool_backward(const T* dY, const unsigned char* arg, T* dX,
                                  const long long* dims) {
    AN_DIMS;
    ANYNET_FOR(e, N * H * W * C) {
        long long q = e;
        const long long c = q % C; q /= C;
        const long long s = q % W; q /= W;
        const long long r = q % H;
        const long long n = q / H;
        AN_WINDOWS_OF(r, s);
        T total = T(0);
        for (long long y = y0; y <= y1; ++y) {
            for (long long x = x0; x <= x1; ++x) {
                const long long o = ((n * Ho + y) * Wo + x) * C + c;
                if (arg[o] == (r - y * sh) * kw + (s - x * sw)) total += dY[o];
            }
        }
        dX[e] = total;
    }
}

// Y = each window's mean.
template <typename T>
__global__ void avg_pool(const T* X, T* Y, const long long* dims) {
    AN_DIMS;
    ANYNET_FOR(e, N * Ho * Wo * C) {
        long long q = e;
        const long long c = q % C; q /= C;
        const long long x = q % Wo; q /= Wo;
        const long long y = q % Ho;
        const long long n = q / Ho;
        T total = T(0);
        for (long long i = 0; i < kh; ++i)
            for (long long j = 0; j < kw; ++j)
                total += X[((n * H + y * sh + i) * W + x * sw + j) * C + c];
        Y[e] = total * (T(1) / T(kh * kw));
    }
}

// dX[n, r, s, c] = the sum of dY / (kh kw) over the windows holding (r, s).
template <typename T>
__global__ void avg_pool_backward(const T* dY, T* dX, const long long* dims) {
    AN_DIMS;
    ANYNET_FOR(e, N * H * W * C) {
        long long q = e;
        const long long c = q % C; q /= C;
        const long long s = q % W; q /= W;
        const long long r = q % H;
        const long long n = q / H;
        AN_WINDOWS_OF(r, s);
        T total = T(0);
        for (long long y = y0; y <= y1; ++y)
            for (long long x = x0; x <= x1; ++x)
                total += dY[((n * Ho + y) * Wo + x) * C + c] * (T(1) / T(kh * kw));
        dX[e] = total;
    }
}

// Batch norm after its statistics (stats: mean, variance, 1 / sqrt(var + eps), by column):
// Xhat = (Z - mean) * inv_std, Y = Xhat * gamma + beta, A = activation(Y). A may be Y.
template <typename T>
__global__ void batch_norm_apply(const T* Z, const T* stats, const T* gamma, const T* beta,
                                 T* Xhat, T* Y, T* A, long long rows, long long cols, int kind,
                                 T slope) {
    ANYNET_FOR(e, rows * cols) {
        const long long c = e % cols;
        const T h = (Z[e] - stats[c]) * stats[2 * cols + c];
        Xhat[e] = h;
        const T y = h * gamma[c] + beta[c];
        Y[e] = y;
        A[e] = an_activate(y, kind, slope);
    }
}

// dX = gamma inv_std (dY - (Xhat dgamma + dbeta) / rows), as the generic layer groups it.
template <typename T>
__global__ void batch_norm_dx(const T* dY, const T* Xhat, const T* gamma, const T* stats,
                              const T* dgamma, const T* dbeta, T* dX, long long rows,
                              long long cols) {
    ANYNET_FOR(e, rows * cols) {
        const long long c = e % cols;
        const T mix = Xhat[e] * dgamma[c] + dbeta[c];
        dX[e] = (gamma[c] * stats[2 * cols + c]) * (dY[e] - mix / T(rows));
    }
}
"""

#: Each image kernel's parameters, as :data:`anynet.fast.cuda.source.SIGNATURES` gives them.
IMAGE_SIGNATURES: dict[str, tuple[str, ...]] = {
    "im2col": ("T*", "T*", "i64*"),
    "col2im": ("T*", "T*", "i64*"),
    "max_pool": ("T*", "T*", "u8*", "i64*"),
    "max_pool_backward": ("T*", "u8*", "T*", "i64*"),
    "avg_pool": ("T*", "T*", "i64*"),
    "avg_pool_backward": ("T*", "T*", "i64*"),
    "batch_norm_apply": ("T*", "T*", "T*", "T*", "T*", "T*", "T*", "i64", "i64", "i32", "T"),
    "batch_norm_dx": ("T*", "T*", "T*", "T*", "T*", "T*", "T*", "i64", "i64"),
}
