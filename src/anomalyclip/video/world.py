"""Who this process is in a job spread over processes and machines, and where the processes meet.

torchrun (alone, or started on each node by Slurm) tells every process its place through the
environment: RANK and WORLD_SIZE over all nodes, LOCAL_RANK and LOCAL_WORLD_SIZE on this node,
MASTER_ADDR and MASTER_PORT for the process group (`init_method="env://"`). `--devices G` on one
machine gives each of its G processes the same variables (`World.launch_env`), so the rest of
the job cannot tell the two apart.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, Mapping

from anomalyclip.errors import InputError

_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class World:
    """This process's place: `rank` of `size` over all nodes, `local_rank` of `local_size` here."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> World | None:
        """The place torchrun gave this process, or None when no launcher started it."""
        env = os.environ if environ is None else environ
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return None
        values = {}
        for name in _VARIABLES:
            text = env.get(name, env["RANK"] if name == "LOCAL_RANK" else env["WORLD_SIZE"])
            try:
                values[name] = int(text)
            except ValueError:
                raise InputError(f"environment variable {name}={text!r} is not a whole number") from None
        world = cls(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"])
        if not (0 <= world.rank < world.size and 0 <= world.local_rank < world.local_size <= world.size):
            raise InputError(f"inconsistent launcher environment: {', '.join(f'{k}={env.get(k)}' for k in _VARIABLES)}")
        return world

    def launch_env(self, master_addr: str, master_port: int) -> dict[str, str]:
        """The variables torchrun would set for this place (for processes started on one machine)."""
        return {
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.size),
            "LOCAL_RANK": str(self.local_rank),
            "LOCAL_WORLD_SIZE": str(self.local_size),
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": str(master_port),
        }

    def device(self, kind: str):
        """`cuda:LOCAL_RANK` for CUDA (one GPU per process on each node), else the CPU."""
        import torch

        if kind != "cuda":
            return torch.device("cpu")
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise InputError(
                f"process {self.rank} has local rank {self.local_rank}, but only {count} CUDA GPU(s) are visible "
                "on its node (start at most one process per GPU, or use --device cpu)"
            )
        return torch.device("cuda", self.local_rank)


class Group:
    """The ranks' meeting points. Alone (size 1) there is nobody to meet and each call returns
    at once."""

    def __init__(self, world: World, device=None):
        self.world = world
        self.device = device

    @property
    def joined(self) -> bool:
        return self.world.size > 1

    def barrier(self) -> None:
        if not self.joined:
            return
        import torch.distributed as dist

        if self.device is not None and self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj` (picklable), in rank order; also a barrier."""
        if not self.joined:
            return [obj]
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world.size
        dist.all_gather_object(parts, obj)
        return parts

    @contextmanager
    def rank_zero_first(self) -> Iterator[None]:
        """Rank 0 runs the block before the others (one download into a shared cache)."""
        if self.world.rank != 0:
            self.barrier()
        yield
        if self.world.rank == 0:
            self.barrier()


@contextmanager
def process_group(world: World, device, timeout: timedelta) -> Iterator[Group]:
    """The torch.distributed group of all ranks (gloo on the CPU, nccl on CUDA), from the
    launcher's environment; none for a single process."""
    if world.size == 1:
        yield Group(world, device)
        return
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, init_method="env://", rank=world.rank, world_size=world.size, timeout=timeout)
    try:
        yield Group(world, device)
    finally:
        dist.destroy_process_group()
