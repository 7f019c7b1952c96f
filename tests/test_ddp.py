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


ACCUM = dict(steps=3, resolution=8, max_ch=8, batch_size=16, r1_every=2, pl_every=2, ckpt_every=100,
             sample_every=100, device="cpu")


def _accum_worker(rank, world, port, data, out, result_dir, batch_gpu):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from fastgan.train import Trainer
    from tests.gan_fixtures import split_independent_randomness, tiny_config

    split_independent_randomness()
    t = Trainer(tiny_config("stylegan2-256", data, out, batch_gpu=batch_gpu, **ACCUM))
    assert (t.batch_rank, t.n_micro) == (8, 2)
    t.run()
    grads = {f"{n}.{k}": p.grad for n in ("G", "D") for k, p in getattr(t, n).named_parameters()}
    torch.save({"G": t.G.state_dict(), "D": t.D.state_dict(), "pl_mean": t.pl.pl_mean, "grads": grads},
               os.path.join(result_dir, f"acc{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_with_accumulation_equal_one_big_batch(tmp_path):
    """2 gloo ranks x 2 micro-batches of 4 (global batch 16) with R1, path length and style
    mixing == one process with batch 16 and no accumulation: the ranks' strided shares of the
    data and the strided micro-batches keep D's minibatch-stddev groups; gradients are
    averaged once per step; pl_mean follows the mean over ranks."""
    from fastgan.train import Trainer
    from tests.gan_fixtures import split_independent_randomness, tiny_config, write_fmnist_like

    data = write_fmnist_like(tmp_path / "idx")
    mp.start_processes(_accum_worker, args=(2, _free_port(), str(data), str(tmp_path / "ddp"), str(tmp_path), 4),
                       nprocs=2, join=True, start_method="spawn")
    r0, r1 = torch.load(tmp_path / "acc0.pt"), torch.load(tmp_path / "acc1.pt")
    mp_patch = pytest.MonkeyPatch()
    try:
        split_independent_randomness(mp_patch.setattr)
        one = Trainer(tiny_config("stylegan2-256", data, tmp_path / "one", **ACCUM))
        assert (one.batch_rank, one.n_micro) == (16, 1)
        one.run()
    finally:
        mp_patch.undo()
    for name in ("G", "D"):
        ref = getattr(one, name).state_dict()
        for k in ref:
            assert torch.equal(r0[name][k], r1[name][k]), f"{name}.{k} differs across ranks"
            torch.testing.assert_close(r0[name][k], ref[k], rtol=1e-4, atol=1e-5, msg=f"{name}.{k}")
    torch.testing.assert_close(r0["pl_mean"], one.pl.pl_mean, rtol=1e-5, atol=1e-7)
    # the last step's gradients, averaged once over the ranks (Adam would hide a scale error)
    for n in ("G", "D"):
        for k, p in getattr(one, n).named_parameters():
            g = r0["grads"][f"{n}.{k}"]
            if p.grad is None:  # G's noise strengths (noise off): None here, zeros after the all-reduce
                assert g is None or not g.any(), f"{n}.{k}"
            else:
                torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6, msg=f"{n}.{k}")
    assert float(one.pl.pl_mean) > 0
