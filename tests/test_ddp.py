"""`--devices N` trains data-parallel with the selector's BatchNorm synchronised across processes
(the authors' DDP config sets `sync_batchnorm: True`): one step of 2 processes (gloo, CPU) over a
batch split in two equals one process over the whole batch with its BatchNorm on all of it.
`train` sets `selector.synchronised` when `--devices` > 1 (tests/test_training.py)."""

import datetime
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from anomalyclip.config import LossConfig
from anomalyclip.losses import training_losses
from anomalyclip.model.anomalyclip import AnomalyCLIP
from conftest import tiny_model_config

N, L, D, NORMAL = 8, 4, 48, 3
B = 8  # 4 abnormal + 4 normal videos; each process gets 2 + 2


def model() -> AnomalyCLIP:
    torch.manual_seed(0)
    m = AnomalyCLIP(tiny_model_config(num_segments=N, seg_length=L, feature_dim=D))
    with torch.no_grad():
        m.centroid.normal_(0, 0.3)
    return m.train()


def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, N * L, D, generator=g) + 0.5 * torch.randn(1, 1, D, generator=g)
    y = torch.tensor([0, 4, 1, 2] + [NORMAL] * 4)
    keep = torch.rand(B, N, generator=g) < 0.6
    keep[:, :3] = True
    return x, y, keep


def part(t: torch.Tensor, rank: int) -> torch.Tensor:
    """A process's share: its abnormal quarter, then its normal quarter (abnormal half first)."""
    q = B // 4
    return torch.cat([t[rank * q : (rank + 1) * q], t[B // 2 + rank * q : B // 2 + (rank + 1) * q]])


def _one_process_step(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))
    torch.set_num_threads(1)
    m = model()
    m.selector.synchronised = True  # what `train --devices N` sets
    ddp = torch.nn.parallel.DistributedDataParallel(m)
    x, y, keep = batch()
    o = ddp(part(x, rank))
    terms = training_losses(o, part(y, rank), NORMAL, LossConfig(), N, keep=part(keep, rank))
    terms["loss"].backward()  # DDP averages the gradients over the processes
    loss = terms["loss"].detach().clone()
    dist.all_reduce(loss)
    dist.barrier()
    if rank == 0:
        bn = m.selector.bn
        torch.save({"loss": loss / world, "grads": {n: p.grad for n, p in m.named_parameters() if p.grad is not None},
                    "running": (bn.running_mean.clone(), bn.running_var.clone())}, out)
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_over_the_whole_batch(tmp_path):
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_one_process_step, args=(2, _free_port(), out), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)

    # One process: BatchNorm statistics over all 8 videos; the loss is each process's loss
    # averaged, as DDP's gradient averaging makes it.
    m = model()
    x, y, keep = batch()
    order = torch.cat([part(torch.arange(B), 0), part(torch.arange(B), 1)])
    o = m(x[order])  # (8, n*l, K): the two shares one after the other
    share = B // 2
    losses = []
    for r in range(2):
        rows = slice(r * share, (r + 1) * share)
        sub = type(o)(similarity=o.similarity[rows], scores=o.scores[rows])
        losses.append(training_losses(sub, part(y, r), NORMAL, LossConfig(), N, keep=part(keep, r))["loss"])
    loss = (losses[0] + losses[1]) / 2
    loss.backward()

    torch.testing.assert_close(got["loss"], loss.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got["running"][0], m.selector.bn.running_mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got["running"][1], m.selector.bn.running_var, atol=1e-6, rtol=1e-5)
    grads = {n: p.grad for n, p in m.named_parameters() if p.grad is not None}
    assert grads.keys() == got["grads"].keys() and len(grads) > 5
    for name, g in grads.items():
        assert g.abs().sum() > 0, name
        torch.testing.assert_close(got["grads"][name], g, atol=1e-6, rtol=1e-4, msg=name)


def test_one_process_is_not_changed_by_the_switch():
    """Outside a process group the synchronised selector is the plain BatchNorm."""
    a, b = model(), model()
    b.selector.synchronised = True
    x, _, _ = batch()
    torch.testing.assert_close(a(x).similarity, b(x).similarity, atol=0, rtol=0)
    torch.testing.assert_close(a.selector.bn.running_var, b.selector.bn.running_var, atol=0, rtol=0)
