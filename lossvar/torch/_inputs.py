"""Input checks of :class:`lossvar.torch.TorchProblem`: the module, its modes, the data and the losses.

Every check raises before any work, naming the argument and saying what to
change; nothing is converted silently (numpy arrays are host data, copied to
the module's device in its dtype by contract).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lossvar._validate import as_finite_array

#: Examples of the probe that compares a batch's losses with the same examples alone.
PROBE_EXAMPLES = 4

#: Module types whose output for one example depends on the rest of the batch in training
#: mode (batch statistics), or is random there: torch.func evaluates each example alone.
TRAINING_MODE_TYPES = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.dropout._DropoutNd)


def is_tensor(a) -> bool:
    return isinstance(a, torch.Tensor)


def module_device(module: torch.nn.Module, dtype: torch.dtype, device) -> torch.device:
    """The module's one device; its parameters and floating buffers all in ``dtype``."""
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    devices = {t.device for _, t in tensors}
    if len(devices) != 1:
        raise ValueError(f"`module` must have all its parameters and buffers on one device; got "
                         f"{sorted(map(str, devices))}: move it with module.to(device)")
    (own,) = devices
    for name, t in tensors:
        if t.dtype.is_floating_point and t.dtype != dtype:
            raise ValueError(
                f"`module` must hold its floating parameters and buffers in dtype={dtype}; "
                f"`{name}` is {t.dtype}: call module.to({dtype}) or pass dtype={t.dtype}")
    if device is not None:
        wanted = torch.device(device)
        same = wanted.type == own.type and (wanted.index is None or wanted.index == own.index)
        if not same:
            raise ValueError(f"`device` must be the module's device, {own}; got {wanted}: move the "
                             f"module with module.to({str(wanted)!r}) first")
    return own


