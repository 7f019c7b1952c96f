"""Training configuration: one flat dataclass, presets, and config-file loading."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from .._backend import LAYER_KITS

MODELS = ("dcgan", "cgan", "wgan", "wgan-gp", "progan", "stylegan2")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    # model
    model: str = "dcgan"
    layers: str = "fastgan"
    resolution: int = 28
    img_channels: int = 1
    z_dim: int = 100
    base_ch: int = 64
    max_ch: int = 512
    num_classes: int = 0  # 0: unconditional; >0 conditional (cgan); -1: from the dataset
    d_norm: str = "batch"
    # data
    data: Optional[str] = None  # None: Fashion-MNIST from /usr/share/datasets/fashion-mnist
    data_format: str = "auto"  # auto | idx | folder | zip | npy
    strict: bool = False
    num_workers: int = 0  # DataLoader processes for image folders, zips and packed .npy files
    mirror: bool = False  # x-flip each training image with probability 0.5 (seeded per batch)
    # optimization
    batch_size: int = 128  # the global batch: split over the DDP processes
    # samples per process per forward (micro-batch); 0: batch_size / processes (no gradient
    # accumulation). Smaller: batch_size / (processes * batch_gpu) micro-batches per step
    batch_gpu: int = 0
    steps: int = 1000
    optimizer: str = "adam"  # adam | rmsprop
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    loss: str = "nonsaturating"
    n_critic: int = 1
    weight_clip: float = 0.0  # WGAN: clamp D's parameters to [-c, c] after each D step
    gp_weight: float = 0.0  # WGAN-GP penalty weight
    r1_gamma: float = 0.0
    r1_every: int = 16  # lazy regularization interval
    # StyleGAN2's generator regularizers (stylegan2 only): lazy path-length penalty (0: off)
    # every pl_every steps on batch / pl_batch_shrink samples, and style mixing (probability)
    pl_weight: float = 0.0
    pl_every: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing: float = 0.0
    grad_clip: float = 0.0
    ema_beta: float = 0.999
    ema_kimg: float = 0.0  # > 0: G_ema's half-life in thousands of images (replaces ema_beta)
    ema_warmup: bool = True
    # performance
    precision: str = "fp32"
    act_clamp: Optional[float] = None  # activation clamp (defaults to 256 under fp16)
    channels_last: bool = False
    # memory levers (stylegan2): activation checkpointing of G's and D's blocks, and the
    # highest resolutions in reduced precision (StyleGAN2-ADA's num_fp16_res; clamp 256)
    checkpoint_blocks: bool = False
    low_precision_res: int = 0
    low_precision: str = "bf16"  # bf16 | fp16
    compile: bool = False
    device: str = "auto"
    tf32: bool = True
    # run
    seed: int = 0
    out: str = "runs/fastgan"
    sample_every: int = 200
    ckpt_every: int = 500
    keep_ckpts: int = 3
    log_every: int = 20
    sample_n: int = 64
    tensorboard: bool = True
    progress: bool = True
    skip_nonfinite: bool = False
    # progressive growing (progan): images seen per fade-in and per stable phase
    phase_kimg: float = 0.0
    # evaluation during training (fastgan.metrics); empty: off
    metrics: str = ""  # comma-separated metric names; the first picks checkpoints/best.pt
    metrics_every: int = 500
    metrics_num_gen: int = 2000
    metrics_num_real: int = 0  # 0: the whole training split
    extra: dict = field(default_factory=dict)  # reserved; must stay empty in config files

    def validate(self) -> "TrainConfig":
        def bad(name, msg):
            raise ValueError(f"{name}: {msg}")
        if self.model not in MODELS:
            bad("model", f"expected one of {', '.join(MODELS)}, got {self.model!r}")
        if self.layers not in LAYER_KITS:
            bad("layers", f"expected one of {', '.join(LAYER_KITS)}, got {self.layers!r}")
        if self.precision not in PRECISIONS:
            bad("precision", f"expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.optimizer not in ("adam", "rmsprop"):
            bad("optimizer", f"expected 'adam' or 'rmsprop', got {self.optimizer!r}")
        for name in ("batch_size", "steps", "n_critic", "r1_every", "pl_every", "pl_batch_shrink", "sample_every", "ckpt_every", "keep_ckpts", "log_every", "sample_n", "z_dim", "base_ch", "resolution"):
            if int(getattr(self, name)) < 1:
                bad(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                bad(name, f"must be > 0, got {getattr(self, name)}")
        if self.ema_kimg < 0:
            bad("ema_kimg", f"must be >= 0 (0: use ema_beta), got {self.ema_kimg}")
        if not 0.0 <= self.ema_beta < 1.0:
            bad("ema_beta", f"must be in [0, 1), got {self.ema_beta}")
        if self.low_precision not in ("bf16", "fp16"):
            bad("low_precision", f"expected 'bf16' or 'fp16', got {self.low_precision!r}")
        if self.low_precision_res < 0:
            bad("low_precision_res", f"must be >= 0, got {self.low_precision_res}")
        if not (self.pl_weight >= 0 and self.pl_weight < float("inf")):
            bad("pl_weight", f"must be a finite number >= 0 (0: off), got {self.pl_weight}")
        if not 0.0 < self.pl_decay <= 1.0:
            bad("pl_decay", f"must be in (0, 1], got {self.pl_decay}")
        if not 0.0 <= self.style_mixing <= 1.0:
            bad("style_mixing", f"must be a probability in [0, 1], got {self.style_mixing}")
        if self.batch_gpu < 0:
            bad("batch_gpu", f"must be >= 0 (0: batch_size / processes), got {self.batch_gpu}")
        if self.batch_gpu > 0 and self.batch_size % self.batch_gpu:
            bad("batch_gpu", f"{self.batch_gpu} does not divide batch_size {self.batch_size}")
        if self.pl_weight > 0 and self.batch_size // self.pl_batch_shrink < 1:
            bad("pl_batch_shrink", f"{self.pl_batch_shrink} leaves no sample of batch_size {self.batch_size} "
                                   "for the path-length penalty")
        if self.model != "stylegan2":
            for name, off in (("checkpoint_blocks", False), ("low_precision_res", 0), ("pl_weight", 0.0),
                              ("style_mixing", 0.0)):
                if getattr(self, name) != off:
                    bad(name, f"only the stylegan2 model has this option (model is {self.model!r})")
        if self.num_workers < 0:
            bad("num_workers", f"must be >= 0, got {self.num_workers}")
        if self.device != "auto":
            import torch
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError, ValueError):
                bad("device", f"expected 'auto' or a torch device (cpu, cuda, cuda:1), got {self.device!r}")
        if self.data_format not in ("auto", "idx", "folder", "zip", "npy"):
            bad("data_format", f"expected auto, idx, folder, zip or npy, got {self.data_format!r}")
        if self.extra:
            bad("extra", "reserved, must be empty")
        if self.metrics:
            from .evaluation import parse_metric_names
            parse_metric_names(self.metrics)
            if self.metrics_every < 1:
                bad("metrics_every", f"must be >= 1, got {self.metrics_every}")
            if self.metrics_num_gen < 2:
                bad("metrics_num_gen", f"must be >= 2, got {self.metrics_num_gen}")
            if self.metrics_num_real < 0:
                bad("metrics_num_real", f"must be >= 0 (0: all), got {self.metrics_num_real}")
        from ..losses import LOSS_KINDS
        if self.loss not in LOSS_KINDS:
            bad("loss", f"expected one of {', '.join(LOSS_KINDS)}, got {self.loss!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Keys that may differ between a checkpoint and the run that resumes it.
RESUME_FREE_KEYS = frozenset({
    "steps", "out", "sample_every", "ckpt_every", "keep_ckpts", "log_every", "sample_n",
    "tensorboard", "progress", "num_workers", "device", "compile", "skip_nonfinite", "data",
    "layers", "checkpoint_blocks",  # same parameters and the same function either way
    "metrics", "metrics_every", "metrics_num_gen", "metrics_num_real",  # evaluation only
})

PRESETS: dict[str, dict[str, Any]] = {
    # The main job: Fashion-MNIST on a 2-core CPU in about 6 minutes (see README).
    # Classic DCGAN settings (z 100, Adam 2e-4, beta1 0.5, batch 128). 2700 steps fill the
    # budget: 549 single-thread CPU-s, ~1100 img/s on 2 quiet cores (about 5.5 min). Tuned by
    # classifier-FID (README "fmnist-dcgan tuning"): steps are what the old 1400 x 64 preset
    # lacked (108 -> 64.7); 3600 x 64 tied (64.9) at more CPU; EMA beta barely matters with
    # BatchNorm in G (62.8..66.2 for 0.95..0.999), 0.995 averages over ~200 steps.
    "fmnist-dcgan": dict(model="dcgan", resolution=28, base_ch=32, batch_size=128, steps=2700,
                         lr_g=2e-4, lr_d=2e-4, beta1=0.5, ema_beta=0.995, sample_every=900,
                         ckpt_every=900, log_every=50, out="runs/fmnist-dcgan"),
    "fmnist-cgan": dict(model="cgan", resolution=28, base_ch=32, num_classes=-1, steps=900,
                        ema_beta=0.99, sample_every=150, ckpt_every=300, out="runs/fmnist-cgan"),
    "fmnist-wgan": dict(model="wgan", resolution=28, base_ch=32, loss="wasserstein", optimizer="rmsprop",
                        lr_g=5e-5, lr_d=5e-5, n_critic=5, weight_clip=0.01, batch_size=64, steps=2000,
                        ema_beta=0.99, out="runs/fmnist-wgan"),
    "fmnist-wgan-gp": dict(model="wgan-gp", resolution=28, base_ch=32, loss="wasserstein", d_norm="none",
                           lr_g=1e-4, lr_d=1e-4, beta1=0.0, beta2=0.9, n_critic=5, gp_weight=10.0,
                           batch_size=64, steps=2000, ema_beta=0.99, out="runs/fmnist-wgan-gp"),
    "progan": dict(model="progan", resolution=64, base_ch=256, max_ch=256, z_dim=256, loss="wasserstein",
                   gp_weight=10.0, lr_g=1e-3, lr_d=1e-3, beta1=0.0, beta2=0.99, batch_size=16, steps=20000,
                   phase_kimg=60.0, ema_beta=0.999, d_norm="none", out="runs/progan"),
    "stylegan2-256": dict(model="stylegan2", resolution=256, img_channels=3, z_dim=512, base_ch=16384,
                          max_ch=512, loss="nonsaturating", r1_gamma=1.0, r1_every=16, pl_weight=2.0,
                          pl_every=4, style_mixing=0.9, lr_g=2.5e-3,
                          lr_d=2.5e-3, beta1=0.0, beta2=0.99, batch_size=16, steps=100000, ema_beta=0.998,
                          d_norm="none", sample_every=1000, ckpt_every=2000, out="runs/stylegan2-256"),
    # The StyleGAN2 paper's config-f (as StyleGAN2-ADA's "stylegan2" config): channels
    # 32768 / resolution up to 512, an 8-layer mapping network, batch 32, Adam lr 0.002 with
    # betas (0, 0.99), G_ema half-life 10 kimg (no warm-up ramp), lazy R1 every 16 steps with
    # gamma by resolution (StyleGAN2-ADA's heuristic 0.0002 * R^2 / batch: 1.6 at 512, 6.6 at
    # 1024; the paper used 10 on FFHQ 1024), lazy path length (weight 2, every 4 steps), style
    # mixing 0.9. Memory levers (checkpoint_blocks, low_precision_res) stay off: they are
    # per-machine choices (see README).
    "stylegan2-512": dict(model="stylegan2", resolution=512, img_channels=3, z_dim=512, base_ch=32768,
                          max_ch=512, loss="nonsaturating", r1_gamma=1.6384, r1_every=16, pl_weight=2.0,
                          pl_every=4, style_mixing=0.9, lr_g=2e-3, lr_d=2e-3, beta1=0.0, beta2=0.99, batch_size=32,
                          steps=781250, ema_kimg=10.0, ema_warmup=False,
                          d_norm="none", sample_every=1000, ckpt_every=2000, sample_n=16,
                          out="runs/stylegan2-512"),
    "stylegan2-1024": dict(model="stylegan2", resolution=1024, img_channels=3, z_dim=512, base_ch=32768,
                           max_ch=512, loss="nonsaturating", r1_gamma=6.5536, r1_every=16, pl_weight=2.0,
                           pl_every=4, style_mixing=0.9, lr_g=2e-3, lr_d=2e-3, beta1=0.0, beta2=0.99, batch_size=32,
                           steps=781250, ema_kimg=10.0, ema_warmup=False,
                           d_norm="none", sample_every=1000, ckpt_every=2000, sample_n=16,
                           out="runs/stylegan2-1024"),
}
DEFAULT_PRESET = "fmnist-dcgan"


def config_fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in fields(TrainConfig) if f.name != "extra"}


def check_keys(d: dict, where: str) -> None:
    known = config_fields()
    unknown = [k for k in d if k not in known]
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"known keys: {', '.join(sorted(known))}")


def load_config_file(path: str | Path) -> dict:
    """Reads a YAML (safe_load) or JSON mapping of TrainConfig keys; rejects unknown keys."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{path}: cannot read config file ({e.strerror})") from e
    try:
        if path.suffix.lower() == ".json":
            d = json.loads(text)
        else:
            import yaml
            d = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - parse errors of either format
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} ({e})") from e
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a mapping of config keys, got {type(d).__name__}")
    d = {str(k).replace("-", "_"): v for k, v in d.items()}
    check_keys(d, str(path))
    return d


def _coerce(name: str, value: Any) -> Any:
    f = config_fields()[name]
    default = f.default
    if value is None:
        return None
    typ = type(default) if default is not None else None
    if name == "act_clamp":
        typ = float
    if name == "data":
        typ = str
    if name == "metrics" and isinstance(value, (list, tuple)):  # YAML/JSON list of names
        value = ",".join(str(v) for v in value)
    if typ is bool and not isinstance(value, bool):
        raise ValueError(f"{name}: expected true/false, got {value!r}")
    if typ in (int, float) and isinstance(value, bool):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    try:
        if typ is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return typ(value) if typ is not None else value
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {typ.__name__}, got {value!r}") from None


def make_config(preset: Optional[str] = None, file_values: Optional[dict] = None, overrides: Optional[dict] = None) -> TrainConfig:
    """Preset, then config-file values, then explicit overrides (command-line flags)."""
    preset = preset or DEFAULT_PRESET
    if preset not in PRESETS:
        raise ValueError(f"preset: unknown {preset!r}; expected one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset])
    for src in (file_values or {}, overrides or {}):
        check_keys(src, "config")
        values.update(src)
    cfg = TrainConfig(**{k: _coerce(k, v) for k, v in values.items()})
    return cfg.validate()
