"""``fastgan eval``: scores a checkpoint (or run directory) and prints a table / writes JSON.

    fastgan eval RUN_OR_CHECKPOINT --metrics fid_classifier,kid_classifier [--json OUT]
    fastgan eval --train-classifier [--data ROOT]        # once per dataset, cached
    fastgan eval RUN --metrics fid,kid,is --inception-weights pt_inception-2015-12-05-6726825d.pth

``main(argv, checkpoint_loader) -> int`` is what the ``fastgan`` command dispatches ``eval`` to,
with ``fastgan.train.load_generator_for_eval`` as the loader (fastgan.metrics never imports
fastgan.train; see fastgan.metrics.sources). A user error (a
bad flag value, a missing or corrupt checkpoint, a missing dataset or weights file) is one line
on stderr, ``fastgan eval: error: ...``, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, List, Optional

from .._cli_common import ArgumentParser, check_device, user_error

__all__ = ["main", "build_parser", "format_table"]


def build_parser() -> argparse.ArgumentParser:
    from .api import METRICS

    p = ArgumentParser(prog="fastgan eval", description="Evaluate a generator: FID, KID, IS, precision/recall, "
                                "and offline classifier metrics (fid_classifier, classifier_accuracy, cas).")
    p.add_argument("checkpoint", nargs="?", help="checkpoint file or run directory")
    p.add_argument("--metrics", default="fid_classifier", help=f"comma-separated, from: {', '.join(METRICS)}")
    p.add_argument("--json", metavar="OUT", help="write results with provenance to this JSON file")
    p.add_argument("--num-gen", type=int, default=10000, help="generated samples (default 10000)")
    p.add_argument("--num-real", type=int, default=None, help="real samples (default: the whole reference split)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--data", default=None, help="IDX dataset folder (default: Fashion-MNIST, or the checkpoint's dataset)")
    p.add_argument("--reference-split", choices=("train", "test"), default="train")
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="local pt_inception-2015-12-05-6726825d.pth (or set FASTGAN_INCEPTION_WEIGHTS)")
    p.add_argument("--train-classifier", action="store_true",
                   help="train (or retrain) the offline classifier on the dataset's training split and cache it")
    p.add_argument("--classifier-epochs", type=int, default=3)
    p.add_argument("--no-cache", action="store_true", help="recompute reference statistics")
    p.add_argument("--seed", type=int, default=0, help="latent seed")
    return p


def format_table(results: dict) -> str:
    rows = [("metric", "value", "std", "backbone", "N gen", "N real")]
    for name, r in results.items():
        pv = r["provenance"]
        std = f"{r['std']:.6g}" if "std" in r else ""
        rows.append((name, f"{r['value']:.6g}", std, pv.get("backbone", "").split(" ")[0],
                     str(pv.get("n_generated", "")), str(pv.get("n_real", ""))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None, checkpoint_loader: Optional[Callable] = None) -> int:
    """``fastgan eval``; ``checkpoint_loader(path, device)`` reads the checkpoint (a loader
    registered with fastgan.metrics.sources.register_checkpoint_loader takes precedence)."""
    import torch

    from ..data import load_idx_dataset
    from .api import compute_metrics
    from .classifier import load_or_train_classifier
    from .inception import InceptionWeightsError
    from .sources import CheckpointLoaderUnavailable, generator_from_checkpoint

    args = build_parser().parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    try:
        check_device(device)
        source, info = (None, {})
        if args.checkpoint:
            source, info = generator_from_checkpoint(args.checkpoint, device, loader=checkpoint_loader)
        data_root = args.data or info.get("dataset")
        classifier = None
        if args.train_classifier:
            train, test = load_idx_dataset(data_root, "train"), load_idx_dataset(data_root, "test")
            classifier = load_or_train_classifier(train, test, device=device, retrain=True,
                                                  epochs=args.classifier_epochs, log=log)
            print(f"classifier test accuracy {classifier[1]['test_accuracy']:.4f} (cached at {classifier[1]['path']})")
        if source is None:
            if args.train_classifier:
                return 0
            return user_error("fastgan eval", "give a checkpoint or run directory (or --train-classifier)")
        results = compute_metrics(args.metrics, source, device=device, num_gen=args.num_gen, num_real=args.num_real,
                                  batch_size=args.batch_size, data_root=data_root,
                                  reference_split=args.reference_split, inception_weights=args.inception_weights,
                                  classifier=classifier, use_cache=not args.no_cache, log=log)
        print(format_table(results))
        if args.json:
            out = Path(args.json)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2, default=str) + "\n")
            print(f"wrote {out}")
    # checkpoint loaders raise ValueError for a bad file (fastgan.train's CheckpointError is one);
    # OSError: unreadable inputs, an unwritable --json (ClassifierNotTrainedError is one too)
    except (InceptionWeightsError, CheckpointLoaderUnavailable, ValueError, OSError) as e:
        return user_error("fastgan eval", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
