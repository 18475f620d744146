"""CUDA kernels for the GPU fast path: each element-wise chain of an MLP step as one launch.

On a GPU a step of this size is bound by kernel launches, not arithmetic (one CuPy launch costs
11-29 us of host time; the whole step's FLOPs take ~10 us on an H100), so the aim is the fewest
launches: bias + activation in one, activation backward (with dropout's mask) in one, softmax
cross-entropy's loss and gradient in one, and the whole optimizer update over the flat
parameter buffer in one. Each kernel is the twin of a function in
:mod:`anynet.fast.numpy_mlp` (and so of the generic engine), with the same arithmetic.

:data:`SOURCE` is plain CUDA C++ with no headers, for NVRTC. Its kernels are written as
grid-stride loops, so that the same text, compiled as host C++ with one thread (a ``blockIdx``
of 0 and a ``gridDim`` of 1: the loop then visits every element), runs on the CPU: the test
suite builds it that way with the system's C++ compiler and checks every kernel, and the whole
GPU step, against the NumPy twins on machines without a GPU (``tests/test_cuda_kernels.py``).

:class:`Kernels` is the Python face of the kernels: one method per kernel, which checks shapes
and dtypes and passes the arguments in the order :data:`SIGNATURES` gives;
:class:`CupyKernels` launches them with CuPy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ACTIVATIONS", "NAME_EXPRESSIONS", "SIGNATURES", "SOURCE", "CupyKernels", "Kernels"]

SOURCE = r"""
// A grid-stride loop: on the GPU each thread takes every (blocks * threads)-th element; built
// for the host with one "thread", the same loop visits them all.
#define ANYNET_FOR(i, n)                                                          \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// The math functions by their C names, which NVRTC and a host compiler both have.
__device__ inline float an_exp(float x) { return expf(x); }
__device__ inline double an_exp(double x) { return exp(x); }
__device__ inline float an_log(float x) { return logf(x); }
__device__ inline double an_log(double x) { return log(x); }
__device__ inline float an_log1p(float x) { return log1pf(x); }
__device__ inline double an_log1p(double x) { return log1p(x); }
__device__ inline float an_sqrt(float x) { return sqrtf(x); }
__device__ inline double an_sqrt(double x) { return sqrt(x); }
__device__ inline float an_tanh(float x) { return tanhf(x); }
__device__ inline double an_tanh(double x) { return tanh(x); }
__device__ inline float an_abs(float x) { return fabsf(x); }
__device__ inline double an_abs(double x) { return fabs(x); }

// Activation codes (ACTIVATIONS in anynet/fast/cuda.py).
#define AN_IDENTITY 0
#define AN_RELU 1
#define AN_SIGMOID 2
#define AN_TANH 3
#define AN_LEAKY_RELU 4

template <typename T>
__device__ inline T an_sigmoid(T z) {
    T e = an_exp(-an_abs(z));  // exp only sees -|z|: no overflow
    T s = T(1) / (T(1) + e);   // sigmoid(|z|)
    return z >= T(0) ? s : e * s;
}

template <typename T>
__device__ inline T an_activate(T z, int kind, T slope) {
    switch (kind) {
        case AN_RELU: return z > T(0) ? z : T(0);  // NaN -> 0, as the generic relu
        case AN_SIGMOID: return an_sigmoid(z);
        case AN_TANH: return an_tanh(z);
        case AN_LEAKY_RELU: { T s = z * slope; return z > s ? z : s; }
        default: return z;
    }
}

// Z = activation(Z + b), b broadcast along the rows.
template <typename T>
__global__ void bias_act(T* Z, const T* b, long long rows, long long cols, int kind, T slope) {
    ANYNET_FOR(i, rows * cols) { Z[i] = an_activate(Z[i] + b[i % cols], kind, slope); }
}

// Dropout after the activation: keep = u >= p; out = Z * keep * scale (scale = 1 / (1 - p)).
template <typename T>
__global__ void dropout(const T* Z, const T* u, T* out, bool* keep, long long n, T p, T scale) {
    ANYNET_FOR(i, n) {
        bool k = u[i] >= p;
        keep[i] = k;
        out[i] = Z[i] * T(k) * scale;
    }
}

