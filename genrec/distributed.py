"""Running a stage on several processes with torch.distributed (docs/method.md §4, §5).

A stage whose ``processes`` param is above 1 starts itself again through torch's own
launcher (``torch.distributed.run``, i.e. ``torchrun --standalone``) with that many
processes on this machine. Started by ``torchrun`` directly (several machines, a
rendezvous endpoint), it joins the group it is given and relaunches nothing. Inside, each
process is one rank of a ``Group``: gloo on the CPU, NCCL with one GPU per process on CUDA.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from genrec.errors import UserError


def launched() -> bool:
    """True inside a process that torchrun started (it sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _gpus(count: int) -> str:
    return f"{count} GPU{'' if count == 1 else 's'}"


def relaunch(module: str, processes: int, device: torch.device, label: str) -> None:
    """With ``processes`` > 1 and outside torchrun: run ``python -m module`` with this process's
    arguments again as ``processes`` processes of one group on this machine, and exit with the
    launcher's status. Otherwise return and let the caller go on as it is. ``label`` names the
    param in messages (e.g. ``train.processes``)."""
    if processes <= 1 or launched():
        return
    if device.type == "cuda" and processes > (gpus := torch.cuda.device_count()):  # NCCL: one process per GPU
        raise UserError(f"params.yaml: {label} is {processes}, but this machine has {_gpus(gpus)} and on CUDA "
                        f"each process needs one of its own: set it to at most {gpus}, or the device to cpu "
                        "for gloo processes")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", module, *sys.argv[1:]]
    # The launcher prefixes nothing and forwards every rank's output; OMP threads are split by hand.
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads_per_process(processes)))}
    raise SystemExit(subprocess.call(command, env=env))


def threads_per_process(processes: int) -> int:
    return max(1, (os.cpu_count() or 1) // processes)


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Rank 0: the one process that validates, logs and writes outputs."""
        return self.rank == 0

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank."""
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.broadcast(tensor, src=0)
        return tensor.tolist()

    def sum(self, values: list[float]) -> list[float]:
        """The sum over ranks of each value, on every rank."""
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, array: np.ndarray) -> np.ndarray:
        """Every rank's ``array`` concatenated in rank order (along the first axis), on every rank."""
        if self.world == 1:
            return array
        parts: list = [None] * self.world
        dist.all_gather_object(parts, array)
        return np.concatenate(parts)

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` rows: equal parts, the first ``n % world`` ranks one more."""
        size, extra = divmod(n, self.world)
        start = self.rank * size + min(self.rank, extra)
        return slice(start, start + size + (self.rank < extra))

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


SINGLE = Group()


def start(device: torch.device) -> Group:
    """This process's ``Group``: the one-process group outside torchrun; inside, the process group
    torchrun set up (gloo on the CPU, NCCL on CUDA with GPU ``LOCAL_RANK``)."""
    if not launched():
        return Group(device=device)
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if local_rank >= (gpus := torch.cuda.device_count()):
            raise UserError(f"torchrun started process {local_rank} on this machine, which has {_gpus(gpus)}: "
                            "on CUDA each process needs one of its own; start at most that many per machine "
                            "(--nproc-per-node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Group(dist.get_rank(), dist.get_world_size(), device)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
