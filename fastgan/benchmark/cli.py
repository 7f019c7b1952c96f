"""``fastgan bench``: fastgan's kernels vs its references vs stock PyTorch vs torch.compile.

    fastgan bench [--ops bias_act,...] [--device cpu|cuda] [--quick] [--out DIR]
    fastgan bench --compare OLD.json NEW.json
    fastgan bench --list

A user error (a bad flag value, an unreadable --compare file, an unwritable --out) is one line on
stderr, ``fastgan bench: error: ...``, and exit status 2; a case that fails its check exits 1.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

import torch

from .._cli_common import ArgumentParser, user_error


def build_parser(prog: str = "fastgan bench") -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", help="comma-separated case names (default: all; see --list)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="small sizes and 5 rounds: a smoke run")
    p.add_argument("--size", choices=["full", "quick", "tiny"], help="input sizes (default: full; --quick: quick)")
    p.add_argument("--dtypes", help="comma-separated (default: float32,bfloat16 on CPU; float32,bfloat16,float16 on CUDA)")
    p.add_argument("--layouts", help="comma-separated: contiguous,channels_last (default: both)")
    p.add_argument("--modes", help="comma-separated: fwd,fwd+bwd,step (default: all; step = a whole training iteration)")
    p.add_argument("--impls", help="comma-separated: fastgan,reference,eager,compile (default: all)")
    p.add_argument("--rounds", type=int, help="timed rounds per case (default 15, --quick 5)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads for CPU runs")
    p.add_argument("--out", default="bench-results", help="folder for the JSON, Markdown and PNG (default: %(default)s)")
    p.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="compare two JSON reports and exit")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p


def _csv(value: Optional[str], allowed, what: str, parser) -> Optional[List[str]]:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        parser.error(f"{what}: unknown {', '.join(bad) or 'empty list'}; choose from {', '.join(allowed)}")
    return items


def main(argv: Optional[List[str]] = None) -> int:
    from . import cases as case_registry
    from . import report
    from .runner import DTYPES, IMPL_ORDER, Settings, run

    parser = build_parser()
    args = parser.parse_args(argv)

    if args.compare:
        try:
            old, new = (report.load_json(Path(p)) for p in args.compare)
        except ValueError as e:
            parser.error(str(e))
        print(report.compare_text(old, new))
        return 0

    if args.list:
        for c in case_registry.all_cases():
            print(f"{c.name:20s} {c.group:6s} {c.description}")
        return 0

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    try:
        selected = case_registry.get_cases(args.ops.split(",") if args.ops else None)
    except ValueError as e:
        parser.error(str(e))
    default_dtypes = "float32,bfloat16,float16" if args.device == "cuda" else "float32,bfloat16"
    settings = Settings(
        device=args.device,
        dtypes=_csv(args.dtypes or default_dtypes, list(DTYPES), "--dtypes", parser),
        layouts=_csv(args.layouts, ["contiguous", "channels_last"], "--layouts", parser),
        modes=_csv(args.modes, ["fwd", "fwd+bwd", "step"], "--modes", parser),
        impls=_csv(args.impls, list(IMPL_ORDER), "--impls", parser) or IMPL_ORDER,
        size=args.size or ("quick" if args.quick else "full"),
        rounds=args.rounds or (5 if args.quick else 15),
    )
    if settings.rounds < 3:
        parser.error("--rounds: at least 3")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads: at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # before the run, not after it
        return user_error("fastgan bench", f"--out {out}: {e.strerror or e}")

    try:
        from tqdm import tqdm

        bar = tqdm(desc="bench", unit="case", leave=False, file=sys.stderr, disable=not sys.stderr.isatty())
        progress = lambda key: (bar.set_postfix_str(key), bar.update(1))
    except ImportError:  # pragma: no cover
        bar, progress = None, None
    try:
        results = run(selected, settings, progress)
    finally:
        if bar is not None:
            bar.close()

    command = "fastgan bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    doc = report.to_json(results, {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}, command.strip())
    stem = f"bench-{args.device}{'-quick' if args.quick else ''}"
    try:
        report.write_json(doc, out / f"{stem}.json")
        (out / f"{stem}.md").write_text(f"`{doc['command']}` on {doc['machine']['processor']}"
                                        f" ({doc['machine']['cpu_count']} cores{', ' + doc['machine']['gpu'] if doc['machine']['gpu'] else ''}),"
                                        f" torch {doc['machine']['torch']}\n\n" + report.markdown_table(results) + "\n")
        png = report.bar_chart(results, out / f"{stem}.png")
    except OSError as e:
        return user_error("fastgan bench", f"--out {out}: {e}")
    print(report.text_table(results))
    print(f"\nwrote {out / (stem + '.json')}, {out / (stem + '.md')}" + (f", {png}" if png else ""))
    failed = [r for r in results if r.status not in ("ok", "unsupported")]
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
