"""A data loader that keeps the data set on the backend's device.

The data set goes to the device once, as it is stored (uint8 pixels: a quarter of float32).
Each epoch draws a permutation with the backend's own generator, on the device; each batch is
gathered with ``xp.take``, cast and normalized there. Nothing crosses between host and device
inside an epoch, which matters on a GPU, where a batch crossing the bus each step wastes it.

Training batches can be augmented there too (:class:`~anynet.data.RandomCropFlip`), with
random numbers named by ``(seed, epoch, batch)``: drawn on the host, they go to the device once
per epoch, a few bytes per image.

In a data-parallel run (:mod:`anynet.distributed`) every process builds the same loader with
its ``shard=(rank, size)``: all draw the same permutation from ``(seed, epoch)``, and each
takes its contiguous part of every batch, so the ranks' batches of step b together are the
batch b that one process would train on.

When the data set would not fit a device memory budget, the loader streams chunks of it from
host memory instead; on CuPy through pinned host buffers and a copy stream, so that the copy
of the next chunk overlaps the work on the current one. The batches are the same either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from math import prod
from typing import Any

import numpy as np

from anynet.backends import Backend, derive_seed, get_backend
from anynet.checks import check_choice, check_flag, check_int
from anynet.data import arguments
from anynet.data.arguments import NORMALIZATIONS
from anynet.data.augment import RandomCropFlip
from anynet.data.standardizer import Standardizer

__all__ = ["NORMALIZATIONS", "DataLoader", "Standardizer"]


class DataLoader:
    """Batches of a labelled data set, held on the backend's device.

    Parameters
    ----------
    X : array_like
        Samples along axis 0, on the host: rows of features (N, n_features), or images
        (N, H, W) or (N, C, H, W); uint8 pixels, or floating point. uint8 stays uint8 on the
        device (a quarter of float32); floats are stored in ``dtype``.
    y : array_like
        Integer class labels of shape (N,), 0 or more; with ``targets='values'``, numbers of
        shape (N,) or (N, n_outputs) (a regression's targets), kept in ``dtype``.
    batch_size : int
        Samples per batch; the last batch is smaller unless ``drop_last``.
    shuffle : bool
        Draw a new order every epoch, with the backend's generator, on the device.
    drop_last : bool
        Leave out the last, incomplete batch (and with it up to ``batch_size - 1`` samples of
        this epoch's order).
    backend : str, Backend or None
        Where the batches live; ``None`` means ``anynet.get_backend(None)`` (``ANYNET_BACKEND``,
        else NumPy).
    seed : int, optional
        Seed of the shuffle. Epoch k's order is a pure function of ``(seed, k)`` on a given
        backend. ``None`` draws a seed from the OS once; :attr:`seed` reports it.
    dtype : str
        Floating dtype of the X batches (default ``'float32'``).
    normalize : {'unit', 'standardize', 'symmetric', None}
        ``'unit'``: x / 255 into [0, 1]. ``'standardize'``: (x - mean) / std per feature,
        with statistics from ``standardizer`` or else computed once on this ``X``.
        ``'symmetric'``: (x / 255 - 0.5) / 0.5 into [-1, 1]. ``None``: only the cast.
        ``'unit'`` and ``'symmetric'`` need uint8 ``X``.
    standardizer : Standardizer, optional
        Statistics to reuse with ``normalize='standardize'``: pass the training loader's
        :attr:`standardizer` to the test loader so both sets are scaled alike.
    flatten : bool
        Batches of shape (B, n_features), e.g. (B, 784), for a dense network; ``False`` keeps
        the shape of X's samples, e.g. (B, 1, 28, 28) for a convolutional one.
    num_classes : int, optional
        Labels must be below it; default ``max(y) + 1``.
    max_device_bytes : int, optional
        Device memory the stored data set may take. Above it the loader streams chunks from
        host memory. Default: half the free memory of a GPU; no limit on the CPU.
    pin_memory : bool, optional
        Stream through pinned host buffers and a copy stream (CuPy only). Default: on CuPy.
    augment : RandomCropFlip, optional
        Crop and flip every batch this loader gives, on the device, before the cast and the
        normalization (so padding is black pixels, as with torchvision's transforms). Needs
        images: X of shape (N, H, W) or (N, C, H, W). Batch b of epoch k is augmented as a pure
        function of ``(seed, k, b)``. Give it to the training loader only.
    shard : (int, int), optional
        ``(rank, size)`` in a data-parallel run: this process gets its part of every batch of
        ``batch_size`` samples (the global batch): the contiguous slice ``rank`` of ``size``
        near-equal slices, the first ``batch_size % size`` ranks one sample more. Every rank
        gets ``len(loader)`` batches, so no rank waits for another at an epoch's end; where a
        batch has fewer samples than there are ranks (the last one, say), some ranks get an
        empty batch. ``batch_size``, ``n_samples`` and ``len()`` stay the global ones.
    targets : {'labels', 'values'}
        What ``y`` holds: class labels, or real values to regress on.
    sample_weight : array_like, optional
        One finite weight >= 0 per sample (scikit-learn's ``sample_weight``). Batches then
        come with their weights, scaled to average 1 over each (global) batch: the mean loss
        of a batch is then the weighted average ``sum(w * loss) / sum(w)`` that scikit-learn
        trains on, and a weight of 2 counts a sample twice. :meth:`batch_weight` gives each
        batch's sum of the weights as given. A batch whose weights are all 0 gets weights 0.

    Attributes
    ----------
    n_samples : int
        Number of samples in the data set.
    n_features : int
        Features per sample (784 for Fashion-MNIST).
    n_classes : int or None
        ``num_classes``, or ``max(y) + 1``.
    epoch : int
        The epoch the next iteration runs; each ``iter()`` uses it and then adds one.
    seed : int
        The shuffle seed in use.
    standardizer : Standardizer or None
        The statistics used by ``normalize='standardize'``.
    streaming : bool
        Whether the data set streams from the host (it exceeds ``max_device_bytes``).
    device_bytes : int
        Device memory the loader holds for the data set (excluding batches handed out).

    Notes
    -----
    Iterating gives ``(X_batch, y_batch)``: X floating of shape (B, n_features), y int64 of
    shape (B,), both on the backend's device; with ``sample_weight``,
    ``(X_batch, y_batch, w_batch)``, w of shape (B,) in ``dtype``. The weights follow their
    samples through the shuffle, the shard and a resumed epoch. Every sample comes exactly
    once per epoch (less the left-out tail with ``drop_last``). ``len(loader)`` is the number
    of batches.

    To resume a run at epoch k with the shuffles an uninterrupted run would have drawn, build
    the loader with the same seed and call ``loader.set_epoch(k)`` before iterating;
    ``loader.set_epoch(k, batch=b)`` starts that epoch at its batch b, with the order and the
    augmentation the uninterrupted run had there.

    Examples
    --------
    >>> import numpy as np
    >>> from anynet.data import DataLoader
    >>> X = np.arange(6 * 4, dtype=np.uint8).reshape(6, 2, 2)
    >>> y = np.array([0, 1, 2, 0, 1, 2])
    >>> loader = DataLoader(X, y, batch_size=4, seed=0, backend="numpy")
    >>> len(loader), loader.n_features
    (2, 4)
    >>> [tuple(xb.shape) for xb, yb in loader]
    [(4, 4), (2, 4)]
    """

    def __init__(
        self,
        X: Any,
        y: Any,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        backend: str | Backend | None = None,
        seed: int | None = None,
        *,
        dtype: str = "float32",
        normalize: str | None = "unit",
        standardizer: Standardizer | None = None,
        flatten: bool = True,
        num_classes: int | None = None,
        max_device_bytes: int | None = None,
        pin_memory: bool | None = None,
        augment: RandomCropFlip | None = None,
        shard: tuple[int, int] | None = None,
        sample_weight: Any = None,
        targets: str = "labels",
    ):
        be = get_backend(backend)
        self.backend = be
        self.shuffle = check_flag("shuffle", shuffle)
        self.drop_last = check_flag("drop_last", drop_last)
        self.flatten = check_flag("flatten", flatten)

        X = arguments.check_X(X)
        self.n_samples = int(X.shape[0])
        self.batch_size = arguments.check_batch_size(batch_size, self.n_samples, self.drop_last)
        self.targets = check_choice("targets", targets, ("labels", "values"))
        self.dtype, self._host_dtype = arguments.check_dtype(dtype, be)
        if self.targets == "labels":
            y, self.n_classes = arguments.check_y(y, self.n_samples, num_classes)
        else:  # regression targets: no classes
            y, self.n_classes = arguments.check_values(y, self.n_samples, self._host_dtype), None
        self.normalize = arguments.check_normalize(normalize, X)
        self.seed = arguments.check_seed(seed)
        self.augment = arguments.check_augment(augment, X)
        self.shard = arguments.check_shard(shard)
        self.sample_weight = arguments.check_sample_weight(sample_weight, self.n_samples)
        self._batch_weights: np.ndarray | None = None
        self.epoch, self._first_batch = 0, 0

        self.image_shape = tuple(X.shape[1:])
        self.sample_shape = (prod(X.shape[1:]),) if self.flatten else self.image_shape
        self.n_features = prod(X.shape[1:])
        # The host copy the device gets (or that chunks stream from): uint8 as it is, floats
        # cast once to the batch dtype.
        stored_dtype = np.uint8 if X.dtype == np.uint8 else self._host_dtype
        self._X_host = np.ascontiguousarray(X.reshape((self.n_samples, *self.sample_shape)))
        self._X_host = self._X_host.astype(stored_dtype, copy=False)
        self._y_host = y

        self.standardizer = arguments.check_standardizer(standardizer, self.normalize, X)
        self._mean = self._inv_std = None
        if self.standardizer is not None:
            shape = self.sample_shape
            host = self._host_dtype
            self._mean = be.asarray(self.standardizer.mean.reshape(shape).astype(host))
            self._inv_std = be.asarray(self.standardizer.inv_std.reshape(shape).astype(host))

        # + the int64 label (or the targets), and a weight
        row_bytes = self._X_host.itemsize * prod(self.sample_shape)
        row_bytes += y.itemsize * prod(y.shape[1:])
        row_bytes += 0 if self.sample_weight is None else self._host_dtype.itemsize
        resident_bytes = row_bytes * self.n_samples
        budget = arguments.check_budget(max_device_bytes, be)
        self.max_device_bytes = budget
        self.streaming = budget is not None and resident_bytes > budget
        self.pin_memory = arguments.check_pin_memory(pin_memory, self.streaming, be)
        if self.streaming:
            self._chunk_rows = self._plan_chunks(budget, row_bytes)
            buffers = 2 if self.pin_memory else 1
            self.device_bytes = buffers * self._chunk_rows * row_bytes
            self._X = self._y = None
        else:
            self._chunk_rows = 0
            self.device_bytes = resident_bytes
            # The one copy to the device; every epoch after this works there.
            self._X = be.asarray(self._X_host)
            self._y = be.asarray(self._y_host)
        # The same batches in one pass where the backend has fused kernels.
        self._gather = None
        if not self.streaming:
            from anynet.fast import ops_for
            from anynet.fast.gather import batch_gather

            ops = ops_for(be)
            if ops is not None:
                self._gather = batch_gather(
                    ops, self._X, self.dtype, self._convert, self._mean, self._inv_std
                )

    def _plan_chunks(self, budget: int, row_bytes: int) -> int:
        """Rows per streamed chunk: whole batches, as many as the budget allows."""
        buffers = 2 if self.pin_memory else 1
        batches = budget // (buffers * self.batch_size * row_bytes)
        if batches < 1:
            need = buffers * self.batch_size * row_bytes
            raise ValueError(
                f"max_device_bytes={budget} cannot hold one chunk of a batch ({need} bytes "
                f"for batch_size={self.batch_size}); raise max_device_bytes or lower batch_size"
            )
        return min(batches * self.batch_size, self._n_used)

    # --- iteration ---------------------------------------------------------------------------

    @property
    def _n_used(self) -> int:
        """Samples served per epoch: all of them, or whole batches only with drop_last."""
        if self.drop_last:
            return self.n_samples // self.batch_size * self.batch_size
        return self.n_samples

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-self._n_used // self.batch_size)

    def batch_samples(self, batch: int) -> int:
        """Samples in batch ``batch`` of an epoch, on all ranks together (the global batch)."""
        return max(0, min(self.batch_size, self._n_used - batch * self.batch_size))

    def batch_weight(self, batch: int) -> float:
        """The sum of the given weights of batch ``batch`` of the epoch being iterated, on all
        ranks together: what scikit-learn divides a batch's L2 penalty by. Without
        ``sample_weight``, :meth:`batch_samples`."""
        if self.sample_weight is None:
            return float(self.batch_samples(batch))
        if self._batch_weights is None:
            raise RuntimeError("batch_weight() is known once an epoch's iteration has begun")
        return float(self._batch_weights[batch])

    def _epoch_weights(self, order_host: np.ndarray | None) -> Any:
        """The epoch's weights in its order, scaled to average 1 over each global batch, on
        the device (one transfer per epoch); keeps each batch's sum for :meth:`batch_weight`."""
        w = self.sample_weight if order_host is None else self.sample_weight[order_host]
        w = w[: self._n_used]
        starts = np.arange(0, self._n_used, self.batch_size)
        sums = np.add.reduceat(w, starts)
        counts = np.diff(np.append(starts, self._n_used))
        scale = np.divide(counts, sums, out=np.zeros_like(sums), where=sums > 0)
        self._batch_weights = sums
        return self.backend.asarray((w * np.repeat(scale, counts)).astype(self._host_dtype))

    def _weighted(self, batches: Iterator, weights: Any, first_row: int) -> Iterator:
        """``batches`` (from row ``first_row`` on) with their weights: the same rows of the
        epoch's ``weights``, this rank's part."""
        for k, (xb, yb) in enumerate(batches):
            start = first_row + k * self.batch_size
            lo, hi = self._local(start, min(start + self.batch_size, self._n_used))
            yield xb, yb, weights[lo:hi]

    def _local(self, start: int, stop: int) -> tuple[int, int]:
        """This rank's rows of the batch of rows ``[start, stop)``: all of them unsharded."""
        if self.shard is None:
            return start, stop
        rank, size = self.shard
        base, extra = divmod(stop - start, size)
        lo = start + rank * base + min(rank, extra)
        return lo, lo + base + (rank < extra)

    def set_epoch(self, epoch: int, batch: int = 0) -> None:
        """Make the next iteration run epoch ``epoch`` (its shuffle depends on (seed, epoch)),
        from its batch ``batch`` on.

        Use it to resume a run: a loader with the same seed, set to epoch k and batch b, gives
        the batches an uninterrupted run gets in its epoch k from batch b on, augmented alike.
        The iteration after that one starts at batch 0 of the epoch after.
        """
        self.epoch = check_int("epoch", epoch, minimum=0)
        self._first_batch = check_int(
            "batch", batch, minimum=0, maximum=len(self), hint=f"An epoch has {len(self)} batches"
        )

    def order(self, epoch: int | None = None) -> Any:
        """The sample order of an epoch (default: the next) as int64 indices on the device,
        or ``None`` without shuffling (the stored order)."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return None
        return self.backend.generator(derive_seed(self.seed, epoch)).permutation(self.n_samples)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        order, epoch, first_row = self.order(), self.epoch, self._first_batch * self.batch_size
        self.epoch, self._first_batch = epoch + 1, 0
        finish = _Finish(self, self._epoch_draws(epoch, first_row), first_row)
        # The one transfer of a streaming (or weighted) epoch that is not data: its order.
        order_host = None
        if order is not None and (self.streaming or self.sample_weight is not None):
            order_host = self.backend.to_numpy(order)
        if not self.streaming:
            batches = self._iter_resident(order, first_row, finish)
        elif self.pin_memory:
            from anynet.data.pinned import iter_pinned

            batches = iter_pinned(self, order_host, first_row, finish)
        else:
            batches = self._iter_streaming(order_host, first_row, finish)
        if self.sample_weight is None:
            return batches
        return self._weighted(batches, self._epoch_weights(order_host), first_row)

    def _epoch_draws(self, epoch: int, first_row: int) -> Any:
        """The augmentation's draws for the epoch's batches from row ``first_row`` on, one row
        per sample, on the device: one transfer per epoch rather than one per batch."""
        if self.augment is None or first_row >= self._n_used:
            return None
        B = self.batch_size
        host = [
            self.augment.draw(min(B, self._n_used - row), seed=self.seed, epoch=epoch, batch=b)
            for b, row in enumerate(range(0, self._n_used, B))
            if row >= first_row
        ]
        return self.backend.asarray(np.concatenate(host))

    def _convert(self, xb: Any) -> Any:
        """Cast and normalize a batch, on the device."""
        xp = self.backend.xp
        x = xp.astype(xb, self.dtype)
        if self.normalize == "unit":
            return x / 255.0
        if self.normalize == "symmetric":
            # The same arithmetic as torchvision's ToTensor then Normalize(0.5, 0.5).
            return (x / 255.0 - 0.5) / 0.5
        if self.normalize == "standardize":
            return (x - self._mean) * self._inv_std
        return x

    def _iter_resident(
        self, order: Any, first_row: int, finish: _Finish
    ) -> Iterator[tuple[Any, Any]]:
        xp, B = self.backend.xp, self.batch_size
        for start in range(first_row, self._n_used, B):
            start, stop = self._local(start, min(start + B, self._n_used))
            if self._gather is not None and self.augment is None:
                idx = xp.arange(start, stop) if order is None else order[start:stop]
                yield self._gather(idx), xp.take(self._y, idx, axis=0)
                continue
            if order is None:
                xb, yb = self._X[start:stop, ...], self._y[start:stop, ...]
            else:
                idx = order[start:stop]
                xb, yb = xp.take(self._X, idx, axis=0), xp.take(self._y, idx, axis=0)
            yield finish(xb, start), yb

    def _host_chunk(self, order: np.ndarray | None, c0: int, c1: int) -> tuple[Any, Any]:
        if order is None:
            return self._X_host[c0:c1], self._y_host[c0:c1]
        rows = order[c0:c1]
        return self._X_host[rows], self._y_host[rows]

    def _iter_streaming(
        self, order: np.ndarray | None, first_row: int, finish: _Finish
    ) -> Iterator[tuple[Any, Any]]:
        be, B = self.backend, self.batch_size
        # first_row is a whole number of batches, so chunks from it keep the batch boundaries.
        for c0 in range(first_row, self._n_used, self._chunk_rows):
            c1 = min(c0 + self._chunk_rows, self._n_used)
            X_host, y_host = self._host_chunk(order, c0, c1)
            X_chunk, y_chunk = be.asarray(X_host), be.asarray(y_host)
            # Chunks hold whole batches, so batch boundaries match the resident path's.
            for start in range(0, c1 - c0, B):
                # min(): the standard leaves out-of-bounds slices open
                start, stop = (r - c0 for r in self._local(c0 + start, min(c0 + start + B, c1)))
                yield finish(X_chunk[start:stop, ...], c0 + start), y_chunk[start:stop, ...]

    def __repr__(self) -> str:
        return (
            f"DataLoader(n_samples={self.n_samples}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, backend={self.backend.spec!r}, "
            f"normalize={self.normalize!r}, streaming={self.streaming})"
        )


class _Finish:
    """A batch's last stage, on the device: augmentation (if any) of the stored pixels, then
    the cast and normalization. ``draws`` holds one row per sample of the epoch from row
    ``first_row`` on."""

    def __init__(self, loader: DataLoader, draws: Any, first_row: int):
        self.loader, self.draws, self.first_row = loader, draws, first_row

    def __call__(self, xb: Any, row: int) -> Any:
        """Batch ``xb``, which holds the epoch's samples from position ``row`` on."""
        loader = self.loader
        if self.draws is not None:
            n, xp = xb.shape[0], loader.backend.xp
            at = row - self.first_row
            images = xp.reshape(xb, (n, *loader.image_shape))
            images = loader.augment.apply(images, self.draws[at : at + n, ...])
            xb = xp.reshape(images, (n, *loader.sample_shape))
        return loader._convert(xb)
