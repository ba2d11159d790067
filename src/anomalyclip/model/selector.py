"""Text-driven directions in the re-centred CLIP space, and MIL segment selection (METHOD §4, §7)."""

from __future__ import annotations

import torch
from torch import nn

from anomalyclip.model.class_space import drop_normal


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: every process's rows feed
    the statistics, so every process's loss reaches every process's rows."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        out = t.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class Selector(nn.Module):
    """Scalar projections of re-centred frames on the K abnormal-class directions, batch-normed.

    `synchronised = True` (data-parallel training) takes the training batch's statistics over the
    frames of every process, as one process over the whole batch would (torch's SyncBatchNorm does
    the same on GPUs only; this works on any backend, gloo on CPU included)."""

    def __init__(self, num_abnormal: int, normal_id: int):
        super().__init__()
        self.normal_id = normal_id
        self.bn = nn.BatchNorm1d(num_abnormal, affine=False, eps=1e-5, momentum=0.1)
        self.synchronised = False

    def directions(self, text_features: torch.Tensor, centroid: torch.Tensor) -> torch.Tensor:
        d = drop_normal(text_features, self.normal_id) - centroid  # (K, D)
        return d / d.norm(dim=-1, keepdim=True)

    def forward(self, centred: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """`centred (N, D)`, `directions (K, D)` -> similarity `S (N, K)`."""
        s = centred @ directions.T
        if self.training and self.synchronised and _world() > 1:
            return self._synchronised_bn(s)
        return self.bn(s)

    def _synchronised_bn(self, s: torch.Tensor) -> torch.Tensor:
        """BatchNorm's training step with the mean and variance of all processes' rows, through
        differentiable all-reduces (two passes, as BatchNorm computes the variance)."""
        all_reduce = _SumOverProcesses.apply
        bn = self.bn
        n = all_reduce(torch.tensor([float(s.shape[0])], device=s.device, dtype=s.dtype))
        mean = all_reduce(s.sum(dim=0)) / n  # (K,)
        var = all_reduce(((s - mean) ** 2).sum(dim=0)) / n  # (K,), biased: used to normalise
        with torch.no_grad():
            bn.running_mean.mul_(1 - bn.momentum).add_(bn.momentum * mean)
            bn.running_var.mul_(1 - bn.momentum).add_(bn.momentum * var * n / (n - 1))
            bn.num_batches_tracked += 1
        return (s - mean) / torch.sqrt(var + bn.eps)


def select_k(values: torch.Tensor, keep: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    """Indices `(B, k)` of the k largest (or smallest) of `values (B, n)` among kept entries.

    Dropped entries are pushed to -1e6 (top-k) or +1e6 (bottom-k) as the reference does, so they
    are only chosen when fewer than k entries are kept.
    """
    fill = torch.full_like(values, -1e6 if largest else 1e6)
    return torch.where(keep, values, fill).topk(k, dim=1, largest=largest).indices


def gather_segments(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of the selected segments: `x (B, n, l, F)`, `idx (B, k)` -> `(B, k, l, F)`."""
    b, _, l, f = x.shape
    return x.gather(1, idx[:, :, None, None].expand(b, idx.shape[1], l, f))
