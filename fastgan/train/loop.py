"""The training loop: alternating D and G steps, EMA of G, checkpoints, logging."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .. import losses
from .._backend import use_layers
from ..models.stylegan2 import mix_styles
from ..data.stream import BatchStream, DataSource, open_source, to_device
from . import checkpoint as ck
from .build import build_models
from .config import RESUME_FREE_KEYS, TrainConfig
from .dist import (DistInfo, any_flag, average_buffers, average_gradients, average_scalar, broadcast_module,
                   gather_objects, init_distributed)
from .images import generation_batch, make_grid, save_grid


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite (the run stops; the last good checkpoint stays)."""


@dataclass
class TrainResult:
    step: int
    status: str  # "finished" | "interrupted"
    out: Path
    last_checkpoint: Optional[Path]
    losses: dict
    signal: int = 0


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters()):
            pe.lerp_(p.detach().to(pe.dtype), 1.0 - beta)
        for be, b in zip(ema.buffers(), model.buffers()):
            be.copy_(b)


def style_mixing_cutoffs(n: int, num_ws: int, prob: float, device=None) -> torch.Tensor:
    """StyleGAN2's style-mixing policy, one draw per sample: with probability ``prob`` a
    cutoff uniform in ``1 .. num_ws - 1`` (layers from the cutoff on take the second latent's
    styles, see :func:`fastgan.models.stylegan2.mix_styles`), else ``num_ws`` (no mixing).
    StyleGAN2-ADA draws one cutoff per batch; per sample, a batch's mixing does not depend on
    how it is split into micro-batches or ranks."""
    cutoff = torch.randint(1, num_ws, (n,), device=device)
    mixed = torch.rand(n, device=device) < prob
    return torch.where(mixed, cutoff, torch.full_like(cutoff, num_ws))


