r"""The gradient noise scale of a PyTorch training loop: :class:`NoiseScaleHook`.

Under gradient accumulation each optimizer step sums the gradients of k
micro-batches of b examples: each micro-batch's gradient is a mean gradient
of b examples, their sum (with each micro-batch's loss divided by k) the mean
gradient of the k b examples of the step. The squared norms of both are the
two batch sizes of McCandlish et al.'s (2018, appendix A.1) estimate, for
free: :class:`NoiseScaleHook` reads them from the gradients as the backward
passes produce them and feeds a :class:`lossvar.GradientNoiseMonitor`. Under
data parallelism each rank's gradient is the small batch and the all-reduced
mean the big one (docs/recipes/ddp_noise_scale.py).

References
----------
S. McCandlish, J. Kaplan, D. Amodei et al. (2018), "An Empirical Model of
Large-Batch Training", arXiv:1812.06162, appendix A.1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from lossvar._validate import as_int

__all__ = ["NoiseScaleHook"]


class NoiseScaleHook:
    r"""Squared gradient norms of a training loop, at two batch sizes, for a gradient-noise monitor.

    Registers a hook on each trainable parameter (``Tensor.register_hook``)
    that adds the squared norm of the gradient each backward pass brings,
    before it is accumulated into ``.grad``. With k micro-batches of b
    examples per optimizer step, each loss being its micro-batch's mean loss
    divided by k (the usual accumulation idiom), backward pass j brings
    :math:`G_{b,j}/k` and ``.grad`` ends as :math:`G_{kb} = \frac1k \sum_j G_{b,j}`,
    the mean gradient of the step's k b examples. :meth:`step` then computes

    .. math::

        Y_s = \frac1k \sum_{j=1}^k \|G_{b,j}\|^2 = k \sum_j \|G_{b,j}/k\|^2,
        \qquad Y_b = \|G_{kb}\|^2,

    (the average of the k squared norms: the same expectation as one, less
    variance) and calls ``monitor.update(Y_s, Y_b)``. With
    ``distributed=True`` (DistributedDataParallel: each rank's backward
    brings its own gradient, and ``.grad`` holds the mean over the ranks
    after the all-reduce) :math:`Y_s` is also averaged over the ranks with
    one all-reduce of a scalar, and ``b_big`` is ``world_size * k * b``.

    Cost: per backward pass, one squared norm per parameter on its device
    (O(p) work, no copy of the gradients); per step, one transfer of two
    numbers to the host.

    The loop, in the order that matters::

        monitor = lossvar.GradientNoiseMonitor(b, k * b, n=len(data), sampling="without_replacement",
                                               ema=0.95)
        hook = NoiseScaleHook(model, monitor, micro_batches=k)
        for step in range(steps):
            for xb, yb in micro_batches_of_the_step:       # k of them, b examples each
                (loss_fn(model(xb), yb).mean() / k).backward()
            hook.step()                                     # before clipping and optimizer.step()
            optimizer.step()
            optimizer.zero_grad()                           # .grad must start each step at zero

    Read ``monitor.estimate()`` whenever you like. Backward passes that are
    not training micro-batches (an evaluation with gradients) must run
    outside the hook: ``with hook.paused(): ...``. Under mixed precision
    with a ``GradScaler``, the gradients carry the loss scale S: the norms
    are then S^2 times too large (B_simple, a ratio, is unaffected); pass
    ``grad_scale=scaler.get_scale()`` to :meth:`step` to divide it out.

    Parameters
    ----------
    module : torch.nn.Module
        The model (a DistributedDataParallel wrapper or the module inside).
    monitor : lossvar.GradientNoiseMonitor, optional
        Fed at every :meth:`step`; its ``b_big`` must be ``micro_batches``
        (times the world size with ``distributed``) times its ``b_small``.
        Without one, :meth:`step` only returns the pair.
    micro_batches : int, default 1
        k, the backward passes per optimizer step. k = 1 needs ``distributed``
        (one batch per step gives no second batch size).
    distributed : bool, default False
        Average the small-batch norm over the ranks of ``torch.distributed``'s
        default process group (or ``process_group``).
    process_group : optional
        The process group of the data-parallel ranks.

    Attributes
    ----------
    last : tuple of float or None
        The pair (Y_s, Y_b) of the last step.
    """

    def __init__(self, module, monitor=None, *, micro_batches: int = 1, distributed: bool = False,
                 process_group=None):
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"`module` must be a torch.nn.Module; got {type(module).__name__}")
        self.micro_batches = as_int(micro_batches, "micro_batches", low=1)
        self.distributed = bool(distributed)
        self.process_group = process_group
        self.world_size = 1
        if self.distributed:
            if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
                raise ValueError("`distributed` must be False unless torch.distributed is initialized; "
                                 "call torch.distributed.init_process_group first")
            self.world_size = torch.distributed.get_world_size(process_group)
        if self.micro_batches * self.world_size < 2:
            raise ValueError("`micro_batches` must be >= 2 without `distributed` (one batch per step gives "
                             "only one batch size); got micro_batches=1")
        self.monitor = monitor
        if monitor is not None:
            design = monitor.design
            ratio = self.micro_batches * self.world_size
            if design.b_big != ratio * design.b_small:
                raise ValueError(
                    f"`monitor` must have b_big = {ratio} * b_small ({self.micro_batches} micro-batch(es)"
                    f"{f' x {self.world_size} ranks' if self.distributed else ''}); got b_small="
                    f"{design.b_small}, b_big={design.b_big}")
        self._params = [p for p in module.parameters() if p.requires_grad]
        if not self._params:
            raise ValueError("`module` must have at least one parameter that requires a gradient; got none")
        self._small: torch.Tensor | None = None
        self._passes = 0
        self._paused = False
        self.last: tuple[float, float] | None = None
        first = self._params[0]
        self._handles = [p.register_hook(self._collector(p is first)) for p in self._params]

    def _collector(self, counts: bool):
        def collect(g: torch.Tensor) -> None:
            if self._paused:
                return
            sq = torch.linalg.vector_norm(g, dtype=torch.float64) ** 2
            self._small = sq if self._small is None else self._small + sq.to(self._small.device)
            if counts:
                self._passes += 1
        return collect

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """A context manager in which backward passes are not collected."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def step(self, *, grad_scale: float = 1.0) -> tuple[float, float]:
        """The pair (Y_s, Y_b) of this step, fed to the monitor; call it before ``optimizer.step()``.

        Raises ValueError, before feeding anything, unless exactly
        ``micro_batches`` backward passes reached the parameters since the
        last step.
        """
        if self._passes != self.micro_batches or self._small is None:
            passes, self._passes, self._small = self._passes, 0, None
            raise ValueError(
                f"NoiseScaleHook.step needs exactly micro_batches={self.micro_batches} backward passes "
                f"since the last step; got {passes}: call step() once per optimizer step, after the "
                "step's backward passes (and zero the gradients after each optimizer step)")
        big = sum(torch.linalg.vector_norm(p.grad, dtype=torch.float64).to(self._small.device) ** 2
                  for p in self._params if p.grad is not None)
        pair = torch.stack([self._small * self.micro_batches, torch.as_tensor(big, dtype=torch.float64,
                                                                               device=self._small.device)])
        if self.distributed:
            torch.distributed.all_reduce(pair[:1], group=self.process_group)
            pair[0] /= self.world_size
        small, big_norm2 = (v / (grad_scale * grad_scale) for v in pair.tolist())
        self._passes, self._small = 0, None
        self.last = (small, big_norm2)
        if self.monitor is not None:
            self.monitor.update(small, big_norm2)
        return self.last

    def remove(self) -> None:
        """Remove the hooks from the parameters."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __repr__(self) -> str:
        dist = f", distributed over {self.world_size} ranks" if self.distributed else ""
        return f"NoiseScaleHook(micro_batches={self.micro_batches}{dist}, {len(self._params)} parameters)"
