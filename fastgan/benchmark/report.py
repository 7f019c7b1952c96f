"""Turns benchmark results into a terminal table, JSON, Markdown and a PNG bar chart, and
compares two JSON reports."""

from __future__ import annotations

import json
import os
import platform
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .runner import IMPL_ORDER, Result

FORMAT_VERSION = 1


def machine_info() -> dict:
    import fastgan

    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "fastgan": getattr(fastgan, "__version__", "unknown"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        from fastgan.ops import backend_info

        info["backend"] = backend_info()
    except Exception as e:  # pragma: no cover - backend_info never raises by contract
        info["backend"] = {"error": str(e)}
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def to_json(results: Sequence[Result], settings: dict, command: str) -> dict:
    return {
        "format": FORMAT_VERSION,
        "command": command,
        "machine": machine_info(),
        "settings": settings,
        "results": [r.to_dict() for r in results],
    }


def write_json(doc: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def load_json(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable fastgan bench JSON file ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION or not isinstance(doc.get("results"), list):
        raise ValueError(f"{path}: not a fastgan bench JSON file (format {FORMAT_VERSION})")
    return doc


# --- tables ---------------------------------------------------------------------------


def _group_key(r) -> Tuple:
    g = r if isinstance(r, dict) else r.to_dict()
    return (g["case"], g["mode"], g["dtype"], g["layout"], g["device"])


def grouped(results: Sequence) -> "OrderedDict[Tuple, Dict[str, dict]]":
    groups: "OrderedDict[Tuple, Dict[str, dict]]" = OrderedDict()
    for r in results:
        d = r if isinstance(r, dict) else r.to_dict()
        groups.setdefault(_group_key(d), {})[d["impl"]] = d
    return groups


def _time(d: dict) -> str:
    """Median ± half the IQR, in us, ms or s (whichever keeps the median under 1000)."""
    if d["status"] != "ok":
        return "n/s" if d["status"] == "unsupported" else d["status"].upper()
    med, iqr = d["stats"]["median"], d["stats"]["iqr"]
    scale, unit = (1e6, "us") if med < 1e-3 else (1e3, "ms") if med < 1 else (1.0, "s")
    return f"{med * scale:.3g} ± {iqr * scale / 2:.2g} {unit}"


def speedup(groups_entry: Dict[str, dict], over: str) -> Optional[float]:
    f, o = groups_entry.get("fastgan"), groups_entry.get(over)
    if not f or not o or f["status"] != "ok" or o["status"] != "ok":
        return None
    return o["stats"]["median"] / f["stats"]["median"]


def rows(results: Sequence) -> Tuple[List[str], List[List[str]]]:
    present = {d["impl"] for d in (r if isinstance(r, dict) else r.to_dict() for r in results)}
    impl_cols = [i for i in IMPL_ORDER if i in present]
    header = ["case", "mode", "dtype", "layout", "dev"] + list(impl_cols) + [
        "x eager", "x compile", "GB/s (copy)", "saved MB", "peak MB"]
    body = []
    for key, impls in grouped(results).items():
        row = list(key)
        for name in impl_cols:
            row.append(_time(impls[name]) if name in impls else "-")
        for over in ("eager", "compile"):
            s = speedup(impls, over)
            row.append(f"{s:.2f}x" if s else "-")
        f = impls.get("fastgan", {})
        bw = f"{f['bandwidth_gbs']:.1f} ({f['copy_gbs']:.1f})" if f.get("bandwidth_gbs") else "-"
        row.append(bw)
        row.append(_mb(f.get("saved_bytes"), impls, "saved_bytes"))
        row.append(_mb(f.get("peak_bytes"), impls, "peak_bytes"))
        body.append(row)
    return header, body


def _mb(value, impls, field) -> str:
    if value is None:
        return "-"
    stock = impls.get("eager", {}).get(field)
    s = f"{value / 2**20:.1f}"
    return s + (f" / {stock / 2**20:.1f}" if stock else "")


def text_table(results: Sequence) -> str:
    header, body = rows(results)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in body]
    failed = [r if isinstance(r, dict) else r.to_dict() for r in results]
    notes = [f"  {d['key']}: {d['status']}: {d['message']}" for d in failed if d["status"] != "ok"]
    if notes:
        out += ["", "not timed:"] + notes
    return "\n".join(out)


def markdown_table(results: Sequence) -> str:
    header, body = rows(results)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in body]
    out.append("")
    out.append("Times: median ± half the interquartile range. `saved MB`: memory saved for backward, fastgan / stock eager. "
               "`GB/s (copy)`: achieved bandwidth, and a plain copy of the same bytes in the same run.")
    return "\n".join(out)


def bar_chart(results: Sequence, path: Path) -> Optional[Path]:
    """PNG: fastgan's speed-up over stock eager and over torch.compile per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, vs_eager, vs_compile = [], [], []
    for key, impls in grouped(results).items():
        e, c = speedup(impls, "eager"), speedup(impls, "compile")
        if e is None and c is None:
            continue
        labels.append(" ".join(key[:4]))
        vs_eager.append(e or 0.0)
        vs_compile.append(c or 0.0)
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.5))
    y = range(len(labels))
    ax.barh([i + 0.2 for i in y], vs_eager, height=0.4, label="vs stock eager")
    ax.barh([i - 0.2 for i in y], vs_compile, height=0.4, label="vs torch.compile")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up of fastgan (median time ratio)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- compare --------------------------------------------------------------------------


def compare(old: dict, new: dict) -> List[Tuple[str, str, float]]:
    """(key, verdict, new/old median) per case present and timed in both. A case is
    faster or slower only when the interquartile ranges do not overlap."""
    old_by = {r["key"]: r for r in old["results"] if r["status"] == "ok"}
    out = []
    for r in new["results"]:
        o = old_by.get(r["key"])
        if r["status"] != "ok" or o is None:
            continue
        ratio = r["stats"]["median"] / o["stats"]["median"]
        if r["stats"]["q3"] < o["stats"]["q1"]:
            verdict = "faster"
        elif r["stats"]["q1"] > o["stats"]["q3"]:
            verdict = "slower"
        else:
            verdict = "same"
        out.append((r["key"], verdict, ratio))
    return out


def compare_text(old: dict, new: dict) -> str:
    diffs = compare(old, new)
    if not diffs:
        return "no case was timed in both files"
    width = max(len(k) for k, _, _ in diffs)
    lines = [f"{'case'.ljust(width)}  verdict  new/old"]
    for key, verdict, ratio in sorted(diffs, key=lambda d: (d[1] == "same", d[2])):
        lines.append(f"{key.ljust(width)}  {verdict.ljust(7)}  {ratio:.3f}")
    n = {v: sum(1 for d in diffs if d[1] == v) for v in ("faster", "slower", "same")}
    lines.append(f"\n{n['faster']} faster, {n['slower']} slower, {n['same']} within the measured spread")
    return "\n".join(lines)