def _set_requires_grad(m: torch.nn.Module, flag: bool) -> None:
    for p in m.parameters():
        p.requires_grad_(flag)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: Optional[str] = None, source: Optional[DataSource] = None,
                 dist_info: Optional[DistInfo] = None) -> None:
        self.cfg = cfg.validate()
        self._bar, self._log_fh, self._tb = None, None, None
        self.info = dist_info or init_distributed(cfg.device)
        self.device = self.info.device
        self.batch_rank, self.n_micro = self._split_batch()
        self.out = Path(cfg.out)
        self.ckpt_dir = self.out / "checkpoints"
        self.source = source if source is not None else open_source(cfg.data, cfg.data_format, cfg.resolution, cfg.strict)
        if self.source.channels != cfg.img_channels:
            raise ValueError(f"img_channels: the model makes {cfg.img_channels}-channel images but "
                             f"{self.source.description} has {self.source.channels}")
        self.conditional = cfg.model == "cgan"
        self.num_classes = self.source.num_classes if self.conditional else 0
        if self.conditional and cfg.num_classes > 0:
            if cfg.num_classes < self.source.num_classes:
                raise ValueError(f"num_classes: {cfg.num_classes} but the dataset has {self.source.num_classes} classes")
            self.num_classes = cfg.num_classes
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
            torch.backends.cudnn.allow_tf32 = cfg.tf32
            torch.backends.cudnn.benchmark = True
        # identical initial weights on every rank; per-rank noise afterwards
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        G, D = build_models(cfg, self.num_classes)
        mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.G, self.D = G.to(self.device, memory_format=mf), D.to(self.device, memory_format=mf)
        self.G_ema = copy.deepcopy(self.G).eval()
        _set_requires_grad(self.G_ema, False)
        broadcast_module(self.G, self.info)
        broadcast_module(self.D, self.info)
        broadcast_module(self.G_ema, self.info)
        # StyleGAN2's regularizers of G: lazy path length (G's Adam gets the lazy lr and betas,
        # as D's for R1) and style mixing; pl_mean is checkpointed
        self.pl = losses.PathLengthPenalty(cfg.pl_weight, cfg.pl_decay) if cfg.pl_weight > 0 else None
        self.opt_g = self._optimizer(self.G, cfg.lr_g, cfg.pl_every if self.pl is not None else 0)
        self.opt_d = self._optimizer(self.D, cfg.lr_d, cfg.r1_every if cfg.r1_gamma > 0 else 0)
        fp16 = cfg.precision == "fp16"
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        self.G_fwd = torch.compile(self.G) if cfg.compile else self.G
        # StyleGAN2 runs mapping and synthesis apart (style mixing, path length, one w_avg
        # update per step)
        self.styled = cfg.model == "stylegan2"
        if self.styled:
            self.G_map = torch.compile(self.G.mapping) if cfg.compile else self.G.mapping
            self.G_syn = torch.compile(self.G.synthesis) if cfg.compile else self.G.synthesis
        self.D_fwd = torch.compile(self.D) if cfg.compile else self.D
        self.step, self.batches, self.skipped = 0, 0, 0
        self._w_sum = None
        torch.manual_seed(cfg.seed * 1000 + 1 + self.info.rank)
        random.seed(cfg.seed * 1000 + 1 + self.info.rank)
        self.resumed_from = None
        self._resumed_best = None
        if resume is not None:
            path = ck.resolve_resume(resume, self.ckpt_dir)
            if path is not None:
                self._load(path)
                self.resumed_from = path
        gen = torch.Generator().manual_seed(cfg.seed + 12345)
        self.fixed_z = torch.randn(cfg.sample_n, cfg.z_dim, generator=gen).to(self.device)
        self.fixed_labels = (torch.arange(cfg.sample_n) % self.num_classes).to(self.device) if self.conditional else None
        self.stream = BatchStream(self.source, self.batch_rank, cfg.seed, self.info.rank, self.info.world,
                                  cfg.num_workers, pin_memory=self.device.type == "cuda", mirror=cfg.mirror)
        self._stop_signal = 0
        self.evaluator = None
        if cfg.metrics:
            from .evaluation import TrainingEvaluator
            self.evaluator = TrainingEvaluator(self)
            self.evaluator.best = self._resumed_best

    # ---- setup ----------------------------------------------------------------------------
    def _split_batch(self) -> tuple[int, int]:
        """(this process's batch, micro-batches per step): batch_size over the processes,
        then over micro-batches of batch_gpu samples (gradient accumulation)."""
        cfg, world = self.cfg, self.info.world
        if cfg.batch_size % world:
            raise ValueError(f"batch_size: the global batch {cfg.batch_size} does not split evenly over "
                             f"{world} processes")
        per = cfg.batch_size // world
        micro = cfg.batch_gpu or per
        if per % micro:
            raise ValueError(f"batch_gpu: {micro} does not divide the per-process batch {per} "
                             f"(batch_size {cfg.batch_size} over {world} processes)")
        if cfg.pl_weight > 0 and per // cfg.pl_batch_shrink < 1:
            raise ValueError(f"pl_batch_shrink: {cfg.pl_batch_shrink} leaves no sample of the per-process batch {per} "
                             f"(batch_size {cfg.batch_size} over {world} processes) for the path-length penalty")
        if cfg.pl_weight > 0 and per // micro > 1 and micro % cfg.pl_batch_shrink:
            raise ValueError(f"pl_batch_shrink: {cfg.pl_batch_shrink} does not divide batch_gpu {micro} "
                             "(the path-length penalty runs over the micro-batches too)")
        return per, per // micro

    def _optimizer(self, m: torch.nn.Module, lr: float, lazy_interval: int = 0) -> torch.optim.Optimizer:
        if self.cfg.optimizer == "rmsprop":
            return torch.optim.RMSprop(m.parameters(), lr=lr)
        # lazy regularization (StyleGAN2): lr * c and betas ** c with c = k / (k + 1)
        lr, betas = losses.lazy_adam_params(lr, (self.cfg.beta1, self.cfg.beta2), lazy_interval)
        params = list(m.parameters())
        # torch's fused Adam: one kernel over all parameters instead of ~10 ops per tensor
        # (CPU: 0.15 ms vs 0.43 ms a step for the DCGAN G); the same update up to rounding
        fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) \
            and len({p.device for p in params}) == 1
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused or None)

    def _state(self) -> dict:
        rngs = gather_objects(ck.rng_state(), self.info)
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
            "step": self.step, "batches": self.batches, "skipped": self.skipped,
            "rng": rngs, "world_size": self.info.world, "config": self.cfg.to_dict(),
            "batch": "global",  # batch_size is split over the processes (before: per process)
            "dataset": self.source.fingerprint, "num_classes": self.num_classes,
            "best": dict(self.evaluator.best) if getattr(self, "evaluator", None) and self.evaluator.best else None,
            **({"pl": self.pl.state_dict()} if self.pl is not None else {}),
        }

    def _load(self, path: Path) -> None:
        state = ck.load_checkpoint(path)  # on the CPU: set_rng_state takes CPU tensors only
        # a key the checkpoint's config lacks (written before the key existed) had its default
        diffs = ck.config_mismatch(state["config"], self.cfg.to_dict(), RESUME_FREE_KEYS,
                                   defaults=TrainConfig().to_dict())
        if diffs:
            raise ck.CheckpointError(f"{path}: written by another config: " + "; ".join(diffs))
        if not self.source.matches(state.get("dataset")):
            raise ck.CheckpointError(f"{path}: trained on another dataset (fingerprint {state.get('dataset')}, "
                                     f"this run's {self.source.fingerprint}: {self.source.description})")
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            self.G_ema.load_state_dict(state["G_ema"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.scaler_g.load_state_dict(state["scaler_g"])
            self.scaler_d.load_state_dict(state["scaler_d"])
            if self.pl is not None and state.get("pl") is not None:
                self.pl.load_state_dict(state["pl"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise ck.CheckpointError(f"{path}: does not fit this model ({str(e).splitlines()[0]})") from e
        self.step, self.batches, self.skipped = int(state["step"]), int(state["batches"]), int(state.get("skipped", 0))
        if state.get("batch") != "global" and int(state.get("world_size", 1)) > 1:
            self._log(f"warning: {path} comes from a {state['world_size']}-process run of a version where "
                      f"batch_size was per process; it is now the global batch ({self.batch_rank} per process)")
        self._resumed_best = state.get("best")
        rngs = state.get("rng") or []
        if int(state.get("world_size", 1)) == self.info.world and len(rngs) > self.info.rank:
            ck.set_rng_state(rngs[self.info.rank])
        else:
            self._log(f"warning: checkpoint from {state.get('world_size')} processes, now {self.info.world}: "
                      "the run continues with fresh random streams (not bit-exact)")
            torch.manual_seed(self.cfg.seed * 1000 + 1 + self.info.rank + 7919 * self.step)

    # ---- output ---------------------------------------------------------------------------
    def _log(self, msg: str) -> None:
        if not self.info.is_main:
            return
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        if self._log_fh is not None:
            self._log_fh.write(line + "\n")
            self._log_fh.flush()
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, flush=True)

    def _open_outputs(self) -> None:
        self._bar = None
        if not self.info.is_main:
            return
        (self.out / "samples").mkdir(parents=True, exist_ok=True)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2) + "\n")
        self._log_fh = open(self.out / "log.txt", "a")
        self._metrics_fh = open(self.out / "metrics.jsonl", "a")
        if self.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(self.out / "tb"), purge_step=self.step if self.step else None)
            except Exception as e:  # noqa: BLE001 - tensorboard missing or broken
                self._tb = None
                self._log(f"TensorBoard disabled: {e}")
        if self.cfg.progress:
            try:
                from tqdm import tqdm
                self._bar = tqdm(total=self.cfg.steps, initial=self.step, dynamic_ncols=True, mininterval=1.0,
                                 unit="it", desc=self.cfg.model)
            except ImportError:
                self._bar = None

    def _close_outputs(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        for fh in (self._log_fh, getattr(self, "_metrics_fh", None)):
            if fh is not None:
                fh.close()
        self._log_fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, batch: Optional[int] = None) -> torch.Tensor:
        """G_ema's images (float32, on the CPU), ``batch`` at a time (default: by resolution,
        see :func:`fastgan.train.sample.generation_batch`)."""
        batch = batch or generation_batch(self.cfg.resolution)
        outs = []
        with use_layers(self.cfg.layers):
            for i in range(0, len(z), batch):
                img = self.G_ema(z[i:i + batch], labels[i:i + batch]) if labels is not None else self.G_ema(z[i:i + batch])
                outs.append(img.float().cpu())
        return torch.cat(outs)

    def _write_samples(self, name: Optional[str] = None) -> Optional[Path]:
        if not self.info.is_main:
            return None
        imgs = self.generate(self.fixed_z, self.fixed_labels)
        nrow = self.num_classes if self.conditional and self.num_classes <= 16 else None
        path = save_grid(imgs, self.out / "samples" / (name or f"step-{self.step:07d}.png"), nrow=nrow,
                         scale=2 if self.cfg.resolution <= 32 else 1)
        save_grid(imgs, self.out / "samples" / "latest.png", nrow=nrow, scale=2 if self.cfg.resolution <= 32 else 1)
        if self._tb is not None:
            self._tb.add_image("samples/G_ema", make_grid(imgs, nrow), self.step)
        return path

    def save(self) -> Optional[Path]:
        state = self._state()  # collective (RNG states of every rank)
        if not self.info.is_main:
            return None
        path = ck.save_checkpoint(state, self.ckpt_dir, self.step, self.cfg.keep_ckpts, (self.G, self.D, self.G_ema))
        if path is None:
            self._log(f"step {self.step}: non-finite weights, checkpoint NOT written (the last good one stays)")
        return path

    def _evaluate(self) -> None:
        """Every rank: compute cfg.metrics; rank 0 logs them; best.pt when the first improves."""
        values, secs = self.evaluator.evaluate(self.step)
        improved = any_flag(self.evaluator.improved(values, self.step), self.info)
        if self.info.is_main:
            row = {f"metric/{k}": v for k, v in values.items()}
            row.update(step=self.step, eval_seconds=secs, time=time.time())
            self._metrics_fh.write(json.dumps(row) + "\n")
            self._metrics_fh.flush()
            if self._tb is not None:
                for k, v in values.items():
                    self._tb.add_scalar(f"metrics/{k}", v, self.step)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if not k.endswith("_std"))
            self._log(f"step {self.step}: {shown} ({secs:.1f} s)")
        if improved:
            state = self._state()  # collective
            if self.info.is_main:
                path = ck.save_best(state, self.ckpt_dir, (self.G, self.D, self.G_ema))
                b = self.evaluator.best
                self._log(f"step {self.step}: best {b['metric']} {b['value']:.4g}, wrote {path}" if path else
                          f"step {self.step}: non-finite weights, best.pt NOT written")

    def _loss_curve(self) -> Optional[Path]:
        path = self.out / "metrics.jsonl"
        if not self.info.is_main or not path.is_file():
            return None
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not rows:
            return None
        merged: dict = {}
        for r in rows:  # a resumed run may repeat steps: keep the last; metric rows share steps
            merged.setdefault(r["step"], {}).update(r)
        rows = merged
        steps = sorted(rows)
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        for key, label in (("loss_d", "D loss"), ("loss_g", "G loss")):
            pts = [(s, rows[s][key]) for s in steps if key in rows[s]]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, linewidth=1)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(f"{self.cfg.model} ({self.cfg.loss} loss)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out = self.out / "loss.png"
        fig.savefig(out)
        plt.close(fig)
        return out

    # ---- the steps --------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def _all_finite(self, value: torch.Tensor) -> bool:
        """Whether ``value`` is finite on every process (one all-reduce under DDP): every rank
        then takes the same skip-or-stop decision and the ranks' collectives stay paired."""
        return not any_flag(not bool(torch.isfinite(value)), self.info)

    def _check(self, loss: torch.Tensor, name: str, finite: Optional[bool] = None) -> bool:
        if finite is None:
            finite = self._all_finite(loss)
        if finite:
            return True
        what = f"{name} loss is {loss.item()}" if not bool(torch.isfinite(loss)) else \
            f"{name} loss is non-finite on another process"
        if self.cfg.skip_nonfinite:
            self.skipped += 1
            self._log(f"step {self.step}: {what}, step skipped (--skip-nonfinite)")
            return False
        raise NonFiniteLossError(f"step {self.step}: {what}; stopping "
                                 f"(last good checkpoint kept in {self.ckpt_dir}; --skip-nonfinite skips such steps)")

    def _penalty_ok(self, value: torch.Tensor, name: str, net: str = "D") -> bool:
        """A gradient penalty computed through the fp16 loss scale can overflow: like
        GradScaler with an inf gradient, skip this D (or G) step and lower that net's scale.
        Otherwise a non-finite penalty is a non-finite loss (stop, or skip under
        --skip-nonfinite). Decided over all processes (:meth:`_all_finite`): the loss scales
        stay equal and no rank leaves the step while the others enter its all-reduces."""
        if self._all_finite(value):
            return True
        scaler = self.scaler_d if net == "D" else self.scaler_g
        if scaler.is_enabled():
            scale = float(scaler.get_scale())
            scaler.update(scale * scaler.get_backoff_factor())
            self.skipped += 1
            self._log(f"step {self.step}: fp16 overflow in the {name} at loss scale {scale:g}; "
                      f"{net} step skipped, scale lowered to {float(scaler.get_scale()):g}")
            return False
        return self._check(value, name, finite=False)

    def _opt_step(self, module, opt, scaler) -> None:
        average_gradients(module, self.info)
        if self.cfg.grad_clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.cfg.grad_clip)
        scaler.step(opt)
        scaler.update()

    # Gradient accumulation: a step's batch runs as self.n_micro micro-batches, each a strided
    # slice (samples j, j + k, j + 2k, ...). With the data stream's strided split over ranks
    # this makes D's minibatch-stddev groups (samples i, i + N/4, ... of the whole batch) the
    # same as one big batch's whenever the micro-batch holds a multiple of the group (4).
    # Every per-sample random draw (latents, mixing, path-length noise) is made for the whole
    # batch and sliced, so the split does not change them (G's per-pixel noise excepted).
    def _slices(self, n: int) -> list:
        k = self.n_micro
        return [slice(None)] if k == 1 else [slice(j, None, k) for j in range(k)]

    def _latents(self, n: int, pl: bool = False) -> dict:
        """This rank's per-sample random draws for one phase of n samples: z; with style
        mixing the second latent and the cutoffs; for the path-length penalty the images' noise."""
        cfg = self.cfg
        lat = {"z": torch.randn(n, cfg.z_dim, device=self.device)}
        if cfg.style_mixing > 0:
            lat["z2"] = torch.randn(n, cfg.z_dim, device=self.device)
            lat["cutoff"] = style_mixing_cutoffs(n, self.G.num_ws, cfg.style_mixing, self.device)
        if pl:
            lat["noise"] = torch.randn(n, cfg.img_channels, cfg.resolution, cfg.resolution, device=self.device)
        return lat

    def _ws(self, lat: dict, compiled: bool = True, track: bool = True) -> torch.Tensor:
        """StyleGAN2: the styles of latents ``lat`` (style-mixed when they carry a second
        latent). w_avg follows the (unmixed) ws of D's and G's main phases, updated once per
        phase with the whole batch's mean (:meth:`_update_w_avg`), not per micro-batch."""
        mapping = self.G_map if compiled else self.G.mapping
        w = mapping(lat["z"])
        if track:
            self._w_sum = w.detach().float().sum(0) + (self._w_sum if self._w_sum is not None else 0)
        if "z2" not in lat:
            return w
        return mix_styles(w, mapping(lat["z2"]), lat["cutoff"], self.G.num_ws)

    def _update_w_avg(self, n: int) -> None:
        if self.styled and self._w_sum is not None and self.G.training:
            self.G.mapping.update_avg(self._w_sum / n)
        self._w_sum = None

    def _fake(self, lat: dict, d_args: tuple) -> torch.Tensor:
        if self.styled:
            return self.G_syn(self._ws(lat))
        return self.G_fwd(lat["z"], *d_args)

    def _d_step(self, real: torch.Tensor, labels: Optional[torch.Tensor]) -> dict:
        cfg = self.cfg
        n, k = real.shape[0], self.n_micro
        lat = self._latents(n)
        self._w_sum = None
        _set_requires_grad(self.D, True)
        r1_due = cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0
        scaler = self.scaler_d if self.scaler_d.is_enabled() else None
        mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.opt_d.zero_grad(set_to_none=True)
        out: dict = {}
        for sl in self._slices(n):
            x = real if k == 1 else real[sl].contiguous(memory_format=mf)
            d_args = (labels[sl],) if self.conditional else ()
            with torch.no_grad(), self._autocast():
                fake = self._fake({key: v[sl] for key, v in lat.items()}, d_args)
            # The fakes' half of D's loss is backpropagated first, on its own (StyleGAN2-ADA's
            # Dgen phase): its graph is freed before D's forward on the reals (and R1's
            # double-backward graph) is built. The same gradients as one backward of the sum;
            # the peak memory of the step drops by D's activations for one batch.
            # (A non-finite loss is caught below, with the reals' half: one check, and the
            # gradients of a skipped step are never applied.)
            with self._autocast():
                loss_fake = losses.d_loss_fake(self.D_fwd(fake, *d_args), cfg.loss)
            self.scaler_d.scale(loss_fake / k if k > 1 else loss_fake).backward()
            r1 = None
            with self._autocast():
                if r1_due:
                    # the adversarial loss on reals and R1 share one forward pass of D
                    loss, r1 = losses.d_loss_with_r1(self.D_fwd, x, None, cfg.r1_gamma, cfg.loss,
                                                     d_args=d_args, scaler=scaler)
                else:
                    loss = losses.d_loss_real(self.D_fwd(x, *d_args), cfg.loss)
                gp = None
                if cfg.gp_weight > 0:
                    gp = losses.wgan_gp_penalty(self.D_fwd, x, fake.to(x.dtype), cfg.gp_weight, d_args=d_args,
                                                scaler=scaler)
            loss_d = loss + loss_fake.detach()
            if not self._check(loss_d, "D"):
                return {}
            parts = {"loss_d": loss_d}
            if gp is not None:
                if not self._penalty_ok(gp, "gradient penalty"):
                    return {}
                parts["gp"] = gp
                loss = loss + gp
            if r1 is not None:
                if not self._penalty_ok(r1, "R1"):
                    return {}
                parts["r1"] = r1
                loss = loss + r1 * cfg.r1_every  # lazy regularization: R1 every r1_every steps, scaled up
            # each micro-batch's losses are means over it: / k gives the whole batch's mean
            self.scaler_d.scale(loss / k if k > 1 else loss).backward()
            for key, v in parts.items():
                out[key] = out.get(key, 0) + v.detach() / k
        self._update_w_avg(n)
        self._opt_step(self.D, self.opt_d, self.scaler_d)
        if cfg.weight_clip > 0:
            with torch.no_grad():
                for p in self.D.parameters():
                    p.clamp_(-cfg.weight_clip, cfg.weight_clip)
        return out

    def _g_step(self, batch: int) -> dict:
        cfg = self.cfg
        k = self.n_micro
        lat = self._latents(batch)
        labels = torch.randint(0, self.num_classes, (batch,), device=self.device) if self.conditional else None
        self._w_sum = None
        self.opt_g.zero_grad(set_to_none=True)
        out: dict = {}
        _set_requires_grad(self.D, False)
        try:
            for sl in self._slices(batch):
                d_args = (labels[sl],) if self.conditional else ()
                with self._autocast():
                    loss = losses.g_loss(self.D_fwd(self._fake({key: v[sl] for key, v in lat.items()}, d_args), *d_args),
                                         cfg.loss)
                if not self._check(loss, "G"):
                    return {}
                self.scaler_g.scale(loss / k if k > 1 else loss).backward()
                out["loss_g"] = out.get("loss_g", 0) + loss.detach() / k
        finally:
            _set_requires_grad(self.D, True)
        if self.pl is not None and self.step % cfg.pl_every == 0:
            if not self._path_length(batch, out):
                return {}
        self._update_w_avg(batch)
        self._opt_step(self.G, self.opt_g, self.scaler_g)
        with torch.no_grad():
            average_buffers(self.G, self.info)
            average_buffers(self.D, self.info)
        beta = cfg.ema_beta
        if cfg.ema_kimg > 0:  # a half-life in images: 0.5 ** (images per step / half-life)
            beta = 0.5 ** (cfg.batch_size / (cfg.ema_kimg * 1000.0))  # batch_size: the global batch
        if cfg.ema_warmup:
            beta = min(beta, (1.0 + self.step) / (10.0 + self.step))
        ema_update(self.G_ema, self.G, beta)
        return out

    def _path_length(self, batch: int, out: dict) -> bool:
        """Lazy path-length regularization (StyleGAN2) on batch / pl_batch_shrink samples: its
        gradients, weighted by pl_every, join the G loss's before G's one optimizer step (a
        separate backward, as R1 joins D's loss). pl_mean then follows the mean path length
        over all micro-batches and ranks (one value on every rank; StyleGAN2-ADA keeps one
        per GPU). False when the step is skipped (fp16 overflow)."""
        cfg, k = self.cfg, self.n_micro
        n = batch // cfg.pl_batch_shrink
        lat = self._latents(n, pl=True)
        scaler = self.scaler_g if self.scaler_g.is_enabled() else None
        pen_sum, len_sum = 0, 0
        for sl in self._slices(n):
            part = {key: v[sl] for key, v in lat.items()}
            with self._autocast():
                # not compiled: the penalty differentiates G's gradient (double backward)
                lengths = self.pl.lengths(self.G, self._ws(part, compiled=False, track=False), part["noise"],
                                          scaler=scaler)
                pen = self.pl.penalty(lengths)
            if not self._penalty_ok(pen, "path-length penalty", "G"):
                return False
            self.scaler_g.scale(pen * (cfg.pl_every / k)).backward()
            pen_sum = pen_sum + pen.detach() / k
            len_sum = len_sum + lengths.detach().sum()
        self.pl.update(average_scalar(len_sum / n, self.info))
        out["pl"] = pen_sum
        out["pl_mean"] = self.pl.pl_mean.clone()
        return True

    def _schedule(self) -> None:
        """Models with a training schedule (progressive growing) follow the images seen."""
        kimg = self.step * self.cfg.batch_size / 1000.0
        for m in (self.G, self.D, self.G_ema):
            if hasattr(m, "set_progress"):
                m.set_progress(kimg, self.cfg.phase_kimg)

    # ---- run --------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self._stop_signal = signum

    def run(self) -> TrainResult:
        # the layer kit (fastgan or stock): one switch for every module, this thread only
        with use_layers(self.cfg.layers):
            return self._run()

    def _run(self) -> TrainResult:
        cfg = self.cfg
        self._open_outputs()
        if self.resumed_from is not None:
            self._log(f"resumed from {self.resumed_from} at step {self.step}")
        nparams = sum(p.numel() for p in self.G.parameters()), sum(p.numel() for p in self.D.parameters())
        self._log(f"{cfg.model} ({cfg.layers} layers) {cfg.resolution}px, G {nparams[0]:,} / D {nparams[1]:,} params, "
                  f"{self.source.description}, device {self.device}, {self.info.world} process(es), "
                  f"{cfg.steps} steps of batch {cfg.batch_size}"
                  + (f" ({self.batch_rank} per process)" if self.info.world > 1 else "")
                  + (f", {self.n_micro} micro-batches of {self.batch_rank // self.n_micro}" if self.n_micro > 1 else ""))
        old_handlers = {}
        import threading
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                old_handlers[s] = signal.signal(s, self._on_signal)
        batches = self.stream.iterate(self.batches)
        last_ckpt, status = None, "finished"
        sums: dict = {}
        t_log, imgs_log = time.perf_counter(), 0
        self.G.train()
        self.D.train()
        try:
            if self.step == 0 and self.info.is_main:
                self._write_samples()
            while self.step < cfg.steps:
                self._schedule()
                stats = {}
                for _ in range(cfg.n_critic):
                    x, y = next(batches)
                    self.batches += 1
                    real = to_device(x, self.device, cfg.resolution, cfg.channels_last)
                    labels = y.to(self.device) if (self.conditional and y is not None) else None
                    stats.update(self._d_step(real, labels))
                    imgs_log += real.shape[0] * self.info.world
                stats.update(self._g_step(self.batch_rank))
                self.step += 1
                for k, v in stats.items():
                    sums.setdefault(k, []).append(v)
                if self._bar is not None:
                    self._bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    dt = time.perf_counter() - t_log
                    row = {k: float(torch.stack(v).float().mean()) for k, v in sums.items()}
                    row.update(step=self.step, img_s=imgs_log / max(dt, 1e-9), time=time.time())
                    if self.info.is_main:
                        self._metrics_fh.write(json.dumps(row) + "\n")
                        self._metrics_fh.flush()
                        if self._bar is not None:
                            self._bar.set_postfix({"img/s": f"{row['img_s']:.0f}",
                                                   **{k: f"{row[k]:.3f}" for k in ("loss_d", "loss_g") if k in row}}, refresh=False)
                        if self._tb is not None:
                            for k, v in row.items():
                                if k not in ("step", "time"):
                                    self._tb.add_scalar(f"train/{k}", v, self.step)
                    self._last_row = row
                    sums, t_log, imgs_log = {}, time.perf_counter(), 0
                if self.step % cfg.sample_every == 0:
                    self._write_samples()
                if self.evaluator is not None and (self.step % cfg.metrics_every == 0 or self.step == cfg.steps):
                    self._evaluate()
                stop = any_flag(self._stop_signal != 0, self.info)
                if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps or stop:
                    last_ckpt = self.save() or last_ckpt
                if stop:
                    status = "interrupted"
                    self._log(f"signal {self._stop_signal or 'on another rank'}: checkpoint written at step {self.step}, exiting")
                    break
            if status == "finished" and self.info.is_main:
                self._write_samples("final.png")
                curve = self._loss_curve()
                self._log(f"done: {self.step} steps; samples in {self.out / 'samples'}, loss curve {curve}, "
                          f"checkpoint {last_ckpt}")
        finally:
            batches.close()  # the run's DataLoader and its worker processes end here, also on an error
            for s, h in old_handlers.items():
                signal.signal(s, h)
            self._close_outputs()
        return TrainResult(self.step, status, self.out, last_ckpt, getattr(self, "_last_row", {}), self._stop_signal)


def train(cfg: TrainConfig, resume: Optional[str] = None, source: Optional[DataSource] = None) -> TrainResult:
    return Trainer(cfg, resume, source).run()