// dA becomes dZ: dropout's mask first (if use_keep), then the activation's derivative, read
// from its output A.
template <typename T>
__global__ void act_backward(T* dA, const T* A, const bool* keep, long long n, int use_keep,
                             T keep_scale, int kind, T slope) {
    ANYNET_FOR(i, n) {
        T d = dA[i];
        if (use_keep) d = d * T(keep[i]) * keep_scale;
        T a = A[i];
        switch (kind) {
            case AN_RELU: d = a > T(0) ? d : T(0); break;
            case AN_SIGMOID: d = d * ((T(1) - a) * a); break;
            case AN_TANH: d = d * (T(1) - a * a); break;
            case AN_LEAKY_RELU: d = a <= T(0) ? d * slope : d; break;
            default: break;
        }
        dA[i] = d;
    }
}

// Softmax cross-entropy from logits, one row per thread: Z becomes (softmax - one_hot) * scale
// and rowloss[r] = (logsumexp(Z[r]) - Z[r, y[r]]) * scale.
template <typename T>
__global__ void softmax_cross_entropy(T* Z, const long long* y, T* rowloss, long long rows,
                                      long long cols, T scale) {
    ANYNET_FOR(r, rows) {
        T* z = Z + r * cols;
        T top = z[0];
        for (long long c = 1; c < cols; ++c) top = z[c] > top ? z[c] : top;
        long long label = y[r];
        T picked = z[label] - top;
        T norm = T(0);
        for (long long c = 0; c < cols; ++c) {
            T e = an_exp(z[c] - top);
            z[c] = e;
            norm += e;
        }
        rowloss[r] = (an_log(norm) - picked) * scale;
        for (long long c = 0; c < cols; ++c) z[c] = z[c] / norm * scale;
        z[label] -= scale;
    }
}

// Per-class sigmoid binary cross-entropy from logits (the from-scratch seed's loss), one row
// per thread: Z becomes (sigmoid(Z) - one_hot) * scale, rowloss[r] the row's loss * scale.
template <typename T>
__global__ void sigmoid_cross_entropy(T* Z, const long long* y, T* rowloss, long long rows,
                                      long long cols, T scale) {
    ANYNET_FOR(r, rows) {
        T* z = Z + r * cols;
        long long label = y[r];
        T total = T(0);
        for (long long c = 0; c < cols; ++c) {
            T zc = z[c];
            T t = c == label ? T(1) : T(0);
            total += (zc > T(0) ? zc : T(0)) + an_log1p(an_exp(-an_abs(zc))) - zc * t;
            z[c] = (an_sigmoid(zc) - t) * scale;
        }
        rowloss[r] = total * scale;
    }
}

// Adam over the flat buffers (see adam_update_ in numpy_mlp.py for the rearrangement):
// weight_decay > 0 is Adam's L2 (into the gradient); decay < 1 is AdamW's (1 - lr * wd).
// Moments below tiny, the smallest normal number, become zero; NaN stays NaN.
template <typename T>
__global__ void adam(T* theta, const T* g, T* m, T* v, long long n, T one_minus_beta1,
                     T one_minus_beta2, T step, T eps, T tiny, T weight_decay, T decay) {
    ANYNET_FOR(i, n) {
        T th = theta[i];
        T gi = g[i];
        if (weight_decay != T(0)) gi = gi + th * weight_decay;
        T mi = m[i] + one_minus_beta1 * (gi - m[i]);
        T vi = v[i] + one_minus_beta2 * (gi * gi - v[i]);
        if (an_abs(mi) < tiny) mi = T(0);
        if (vi < tiny) vi = T(0);
        m[i] = mi;
        v[i] = vi;
        theta[i] = th * decay - step * (mi / (an_sqrt(vi) + eps));
    }
}

// SGD with optional momentum (Nesterov or not) and L2 weight decay into the gradient.
template <typename T>
__global__ void sgd(T* theta, const T* g, T* trace, long long n, T learning_rate, T momentum,
                    int use_trace, int nesterov, T weight_decay, T tiny) {
    ANYNET_FOR(i, n) {
        T gi = g[i];
        if (weight_decay != T(0)) gi = gi + theta[i] * weight_decay;
        if (use_trace) {
            T t = trace[i] * momentum + gi;
            if (an_abs(t) < tiny) t = T(0);
            trace[i] = t;
            gi = nesterov ? gi + t * momentum : t;
        }
        theta[i] = theta[i] - gi * learning_rate;
    }
}

// The loader's batch: out[r, c] = table[X[rows[r], c]] for uint8 pixels, where table is the
// loader's own cast-and-normalize of the 256 values: one pass for gather, cast and scale.
template <typename T>
__global__ void gather_lookup(const unsigned char* X, const long long* rows, const T* table,
                              T* out, long long n_rows, long long n_features) {
    ANYNET_FOR(i, n_rows * n_features) {
        long long r = i / n_features;
        out[i] = table[X[rows[r] * n_features + (i - r * n_features)]];
    }
}

