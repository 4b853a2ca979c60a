"""PyTorch models in lossvar's engines, and the gradient noise scale of a PyTorch training loop.

``import lossvar`` never imports torch; ``import lossvar.torch`` does (install
it with ``pip install "lossvar[torch]"``). The guide page is
docs/guide/pytorch.md.

- :class:`TorchProblem`: a ``torch.nn.Module`` and a per-example loss as a
  lossvar problem, so that :func:`lossvar.gradient_noise`,
  :func:`lossvar.gradient_variance`, :func:`lossvar.variance_study` and the
  other engines take it unchanged.
- :func:`parameter_layout`, :func:`flatten_params`, :func:`load_params`: the
  flat parameter vector and the module's own tensors.
- :func:`dataset_arrays`: a ``torch.utils.data.Dataset`` of (x, y) pairs as a
  :class:`lossvar.Dataset`.
- :class:`NoiseScaleHook`: the squared gradient norms of a training loop with
  gradient accumulation (or data parallelism) fed to a
  :class:`lossvar.GradientNoiseMonitor`.
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError('lossvar.torch needs PyTorch: pip install "lossvar[torch]"') from exc

from .monitor import NoiseScaleHook
from .params import ParameterSlot, dataset_arrays, flatten_params, load_params, parameter_layout
from .problem import TorchProblem

__all__ = ["NoiseScaleHook", "ParameterSlot", "TorchProblem", "dataset_arrays", "flatten_params",
           "load_params", "parameter_layout"]
