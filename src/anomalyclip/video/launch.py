"""`--devices G` on one machine: G processes started with torch.multiprocessing, each given the
environment torchrun would give it, so that each runs exactly as a torchrun rank does."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, Callable

from anomalyclip.errors import InputError
from anomalyclip.video.world import World

# once one process has ended badly, how long the others get to end by themselves (they meet at a
# last barrier, so they are normally done) before they are terminated
_GRACE_S = 10.0


def free_port() -> int:
    """A TCP port nobody listens on now, for the ranks' rendezvous on this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(index: int, size: int, port: int, fn: Callable[..., int], args: tuple) -> None:
    os.environ.update(World(index, size, index, size).launch_env("127.0.0.1", port))
    try:
        code = fn(*args)
    except InputError as e:  # one line, as the command line prints it
        print(f"error: {e}", file=sys.stderr)
        code = 2
    if code:
        sys.exit(code)


def run_local_ranks(size: int, fn: Callable[..., int], args: tuple[Any, ...]) -> int:
    """Run `fn(*args)` in `size` fresh processes (ranks 0..size-1 of this machine alone); the
    exit status is 0 when all return 0, else the first failing one's. A rank that raises
    stops the others (torch.multiprocessing terminates them) and its error is raised here."""
    import torch.multiprocessing as mp

    context = mp.start_processes(_rank, args=(size, free_port(), fn, args), nprocs=size, join=False, start_method="spawn")
    try:
        while not context.join(grace_period=_GRACE_S):
            pass
    except mp.ProcessExitedException as e:
        if e.exit_code is not None and e.exit_code > 0:
            return int(e.exit_code)
        print(f"error: process {e.error_index} was stopped ({e.signal_name or e.exit_code})", file=sys.stderr)
        return 1
    return 0