// The same for standardized inputs: out[r, c] = (T(X[rows[r], c]) - mean[c]) * inv_std[c].
template <typename T>
__global__ void gather_standardize(const unsigned char* X, const long long* rows, const T* mean,
                                   const T* inv_std, T* out, long long n_rows,
                                   long long n_features) {
    ANYNET_FOR(i, n_rows * n_features) {
        long long r = i / n_features;
        long long c = i - r * n_features;
        out[i] = (T(X[rows[r] * n_features + c]) - mean[c]) * inv_std[c];
    }
}
"""

#: Each kernel's parameters, in order: ``T*`` an array of the step's float type, ``i64*`` of
#: int64, ``u8*`` of uint8, ``bool*`` of booleans; ``T``, ``i64``, ``i32`` scalars.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "bias_act": ("T*", "T*", "i64", "i64", "i32", "T"),
    "dropout": ("T*", "T*", "T*", "bool*", "i64", "T", "T"),
    "act_backward": ("T*", "T*", "bool*", "i64", "i32", "T", "i32", "T"),
    "softmax_cross_entropy": ("T*", "i64*", "T*", "i64", "i64", "T"),
    "sigmoid_cross_entropy": ("T*", "i64*", "T*", "i64", "i64", "T"),
    "adam": ("T*", "T*", "T*", "T*", "i64", "T", "T", "T", "T", "T", "T", "T"),
    "sgd": ("T*", "T*", "T*", "i64", "T", "T", "i32", "i32", "T", "T"),
    "gather_lookup": ("u8*", "i64*", "T*", "T*", "i64", "i64"),
    "gather_standardize": ("u8*", "i64*", "T*", "T*", "T*", "i64", "i64"),
}

#: The C++ name of each float type the kernels are built for.
CTYPES = {"float32": "float", "float64": "double"}

#: NVRTC's options for :data:`SOURCE`, and the instantiations CuPy asks it for.
NVRTC_OPTIONS = ("--std=c++14",)
NAME_EXPRESSIONS = [f"{k}<{c}>" for k in SIGNATURES for c in CTYPES.values()]

#: Activation layer name -> the kernels' activation code (the AN_* macros of SOURCE).
ACTIVATIONS = {None: 0, "ReLU": 1, "Sigmoid": 2, "Tanh": 3, "LeakyReLU": 4}


class Kernels:
    """The kernels of :data:`SOURCE` as methods on arrays; a subclass launches them.

    Arrays must be C-contiguous; they are modified in place as each method says. A subclass
    implements ``_launch(name, dtype, n, args)``: run kernel ``name`` for float type ``dtype``
    over ``n`` work items with ``args`` (arrays and Python numbers in :data:`SIGNATURES`'
    order).
    """

    def _launch(self, name: str, dtype: Any, n: int, args: tuple) -> None:
        raise NotImplementedError

    def _run(self, name: str, like: Any, n: int, *args: Any) -> None:
        dtype = str(like.dtype)
        if dtype not in CTYPES:
            raise TypeError(
                f"anynet.fast.cuda: kernel {name} takes float32 or float64 arrays, got {dtype}"
            )
        if n > 0:
            self._launch(name, dtype, n, args)

    def bias_act(self, Z: Any, b: Any, kind: int, slope: float = 0.0) -> None:
        """``Z = activation(Z + b)`` in place (``kind``: an :data:`ACTIVATIONS` code)."""
        rows, cols = Z.shape
        self._run("bias_act", Z, Z.size, Z, b, rows, cols, kind, slope)

    def dropout(self, Z: Any, u: Any, p: float, out: Any, keep: Any) -> None:
        """``keep = u >= p``, ``out = Z * keep / (1 - p)``."""
        self._run("dropout", Z, Z.size, Z, u, out, keep, Z.size, p, 1.0 / (1.0 - p))

    def act_backward(
        self, dA: Any, A: Any, kind: int, slope: float = 0.0, keep: Any = None, p: float = 0.0
    ) -> None:
        """``dA`` becomes ``dZ``: through dropout's ``keep`` (if given) and the activation,
        whose output is ``A``."""
        use_keep = keep is not None
        self._run(
            "act_backward",
            dA,
            dA.size,
            dA,
            A,
            keep if use_keep else dA,  # a stand-in pointer, never read without dropout
            dA.size,
            int(use_keep),
            1.0 / (1.0 - p),
            kind,
            slope,
        )

    def softmax_cross_entropy(self, Z: Any, y: Any, rowloss: Any, scale: float) -> None:
        """``Z`` (logits) becomes ``(softmax(Z) - one_hot(y)) * scale``; ``rowloss`` each row's
        loss times ``scale`` (``y``: int64 labels)."""
        rows, cols = Z.shape
        self._run("softmax_cross_entropy", Z, rows, Z, y, rowloss, rows, cols, scale)

    def sigmoid_cross_entropy(self, Z: Any, y: Any, rowloss: Any, scale: float) -> None:
        """``Z`` becomes ``(sigmoid(Z) - one_hot(y)) * scale``; ``rowloss`` as above."""
        rows, cols = Z.shape
        self._run("sigmoid_cross_entropy", Z, rows, Z, y, rowloss, rows, cols, scale)

    def adam(
        self,
        theta: Any,
        g: Any,
        m: Any,
        v: Any,
        one_minus_beta1: float,
        one_minus_beta2: float,
        step: float,
        eps: float,
        *,
        tiny: float,
        weight_decay: float = 0.0,
        decay: float = 1.0,
    ) -> None:
        """One Adam update of ``theta`` and its moments ``m``, ``v`` (see ``SOURCE``); the
        four scalars as :func:`~anynet.fast.numpy_mlp.adam_scalars` gives them."""
        n = theta.size
        args = (one_minus_beta1, one_minus_beta2, step, eps, tiny, weight_decay, decay)
        self._run("adam", theta, n, theta, g, m, v, n, *args)

    def sgd(
        self,
        theta: Any,
        g: Any,
        trace: Any,
        *,
        learning_rate: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
        tiny: float,
    ) -> None:
        """One SGD update of ``theta`` (``trace``: the momentum buffer, or ``None``)."""
        n = theta.size
        use = trace is not None
        t = trace if use else theta  # never read without momentum
        args = (learning_rate, momentum, int(use), int(nesterov), weight_decay, tiny)
        self._run("sgd", theta, n, theta, g, t, n, *args)

    def gather_lookup(self, X: Any, rows: Any, table: Any, out: Any) -> None:
        """``out = table[X[rows]]`` (``X``: 2-D uint8, ``rows``: int64)."""
        n_rows, n_features = out.shape
        self._run("gather_lookup", out, out.size, X, rows, table, out, n_rows, n_features)

    def gather_standardize(self, X: Any, rows: Any, mean: Any, inv_std: Any, out: Any) -> None:
        """``out = (X[rows] - mean) * inv_std`` in ``out``'s dtype (``X``: 2-D uint8)."""
        n_rows, n_features = out.shape
        args = (X, rows, mean, inv_std, out, n_rows, n_features)
        self._run("gather_standardize", out, out.size, *args)


