"""Streaming a data set that does not fit the device through pinned host memory (CuPy).

The loader's own streaming copies each chunk and then computes on it; here two pinned host
buffers and a copy stream keep the copy of the next chunk in flight while the current one is
used, so a GPU waits for the bus as little as it can. The batches are the same either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["iter_pinned"]


def iter_pinned(
    loader: Any, order: np.ndarray | None, first_row: int, finish: Callable[[Any, int], Any]
) -> Iterator[tuple[Any, Any]]:
    """CuPy fast path: pinned host buffers, a copy stream, two chunks in flight.

    The epoch starts at sample ``first_row`` (a whole number of batches); ``finish(xb, row)``
    turns the stored batch that starts at the epoch's sample ``row`` into the batch given."""
    import cupyx

    cp, B, rows = loader.backend.library, loader.batch_size, loader._chunk_rows
    starts = list(range(first_row, loader._n_used, rows))
    with loader.backend.device:
        compute = cp.cuda.get_current_stream()
        copy_stream = cp.cuda.Stream(non_blocking=True)
        shape = (rows, *loader.sample_shape)
        host_X = [cupyx.empty_pinned(shape, dtype=loader._X_host.dtype) for _ in range(2)]
        y_shape, y_dtype = (rows, *loader._y_host.shape[1:]), loader._y_host.dtype
        host_y = [cupyx.empty_pinned(y_shape, dtype=y_dtype) for _ in range(2)]
        dev_X = [cp.empty(shape, dtype=loader._X_host.dtype) for _ in range(2)]
        dev_y = [cp.empty(y_shape, dtype=y_dtype) for _ in range(2)]
    uploaded: list[Any] = [None, None]  # copy-stream events: the chunk is on the device
    consumed: list[Any] = [None, None]  # compute-stream events: its batches are converted

    def upload(i: int) -> int:
        slot, c0 = i % 2, starts[i]
        n = min(c0 + rows, loader._n_used) - c0
        if uploaded[slot] is not None:
            uploaded[slot].synchronize()  # the pinned buffer is free again
        if order is None:
            host_X[slot][:n] = loader._X_host[c0 : c0 + n]
            host_y[slot][:n] = loader._y_host[c0 : c0 + n]
        else:
            # mode='clip' skips the bounds check that makes np.take(out=) slow; the
            # indices are a permutation, always in range.
            idx = order[c0 : c0 + n]
            np.take(loader._X_host, idx, axis=0, out=host_X[slot][:n], mode="clip")
            np.take(loader._y_host, idx, axis=0, out=host_y[slot][:n], mode="clip")
        with loader.backend.device:
            if consumed[slot] is not None:
                copy_stream.wait_event(consumed[slot])  # compute is done with this buffer
            dev_X[slot][:n].set(host_X[slot][:n], stream=copy_stream)
            dev_y[slot][:n].set(host_y[slot][:n], stream=copy_stream)
            uploaded[slot] = copy_stream.record()
        return n

    try:
        sizes = {0: upload(0)} if starts else {}
        for i in range(len(starts)):
            if i + 1 < len(starts):
                sizes[i + 1] = upload(i + 1)  # overlaps the work on chunk i
            slot, n = i % 2, sizes.pop(i)
            with loader.backend.device:
                compute.wait_event(uploaded[slot])
            for start in range(0, n, B):
                # The last chunk fills only n rows of its buffer; a data-parallel rank takes
                # its part of each batch.
                c0 = starts[i]
                start, stop = (r - c0 for r in loader._local(c0 + start, c0 + min(start + B, n)))
                with loader.backend.device:
                    xb = finish(dev_X[slot][start:stop], starts[i] + start)
                    # A copy: the buffer is refilled two chunks on, the caller may keep yb.
                    yb = dev_y[slot][start:stop].copy()
                yield xb, yb
            with loader.backend.device:
                consumed[slot] = compute.record()
    finally:
        # An abandoned epoch must not free pinned memory under a copy in flight.
        copy_stream.synchronize()
