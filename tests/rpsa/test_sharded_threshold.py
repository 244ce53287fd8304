"""The frozen-ratio threshold of a Fisher split across ranks (FSDP's dim-0 shards) equals the one-process
threshold: exact path, sampled path (the same global picks) and ratio 1. Two gloo processes on the CPU."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from safetax.rpsa.masking import fisher_threshold, sharded_fisher_threshold

RATIOS = (0.0, 0.1, 0.37, 0.5, 0.9, 1.0)


def _fisher() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    f = {"a": torch.rand(7, 5, generator=gen), "b": torch.rand(1, 3, generator=gen),  # b: rank 1 holds no row
         "c": torch.zeros(4, 4), "d": torch.rand(9, generator=gen)}
    f["a"][f["a"] < 0.3] = 0  # zero entries are never counted
    return f


def _shard(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s dim-0 chunk, as FSDP2 shards (torch.chunk; a rank past the last chunk holds none)."""
    chunks = torch.chunk(t, world, dim=0)
    return chunks[rank] if rank < len(chunks) else t[:0]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    shards = {n: _shard(t, rank, world) for n, t in _fisher().items()}
    got = [sharded_fisher_threshold(shards, r) for r in RATIOS]
    got += [sharded_fisher_threshold(shards, r, sample_size=20, seed=s) for r in RATIOS for s in (0, 1)]
    torch.save(got, f"{out}/rank-{rank}.pt")
    dist.destroy_process_group()


def test_sharded_threshold_equals_the_one_process_threshold(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(tmp_path)), nprocs=2)
    f = _fisher()
    want = [fisher_threshold(f, r) for r in RATIOS]
    want += [fisher_threshold(f, r, sample_size=20, seed=s) for r in RATIOS for s in (0, 1)]  # 20 < the 35 non-zero: sampled
    assert want[0] == math.inf and want[1] > want[2] > want[4]  # freezing more lowers the threshold
    for rank in (0, 1):
        assert torch.load(tmp_path / f"rank-{rank}.pt") == want
