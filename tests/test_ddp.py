"""DDP on gloo with 2 CPU processes (torch.multiprocessing, the env that torchrun sets)."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, data, out, result_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from fastgan.train import Trainer
    from tests.gan_fixtures import tiny_config

    t = Trainer(tiny_config("fmnist-dcgan", data, out, steps=3, device="cpu"))
    res = t.run()
    torch.save({"G": t.G.state_dict(), "D": t.D.state_dict(), "ckpt": str(res.last_checkpoint)}, os.path.join(result_dir, f"r{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_gloo_stay_identical(tmp_path):
    from tests.gan_fixtures import write_fmnist_like

    data = write_fmnist_like(tmp_path / "idx")
    mp.start_processes(_worker, args=(2, _free_port(), str(data), str(tmp_path / "run"), str(tmp_path)), nprocs=2,
                       join=True, start_method="spawn")
    r0, r1 = torch.load(tmp_path / "r0.pt"), torch.load(tmp_path / "r1.pt")
    for name in ("G", "D"):
        for k in r0[name]:
            assert torch.equal(r0[name][k], r1[name][k]), f"{name}.{k} differs across ranks"
    assert r1["ckpt"] == "None"  # only rank 0 writes files
    from fastgan.train import load_checkpoint
    state = load_checkpoint(r0["ckpt"])
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # per-rank noise streams
