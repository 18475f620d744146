"""The GPU family of the fused step's operations: CUDA kernels launched with CuPy.

- :mod:`~anynet.fast.cuda.source`: the kernels' CUDA C++ (activations generated from
  :data:`anynet.fast.activations.TABLE`), their signatures;
- :mod:`~anynet.fast.cuda.ops`: :class:`CudaOps`, the kernels as :class:`~anynet.fast.ops.Ops`;
- :mod:`~anynet.fast.cuda.launch`: :class:`CupyLauncher`, NVRTC-compiled and launched by CuPy;
- :mod:`~anynet.fast.cuda.host`: :class:`HostLauncher`, the same source built as host C++, so the
  tests check the kernels on machines without a GPU.
"""

from anynet.fast.cuda.ops import CudaOps

__all__ = ["CudaOps"]
