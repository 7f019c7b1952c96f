"""Peak resident memory of `fastgan prepare` and of opening + reading a packed .npy for
training: 3000 random 64x64 PNGs (every third 80x64) packed at 128 px (3000 x 3 x 128 x 128
uint8 = 144 MiB), each step in a fresh interpreter; prints the growth of ru_maxrss (MiB)
over the interpreter with torch, numpy and Pillow already imported.

    .venv/bin/python bench/data_rss.py
"""
import json, os, subprocess, sys, tempfile
from pathlib import Path
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys
import numpy, torch, PIL.Image, fastgan.data.folder, fastgan.data.stream
mib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = mib()
if sys.argv[1] == "prepare":
    fastgan.data.folder.prepare(sys.argv[2], sys.argv[3], 128, progress=False)
else:
    src = fastgan.data.stream.open_source(sys.argv[3])
    it = fastgan.data.stream.BatchStream(src, 16, seed=1, num_workers=int(sys.argv[4])).iterate(0)
    for _ in range(20): next(it)
print(json.dumps(round(mib() - base, 1)))
"""


def child(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


with tempfile.TemporaryDirectory() as d:
    root, rng = Path(d) / "imgs", np.random.default_rng(0)
    for i in range(3000):
        (root / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        a = rng.integers(0, 256, (64, 80 if i % 3 == 0 else 64, 3), dtype=np.uint8)
        Image.fromarray(a).save(root / "ab"[i % 2] / f"{i:05d}.png", compress_level=0)
    dest = Path(d) / "p.npy"
    print(f"prepare (folder -> .npy, {3000 * 3 * 128 * 128 / 2**20:.0f} MiB array): peak RSS +{child('prepare', root, dest)} MiB")
    for w in (0, 2):
        print(f"open_source + 20 batches of 16, num_workers={w}: peak RSS +{child('train', root, dest, w)} MiB "
              f"(file {dest.stat().st_size / 2**20:.0f} MiB)")