def per_batch_modules(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [(name, m) for name, m in module.named_modules() if isinstance(m, TRAINING_MODE_TYPES)]


def check_modes(per_batch) -> None:
    """A BatchNorm or Dropout in training mode makes an example's loss depend on its batch."""
    for name, m in per_batch:
        if m.training:
            what = ("normalizes each example by its batch's statistics"
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                    else "zeroes random units, so the loss is not a function of w")
            raise ValueError(
                f"`module` must be in eval mode for per-example losses: its {type(m).__name__} "
                f"`{name or type(m).__name__}` is in training mode and {what}; call module.eval() "
                f"(BatchNorm then uses its running statistics)")


def as_tensor(a, name: str, dtype: torch.dtype, device: torch.device, *, check_finite: bool) -> torch.Tensor:
    """A floating input (w, X, v) as a tensor on ``device`` in ``dtype``."""
    if is_tensor(a):
        if a.device != device:
            raise ValueError(f"`{name}` must be on the module's device {device}; got a tensor on "
                             f"{a.device}: move it with .to({str(device)!r}) or pass a numpy array")
        if a.dtype != dtype:
            raise ValueError(f"`{name}` must have the problem's dtype {dtype}; got {a.dtype}: "
                             f"convert it with .to({dtype}) or pass a numpy array")
        if check_finite and not bool(torch.isfinite(a).all()):
            raise ValueError(f"`{name}` must be finite; got NaN or inf values")
        return a.detach()
    arr = as_finite_array(a, name) if check_finite else np.asarray(a, dtype=np.float64)
    if not arr.flags.writeable:  # torch shares memory with numpy and refuses read-only arrays
        arr = arr.copy()
    return torch.as_tensor(arr, dtype=dtype, device=device)


def as_targets(y, n: int, dtype: torch.dtype, target_dtype: torch.dtype | None,
               device: torch.device) -> torch.Tensor:
    """Targets (..., n): integers as torch.long, floats in ``target_dtype or dtype``."""
    float_dtype = target_dtype if target_dtype is not None and target_dtype.is_floating_point else dtype
    if is_tensor(y):
        if y.device != device:
            raise ValueError(f"`y` must be on the module's device {device}; got a tensor on "
                             f"{y.device}: move it with .to({str(device)!r}) or pass a numpy array")
        if y.dtype.is_floating_point and y.dtype != float_dtype:
            raise ValueError(f"`y` must have dtype {float_dtype}; got {y.dtype}: convert it with "
                             f".to({float_dtype}) or pass a numpy array")
        t = y.detach()
    else:
        arr = np.asarray(y)
        if arr.dtype.kind in "iub":
            t = torch.as_tensor(arr.astype(np.int64), device=device)
        else:
            arr = as_finite_array(arr, "y")
            if target_dtype is not None and not target_dtype.is_floating_point:
                frac = arr != np.floor(arr)
                if frac.any():
                    raise ValueError(f"`y` must hold integers for target_dtype={target_dtype}; "
                                     f"got {arr[frac].flat[0].item()!r}")
                arr = arr.astype(np.int64)
            elif not arr.flags.writeable:
                arr = arr.copy()
            t = torch.as_tensor(arr, device=device)
    wanted = target_dtype or (dtype if t.dtype.is_floating_point else torch.long)
    if t.dtype != wanted:
        t = t.to(wanted)
    if tuple(t.shape[-1:]) != (n,):
        raise ValueError(f"`y` must have shape (..., n) with n={n}, one target per row of `X`; got "
                         f"shape {tuple(t.shape)}")
    return t


def probe(call, loss_fn, X: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> None:
    """The losses of a few examples as one batch and one at a time: equal to rounding.

    ``call(x)`` is the module on a batch x; the first examples of ``X`` and ``y``
    are used (at least two).
    """
    k = min(X.shape[0], PROBE_EXAMPLES)
    with torch.no_grad():
        batch = loss_fn(call(X[:k]), y[:k])
        if not is_tensor(batch) or tuple(batch.shape) != (k,):
            got = f"shape {tuple(batch.shape)}" if is_tensor(batch) else type(batch).__name__
            raise ValueError(
                f"`loss_fn` must return one loss per example, a tensor of shape (batch,) (reduction="
                f"'none'); got {got} for a batch of {k}: pass e.g. "
                f"torch.nn.CrossEntropyLoss(reduction='none')")
        alone = torch.cat([loss_fn(call(X[i:i + 1]), y[i:i + 1]).reshape(1) for i in range(k)])
    # Two evaluation orders of the same numbers round differently by a few eps; an example
    # that sees its batch (batch statistics, a loss averaged over the batch) differs by O(1).
    tol = math.sqrt(torch.finfo(dtype).eps)
    both = torch.isfinite(batch) & torch.isfinite(alone)
    gap = torch.where(both, (batch - alone).abs() - tol * (1 + alone.abs()), torch.zeros_like(batch))
    if bool((gap > 0).any()):
        raise ValueError(
            "`module` and `loss_fn` must give each example the loss it has alone; the losses of a "
            f"batch of {k} examples differ from the same examples one at a time (by up to "
            f"{float(torch.where(both, (batch - alone).abs(), 0.0).max()):.3g}): the module or the loss "
            "uses batch statistics (a normalization over the batch, a loss divided by the batch size); "
            "use per-example operations (module.eval() for BatchNorm, GroupNorm or LayerNorm instead)")


def out_tensor(out, shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The caller's ``out`` as a tensor to write a result of ``shape`` into.

    A writeable C-contiguous float64 ndarray (host memory, shared with the returned tensor), or
    a contiguous tensor on the module's ``device`` in the problem's ``dtype`` (the result stays
    there: what :func:`lossvar.run_sgd` passes when it keeps an ensemble on the device).
    """
    if is_tensor(out):
        if (out.device == device and out.dtype == dtype and tuple(out.shape) == shape
                and out.is_contiguous()):
            return out
        got = f"a {out.dtype} tensor of shape {tuple(out.shape)} on {out.device}"
    elif (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == shape
          and out.flags.c_contiguous and out.flags.writeable):
        return torch.from_numpy(out)
    else:
        got = (f"a {out.dtype} array of shape {out.shape}" if isinstance(out, np.ndarray)
               else f"a {type(out).__name__}")
    raise ValueError(f"`out` must be a writeable C-contiguous float64 array of shape {shape}, or a "
                     f"contiguous tensor of that shape on the module's device {device} in {dtype}; "
                     f"got {got}")


def check_finite(out: np.ndarray, what: str) -> None:
    """ValueError naming the first NaN or inf of a result."""
    bad = ~np.isfinite(out)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0]) if out.ndim else ()
        raise ValueError(
            f"the {what} of `loss_fn` at `w` must be finite; got {int(bad.sum())} NaN or inf value(s), "
            f"the first at index {where} of the result: check the data and `w` (a diverging training "
            "gives inf weights), and that loss_fn is defined there")
