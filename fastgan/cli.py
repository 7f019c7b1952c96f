"""The ``fastgan`` command: train, sample, prepare, info, eval, bench.

A user error (a bad flag value, a missing or corrupt file, a missing dataset) is one line on
stderr, ``fastgan <cmd>: error: ...``, and exit status 2 (see fastgan._cli_common).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from ._cli_common import ArgumentParser, check_device, user_error


def _bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _optional_float(s: str) -> Optional[float]:
    if s.strip().lower() in ("none", ""):
        return None
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {s!r}") from None


_HELP = {
    "model": "dcgan, cgan, wgan, wgan-gp, progan, stylegan2",
    "layers": "fastgan (fused kernels) or stock (plain PyTorch); same parameters",
    "data": "dataset: IDX folder, image folder, .zip or packed .npy (default: Fashion-MNIST)",
    "precision": "fp32, bf16 (autocast) or fp16 (autocast + GradScaler + activation clamping)",
    "num_classes": "conditional models: number of classes (-1: from the dataset)",
    "steps": "generator steps (iterations)",
    "n_critic": "D steps per G step",
    "loss": "nonsaturating, minimax, hinge, wasserstein, lsgan",
    "r1_every": "lazy regularization: R1 every k steps, weighted by k",
    "batch_size": "the global batch (split over DDP processes)",
    "batch_gpu": "samples per process per forward; < batch_size / processes: gradient accumulation (0: no accumulation)",
    "pl_weight": "stylegan2: path-length penalty weight (0: off; StyleGAN2: 2)",
    "pl_every": "lazy path-length regularization: every k G steps, weighted by k",
    "pl_decay": "path-length penalty: decay of the running mean path length",
    "pl_batch_shrink": "path-length penalty on batch / N samples",
    "style_mixing": "stylegan2: probability of mixing two latents' styles per sample (StyleGAN2: 0.9)",
    "weight_clip": "WGAN: clamp D's weights to [-c, c] (0: off)",
    "ema_beta": "EMA decay of G's weights for G_ema",
    "checkpoint_blocks": "stylegan2: activation checkpointing of G's and D's blocks (less memory, ~1 more forward)",
    "low_precision_res": "stylegan2: run the N highest resolutions in --low-precision (activation clamp 256)",
    "low_precision": "bf16 or fp16: the dtype of the --low-precision-res layers",
    "phase_kimg": "progan: thousands of images per fade-in and per stable phase",
    "num_workers": "DataLoader worker processes for image folders, zips and packed .npy files",
    "mirror": "x-flip each training image with probability 0.5 (deterministic per seed and batch)",
}


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    from .train.config import config_fields

    g = p.add_argument_group("training options (override the preset and --config)")
    for name, f in config_fields().items():
        flag = "--" + name.replace("_", "-")
        default = f.default
        kw = dict(dest=name, default=None, help=_HELP.get(name, ""))
        if isinstance(default, bool):
            g.add_argument(flag, type=_bool, metavar="BOOL", nargs="?", const=True, **kw)
        elif name in ("act_clamp",):
            g.add_argument(flag, type=_optional_float, metavar="X", **kw)
        elif isinstance(default, int):
            g.add_argument(flag, type=int, metavar="N", **kw)
        elif isinstance(default, float):
            g.add_argument(flag, type=float, metavar="X", **kw)
        else:
            g.add_argument(flag, type=str, metavar="VALUE", **kw)


def build_parser() -> argparse.ArgumentParser:
    from .train.config import DEFAULT_PRESET, PRESETS

    parser = ArgumentParser(prog="fastgan", description="fastgan: fused GAN kernels, models and training")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train a GAN (presets: " + ", ".join(PRESETS) + ")")
    t.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help=f"default: {DEFAULT_PRESET}")
    t.add_argument("--config", metavar="FILE", help="YAML or JSON file of training options")
    t.add_argument("--resume", metavar="PATH|auto", help="checkpoint file or folder, or 'auto' (newest in the run folder)")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    _add_train_flags(t)

    s = sub.add_parser("sample", help="generate images from a checkpoint")
    s.add_argument("checkpoint", help="checkpoint file (ckpt-*.pt) or run folder")
    s.add_argument("--out", required=True, help="grid: a .png path; --n: a folder")
    s.add_argument("--n", type=int, default=0, help="write N single images into the --out folder (0: one grid)")
    s.add_argument("--grid", type=int, default=64, help="images in the grid (default 64)")
    s.add_argument("--per-class", type=int, default=0, help="conditional models: images per class (grid rows)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--truncation", type=float, default=1.0, help="StyleGAN2-style models: truncation psi")
    s.add_argument("--weights", choices=("ema", "G"), default="ema", help="G_ema (default) or the raw G")
    s.add_argument("--device", default="cpu")

    pr = sub.add_parser("prepare", help="pack an image folder or zip into a uint8 .npy or .zip at one resolution")
    pr.add_argument("source", help="image folder or zip of images")
    pr.add_argument("dest", help="output .npy (array + labels) or .zip (PNG files)")
    pr.add_argument("--resolution", type=int, required=True)
    pr.add_argument("--strict", action="store_true", help="fail on an unreadable image instead of skipping it")
    pr.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bar on stderr (default: when stderr is a terminal)")

    sub.add_parser("info", help="backend (compiled kernels) and device information")
    for name, p in sub.choices.items():
        p.set_defaults(_parser=p)  # errors found after parsing name the subcommand

    for name, mod in (("eval", "metrics"), ("bench", "benchmark")):
        e = sub.add_parser(name, help=f"see `fastgan {name} --help` (fastgan.{mod})", add_help=False)
        e.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _cmd_train(args, parser) -> int:
    from .train.config import config_fields, load_config_file, make_config

    overrides = {k: getattr(args, k) for k in config_fields() if getattr(args, k, None) is not None}
    try:
        file_values = load_config_file(args.config) if args.config else None
        cfg = make_config(args.preset, file_values, overrides)
    except ValueError as e:
        parser.error(str(e))
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    from .train.loop import NonFiniteLossError, train

    try:
        result = train(cfg, resume=args.resume)
    except NonFiniteLossError as e:  # the run failed, not its input: exit status 1
        user_error("fastgan train", e)
        return 1
    except (ValueError, OSError) as e:  # CheckpointError and IDXError are ValueErrors
        return user_error("fastgan train", e)
    if result.status == "interrupted":
        return 128 + int(result.signal) if result.signal else 1
    return 0


def _cmd_sample(args, parser) -> int:
    from .train.sample import sample_command

    try:
        check_device(args.device)
        for line in sample_command(args):
            print(line)
    except (ValueError, OSError) as e:  # CheckpointError is a ValueError
        return user_error("fastgan sample", e)
    return 0


def _cmd_prepare(args, parser) -> int:
    from .data.folder import prepare

    try:
        print(prepare(args.source, args.dest, args.resolution, strict=args.strict, progress=args.progress))
    except (ValueError, OSError) as e:
        return user_error("fastgan prepare", e)
    return 0


def _cmd_info(args, parser) -> int:
    import torch

    from ._backend import backend_info

    info = {"backend": backend_info(), "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
            "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if torch.cuda.is_available():
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    else:
        info["device"] = "cpu"
    print(json.dumps(info, indent=2, default=str))
    return 0


def _delegate(name: str, module: str, argv: list, **kwargs) -> int:
    import importlib

    try:
        mod = importlib.import_module(f"fastgan.{module}.cli")
        entry = getattr(mod, "main")
    except (ImportError, AttributeError) as e:
        return user_error(f"fastgan {name}", f"not available in this build: {e}")
    rc = entry(argv, **kwargs)
    return int(rc or 0)


def _load_generator_for_eval(path, device):
    """``fastgan eval``'s checkpoint loader: fastgan.metrics never imports fastgan.train, the
    command wires them together (train is imported only when a checkpoint is read)."""
    from .train.evaluation import load_generator_for_eval

    return load_generator_for_eval(path, device)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # eval / bench hand every argument to their own parser
    if argv and argv[0] == "eval":
        return _delegate("eval", "metrics", argv[1:], checkpoint_loader=_load_generator_for_eval)
    if argv and argv[0] == "bench":
        return _delegate("bench", "benchmark", argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the subcommand's parser: "fastgan info: error: unrecognized arguments: ..."
        args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handler = {"train": _cmd_train, "sample": _cmd_sample, "prepare": _cmd_prepare, "info": _cmd_info}[args.command]
    return handler(args, getattr(args, "_parser", parser))


if __name__ == "__main__":
    sys.exit(main())
