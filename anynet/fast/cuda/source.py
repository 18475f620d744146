"""The CUDA source of the fused step's kernels: each element-wise chain of a step as one launch.

On a GPU a step of this size is bound by kernel launches, not arithmetic (one CuPy launch costs
11-29 us of host time; the whole step's FLOPs take ~10 us on an H100), so the aim is the fewest
launches: bias + activation in one, activation backward (with dropout's mask) in one, softmax
cross-entropy's loss and gradient in one, and the whole optimizer update over the flat
parameter buffer in one. Each kernel is the twin of a :class:`~anynet.fast.numpy_ops.NumpyOps`
method (and so of the generic engine), with the same arithmetic.

:data:`SOURCE` is plain CUDA C++ with no headers, for NVRTC. The activations' codes and math
are generated from :data:`anynet.fast.activations.TABLE`, so an activation is written once for
every kernel family. Kernels are grid-stride loops, so that the same text, compiled as host C++
with one thread (a ``blockIdx`` of 0 and a ``gridDim`` of 1: the loop then visits every
element), runs on the CPU: the test suite builds it that way (:mod:`anynet.fast.cuda.host`) and
checks every kernel, and whole training runs, against the NumPy twins and the generic engine.
"""

from __future__ import annotations

import ast

from anynet.fast.activations import TABLE, Activation, parse
from anynet.fast.cuda.image_source import IMAGE_KERNELS, IMAGE_SIGNATURES

__all__ = ["CTYPES", "NAME_EXPRESSIONS", "NVRTC_OPTIONS", "SIGNATURES", "SOURCE"]

_C_OPERATORS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}


def c_expression(expression: str, variables: tuple[str, ...]) -> str:
    """An expression of :mod:`anynet.fast.activations` as C++ over the kernels' float type
    ``T``: numbers become ``T(...)`` (a bare ``0.5`` would be a double and promote a float
    kernel), functions their ``an_`` helpers."""

    def c(node: ast.expr) -> str:
        if isinstance(node, ast.Constant):
            return f"T({float(node.value)!r})"
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.UnaryOp):
            return f"(-{c(node.operand)})"
        if isinstance(node, ast.BinOp):
            return f"({c(node.left)} {_C_OPERATORS[type(node.op)]} {c(node.right)})"
        if isinstance(node, ast.Compare):
            op = _C_OPERATORS[type(node.ops[0])]
            return f"({c(node.left)} {op} {c(node.comparators[0])})"
        assert isinstance(node, ast.Call)  # parse() admits nothing else
        return f"an_{node.func.id}({', '.join(c(a) for a in node.args)})"

    return c(parse(expression, variables))


def _activation_source(table: tuple[Activation, ...]) -> str:
    """The activations' codes and the two functions that switch on them."""
    defines = "\n".join(f"#define {row.name} {row.code}" for row in table)
    forward = "\n".join(
        f"        case {row.name}: return {c_expression(row.forward, ('z', 'slope'))};"
        for row in table
    )
    backward = "\n".join(
        f"        case {row.name}: {{ const T {row.saved} = saved; "
        f"return {c_expression(row.backward, ('d', row.saved, 'slope'))}; }}"
        for row in table
    )
    return f"""
// Activation codes: anynet.fast.activations.TABLE, in order.
{defines}

// activation(z), by code.
template <typename T>
__device__ inline T an_activate(T z, int kind, T slope) {{
    switch (kind) {{
{forward}
        default: return z;
    }}
}}

// The gradient at the activation's input, from the gradient d at its output and the array the
// activation saved (its output a, or its input z).
template <typename T>
__device__ inline T an_activate_grad(T d, T saved, int kind, T slope) {{
    switch (kind) {{
{backward}
        default: return d;
    }}
}}
"""


_PRELUDE = r"""
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

template <typename T>
__device__ inline T an_where(bool c, T x, T y) { return c ? x : y; }

// The logistic function as anynet.nn.functional.sigmoid computes it: exp only sees -|z|.
template <typename T>
__device__ inline T an_sigmoid(T z) {
    T e = an_exp(-an_abs(z));
    return z >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}
"""

_KERNELS = r"""
// Z = Z + b (b broadcast along the rows, if has_bias), then A = activation(Z). A may be Z.
template <typename T>
__global__ void bias_act(T* Z, const T* b, T* A, long long rows, long long cols, int has_bias,
                         int kind, T slope) {
    ANYNET_FOR(i, rows * cols) {
        T z = has_bias ? Z[i] + b[i % cols] : Z[i];
        Z[i] = z;
        A[i] = an_activate(z, kind, slope);
    }
}

// Dropout after the activation: keep = u >= p; out = A * keep * scale (scale = 1 / (1 - p)).
template <typename T>
__global__ void dropout(const T* A, const T* u, T* out, bool* keep, long long n, T p, T scale) {
    ANYNET_FOR(i, n) {
        bool k = u[i] >= p;
        keep[i] = k;
        out[i] = A[i] * T(k) * scale;
    }
}

// dA becomes the gradient at the activation's input: dropout's mask first (if use_keep), then
// the activation's derivative, which reads what the activation saved.
template <typename T>
__global__ void act_backward(T* dA, const T* saved, const bool* keep, long long n, int use_keep,
                             T keep_scale, int kind, T slope) {
    ANYNET_FOR(i, n) {
        T d = dA[i];
        if (use_keep) d = d * T(keep[i]) * keep_scale;
        dA[i] = an_activate_grad(d, saved[i], kind, slope);
    }
}
"""

_LOSSES_OPTIMIZERS_GATHER = r"""
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

// Adam over the flat buffers (see AdamHyper.scalars in anynet/fast/ops.py for the rearrangement):
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

#: The whole source, for NVRTC (and, with a prelude, a host compiler).
SOURCE = _PRELUDE + _activation_source(TABLE) + _KERNELS + _LOSSES_OPTIMIZERS_GATHER + IMAGE_KERNELS

#: Each kernel's parameters, in order: ``T*`` an array of the step's float type, ``i64*`` of
#: int64, ``u8*`` of uint8, ``bool*`` of booleans; ``T``, ``i64``, ``i32`` scalars.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "bias_act": ("T*", "T*", "T*", "i64", "i64", "i32", "i32", "T"),
    "dropout": ("T*", "T*", "T*", "bool*", "i64", "T", "T"),
    "act_backward": ("T*", "T*", "bool*", "i64", "i32", "T", "i32", "T"),
    "softmax_cross_entropy": ("T*", "i64*", "T*", "i64", "i64", "T"),
    "sigmoid_cross_entropy": ("T*", "i64*", "T*", "i64", "i64", "T"),
    "adam": ("T*", "T*", "T*", "T*", "i64", "T", "T", "T", "T", "T", "T", "T"),
    "sgd": ("T*", "T*", "T*", "i64", "T", "T", "i32", "i32", "T", "T"),
    "gather_lookup": ("u8*", "i64*", "T*", "T*", "i64", "i64"),
    "gather_standardize": ("u8*", "i64*", "T*", "T*", "T*", "i64", "i64"),
    **IMAGE_SIGNATURES,
}

#: The C++ name of each float type the kernels are built for.
CTYPES = {"float32": "float", "float64": "double"}

#: NVRTC's options for :data:`SOURCE`, and the instantiations CuPy asks it for.
NVRTC_OPTIONS = ("--std=c++14",)
NAME_EXPRESSIONS = [f"{k}<{c}>" for k in SIGNATURES for c in CTYPES.values()]
