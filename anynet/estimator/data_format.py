"""What a model's training data was, kept in its file so that ``anynet evaluate`` and
``anynet predict`` can check that new data matches: a fitted estimator's ``data_format_``.

One of (a JSON object, as a model file holds it):

- ``{"kind": "npz", "shape": [4]}``: arrays from a ``.npz``, each sample of that shape;
- ``{"kind": "csv", "columns": ["a", "b"], "target": "label"}``: a CSV table's feature columns,
  in the order the model takes them, and its label column;
- ``{"kind": "images", "shape": [3, 32, 32]}``: a folder of images, (channels, height, width).

:func:`check_data_format` holds a file's record to that closed set before it is used.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["DATA_KINDS", "check_data_format"]

#: The kinds of data a record may name.
DATA_KINDS = ("npz", "csv", "images")
# The longest column name or label column a record may hold, in characters.
_MAX_NAME = 1024


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_data_format(record: Any, n_features: int) -> dict[str, Any]:
    """``record`` if it is a data format of a model of ``n_features`` inputs; ValueError saying
    what is wrong otherwise."""
    if not isinstance(record, dict) or record.get("kind") not in DATA_KINDS:
        raise ValueError(f"its data_format {record!r:.80} is not one of kind {DATA_KINDS}")
    kind = record["kind"]
    keys = {"npz": {"kind", "shape"}, "images": {"kind", "shape"}}.get(
        kind, {"kind", "columns", "target"}
    )
    if set(record) != keys:
        raise ValueError(f"its data_format of kind {kind!r} has keys {sorted(record)}")
    if kind == "csv":
        columns, target = record["columns"], record["target"]
        names = [*columns, target] if isinstance(columns, list) else None
        if (
            names is None
            or not all(isinstance(n, str) and 0 < len(n) <= _MAX_NAME for n in names)
            or len(set(names)) != len(names)
            or len(columns) != n_features
        ):
            raise ValueError(
                f"its data_format's columns are not {n_features} distinct names and a label "
                "column's"
            )
        return {"kind": kind, "columns": list(columns), "target": target}
    shape = record["shape"]
    rank = (3,) if kind == "images" else (1, 2, 3)
    if (
        not isinstance(shape, list)
        or len(shape) not in rank
        or not all(map(_is_count, shape))
        or math.prod(shape) != n_features
    ):
        raise ValueError(
            f"its data_format's shape {shape!r:.80} is not a sample shape of {n_features} values"
        )
    return {"kind": kind, "shape": list(shape)}
