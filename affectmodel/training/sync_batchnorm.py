"""BatchNorm over the global batch (``--sync-bn``) without host synchronisation, on any backend.

torch's ``nn.SyncBatchNorm`` gathers every rank's statistics, then drops those of ranks with an
empty input with a boolean mask (``count_all[mask]``, ``mean_all[mask]``, ``invstd_all[mask]``): a
data-dependent shape, so the host waits for the GPU in each of ResNet-18's 20 BatchNorm layers,
every step. It also runs on CUDA only.

:class:`SyncBatchNormNoHostSync` computes the same statistics with one all_reduce of sums in the
forward pass and one in the backward pass (as torch's): each rank adds ``n``, ``n·mean`` and
``n·(var + mean²)`` (float64, so the difference of sums loses nothing), so a rank with an empty
input adds zeros and no filtering is needed. On CUDA the per-rank reductions and the
normalisation are torch's fused kernels (those ``nn.SyncBatchNorm`` uses); elsewhere plain tensor
operations, so gloo runs on CPU train with the same statistics (and tests can check them).
"""
from __future__ import annotations

from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

M = TypeVar("M", bound=nn.Module)


def _channel_shape(x: torch.Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


def _reduce_dims(x: torch.Tensor) -> list[int]:
    return [d for d in range(x.dim()) if d != 1]


class _GlobalBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                running_mean: torch.Tensor | None, running_var: torch.Tensor | None, eps: float,
                momentum: float | torch.Tensor, group: Any) -> torch.Tensor:
        if not (x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous()):
            x = x.contiguous()
        channels = x.shape[1]
        count = x.numel() // channels if channels else 0
        fused = x.is_cuda
        if count == 0:
            mean = torch.zeros(channels, dtype=torch.float32, device=x.device)
            var = torch.zeros_like(mean)
        elif fused:
            mean, invstd = torch.batch_norm_stats(x, eps)
            var = invstd.reciprocal().square() - eps
        else:
            var, mean = torch.var_mean(x.float(), dim=_reduce_dims(x), correction=0)
        m = mean.double()
        sums = torch.cat([m * count, (var.double() + m * m) * count,
                          torch.full((1,), float(count), dtype=torch.float64, device=x.device)])
        dist.all_reduce(sums, group=group)
        total = sums[-1:]
        n = total.clamp(min=1)
        global_mean = sums[:channels] / n
        global_var = (sums[channels:2 * channels] / n - global_mean * global_mean).clamp(min=0)
        if running_mean is not None and running_var is not None:
            unbiased = global_var * (n / (n - 1).clamp(min=1))
            running_mean.mul_(1 - momentum).add_(momentum * global_mean.to(running_mean.dtype))
            running_var.mul_(1 - momentum).add_(momentum * unbiased.to(running_var.dtype))
        mean = global_mean.float()
        invstd = (global_var + eps).rsqrt().float()
        if fused:
            out = torch.batch_norm_elemt(x, weight, bias, mean, invstd, eps) if count else torch.empty_like(x)
        else:
            shape = _channel_shape(x)
            y = (x.float() - mean.view(shape)) * invstd.view(shape)
            if weight is not None:
                y = y * weight.float().view(shape)
            if bias is not None:
                y = y + bias.float().view(shape)
            out = y.to(x.dtype)
        ctx.save_for_backward(x, weight, mean, invstd, total.to(torch.int32))
        ctx.group = group
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        x, weight, mean, invstd, total = ctx.saved_tensors
        if not (grad_out.is_contiguous(memory_format=torch.channels_last) or grad_out.is_contiguous()):
            grad_out = grad_out.contiguous()
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        channels = x.shape[1]
        grad_input = grad_weight = grad_bias = None
        if x.numel() == 0:
            sum_dy = sum_dy_xmu = torch.zeros(channels, dtype=torch.float32, device=x.device)
        elif x.is_cuda:
            sum_dy, sum_dy_xmu, grad_weight, grad_bias = torch.batch_norm_backward_reduce(
                grad_out, x, mean, invstd, weight, need_input, need_weight, need_bias)
        else:
            shape, dims = _channel_shape(x), _reduce_dims(x)
            g = grad_out.float()
            sum_dy = g.sum(dims)
            sum_dy_xmu = (g * (x.float() - mean.view(shape))).sum(dims)
            grad_weight = (sum_dy_xmu * invstd).to(weight.dtype) if weight is not None else None
            grad_bias = sum_dy.to(weight.dtype) if weight is not None else None
        if need_input:
            # the input's gradient needs the global sums; weight and bias keep their local ones
            # (DistributedDataParallel averages those, as for any parameter)
            combined = torch.cat([sum_dy, sum_dy_xmu])
            dist.all_reduce(combined, group=ctx.group)
            sum_dy, sum_dy_xmu = combined.split(channels)
            if x.numel() == 0:
                grad_input = torch.zeros_like(x)
            elif x.is_cuda:
                grad_input = torch.batch_norm_backward_elemt(grad_out, x, mean, invstd, weight, sum_dy, sum_dy_xmu,
                                                             total)
            else:
                shape = _channel_shape(x)
                n = total.to(torch.float32).clamp(min=1)
                scale = invstd.view(shape) * (weight.float().view(shape) if weight is not None else 1.0)
                xmu = x.float() - mean.view(shape)
                grad_input = ((grad_out.float() - (sum_dy / n).view(shape)
                               - xmu * (invstd * invstd * sum_dy_xmu / n).view(shape)) * scale).to(x.dtype)
        if not need_weight:
            grad_weight = None
        if not need_bias:
            grad_bias = None
        return grad_input, grad_weight, grad_bias, None, None, None, None, None


class SyncBatchNormNoHostSync(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training forward combines every rank's statistics by all_reduce, without a
    host sync and on any device; evaluation, and training without a process group, are plain
    BatchNorm (as ``nn.SyncBatchNorm``'s). Not a subclass of ``nn.SyncBatchNorm``, whose
    DistributedDataParallel check refuses CPU modules. Same parameters and buffers as the layer it
    replaces (:func:`convert_sync_batchnorm`)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: Any = None, **factory: Any):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, **factory)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        self._check_input_dim(input)
        momentum: float | torch.Tensor = 0.0 if self.momentum is None else self.momentum
        running_mean = running_var = None
        if self.track_running_stats:
            assert self.num_batches_tracked is not None
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative average, as a tensor (torch reads it back with .item())
                momentum = 1.0 / self.num_batches_tracked.double()
            running_mean, running_var = self.running_mean, self.running_var
        group = self.process_group or dist.group.WORLD
        return _GlobalBatchNorm.apply(input, self.weight, self.bias, running_mean, running_var, self.eps, momentum,
                                      group)


def convert_sync_batchnorm(module: M, process_group: Any = None) -> M:
    """``module`` with every BatchNorm layer replaced by a :class:`SyncBatchNormNoHostSync` holding
    the same parameters and buffers (as ``nn.SyncBatchNorm.convert_sync_batchnorm`` does)."""
    converted: Any = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNormNoHostSync):
        converted = SyncBatchNormNoHostSync(module.num_features, module.eps, module.momentum, module.affine,
                                            module.track_running_stats, process_group)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean, converted.running_var = module.running_mean, module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.training = module.training
    for name, child in module.named_children():
        converted.add_module(name, convert_sync_batchnorm(child, process_group))
    return converted
