"""Calls the public annotations must accept: checked by mypy (pyproject.toml's
[tool.mypy] files), never run. Each line is a call that works at run time."""

from __future__ import annotations

import fastsoftmax as fs
import numpy as np


def calls(x: np.ndarray, labels: np.ndarray, flag: bool) -> None:
    fs.cross_entropy(x, labels, return_grad=flag)  # a bool known only at run time
    fs.cross_entropy(x, labels, return_grad=True, inplace_grad=flag)
    fs.cross_entropy(x, labels, axis=np.int64(1), ignore_index=np.int64(-1))
    fs.cross_entropy_backward(x, labels, axis=np.int32(0), ignore_index=np.uint8(255))
    _loss, _grad = fs.cross_entropy(x, labels, return_grad=True)
    _loss, _dh, _dw = fs.linear_cross_entropy(
        x, x, labels, return_grad=True, chunk_size=np.int64(8)
    )
    fs.linear_cross_entropy(x, x, labels, weight_layout="DV", ignore_index=np.int64(-1))
    _h, _g = fs.entropy(x, np.int64(0), temperature=2, return_grad=True)
    fs.kl_div(x, x, axis=np.int64(0), target_kind="probs", reduction="none")
    _tok, _lp = fs.sample(x, top_k=np.int64(5), top_p=0.9, seed=np.uint64(3), return_logprobs=True)
    fs.set_num_threads(np.int64(2))
    with fs.use_threads(np.intp(1)):
        fs.softmax(x, axis=np.int64(0))