class CupyKernels(Kernels):
    """:class:`Kernels` launched with CuPy on ``device``, compiled once by NVRTC."""

    THREADS = 256
    MAX_BLOCKS = 4096  # enough to fill a GPU; the grid-stride loop takes the rest

    def __init__(self, cupy: Any, device: Any) -> None:
        with device:
            module = cupy.RawModule(
                code=SOURCE, options=NVRTC_OPTIONS, name_expressions=NAME_EXPRESSIONS
            )
            self._prepare({n: module.get_function(n) for n in NAME_EXPRESSIONS})

    def _prepare(self, functions: dict[str, Any]) -> None:
        """Per kernel and float type: its compiled function, and the NumPy type each scalar
        parameter must be passed as (a kernel reads its arguments as raw bytes), worked out
        once rather than at every launch."""
        import numpy as np

        self._calls = {}
        for name, sig in SIGNATURES.items():
            for dtype, ctype in CTYPES.items():
                scalar = {"T": np.dtype(dtype).type, "i64": np.int64, "i32": np.int32}
                types = tuple(scalar.get(kind) for kind in sig)
                self._calls[name, dtype] = (functions[f"{name}<{ctype}>"], types)

    def _launch(self, name: str, dtype: str, n: int, args: tuple) -> None:
        function, types = self._calls[name, dtype]
        passed = tuple(a if t is None else t(a) for t, a in zip(types, args, strict=True))
        blocks = min((n + self.THREADS - 1) // self.THREADS, self.MAX_BLOCKS)
        function((blocks,), (self.THREADS,), passed)
