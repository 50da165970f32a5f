"""Speed of the exact-copy keys (``exact.image_keys``) at ImageNet size.

Makes N random 64×64×3 uint8 images block by block (never the whole 15.7 GB set; making them is
not timed) and times, on each block, three 128-bit keys of every image:

* ``xxh3_128``: ``exact.image_keys`` itself (xxHash's XXH3-128, one call per image);
* ``blake2b``: the same loop with ``hashlib.blake2b(digest_size=16)`` (the standard-library
  alternative; unseeded, so a little faster than a seeded version would be);
* ``linear (old)``: the former key, Σ wᵢ·rᵢ mod 2⁶⁴ over 64-bit words with two random odd
  multiplier vectors (one integer matmul per block of 4,096), kept here only for comparison:
  it collides on structured differences (``--collisions`` shows the review's case).

Prints images/s and the seconds that 1,281,167 images (the ImageNet training set) would take at
that rate, for each, and the same as JSON on the last line.

    python bench/keys_bench.py                      # 1,280,000 images, blocks of 16,384
    python bench/keys_bench.py --n 131072 --collisions
    python bench/keys_bench.py --collisions --record    # docs/benchmarks/keys_bench.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from errorless.quality.exact import image_keys  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import record, record_argument  # noqa: E402

IMAGENET = 1_281_167


def linear_keys(images: np.ndarray, seed: int = 0, block: int = 4096) -> np.ndarray:
    """The former ``image_keys`` (before issue 24), verbatim: a linear hash mod 2⁶⁴."""
    n = len(images)
    flat = images.reshape(n, -1)
    d = flat.shape[1]
    width = -(-d // 8) * 8
    rng = np.random.default_rng(seed)
    mult = rng.integers(0, 2**63, size=(width // 8, 2), dtype=np.uint64) * np.uint64(2) + np.uint64(
        1
    )
    keys = np.empty((n, 2), dtype=np.uint64)
    buf = np.zeros((min(block, max(n, 1)), width), dtype=np.uint8)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        b = buf[: hi - lo]
        b[:, :d] = flat[lo:hi]
        with np.errstate(over="ignore"):
            keys[lo:hi] = b.view(np.uint64) @ mult
    return keys


def blake2b_keys(images: np.ndarray, block: int = 4096) -> np.ndarray:
    """``image_keys``' loop with BLAKE2b-128 in place of XXH3-128."""
    n = len(images)
    width = images[0].nbytes if n else 0
    keys = np.empty((n, 2), dtype=np.uint64)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        rows = np.ascontiguousarray(images[lo:hi]).reshape(hi - lo, width)
        digests = b"".join([hashlib.blake2b(r, digest_size=16).digest() for r in rows])
        keys[lo:hi] = np.frombuffer(digests, dtype="<u8").reshape(hi - lo, 2)
    return keys


HASHES = {
    "xxh3_128": image_keys,
    "blake2b": blake2b_keys,
    "linear (old)": linear_keys,
}


def random_block(rng: np.random.Generator, m: int, size: int) -> np.ndarray:
    return np.frombuffer(rng.bytes(m * size * size * 3), np.uint8).reshape(m, size, size, 3)


def collisions(n: int = 65_536, size: int = 64) -> dict[str, int]:
    """The review's case: n images equal but for bytes 7 and 15 (all n byte pairs distinct);
    the number of distinct keys each hash gives them (n is right)."""
    base = np.random.default_rng(7).integers(0, 256, size * size * 3, dtype=np.uint8)
    x = np.tile(base, (n, 1))
    v = np.arange(n)
    x[:, 7], x[:, 15] = v % 256, v // 256 % 256
    x = x.reshape(n, size, size, 3)
    out = {}
    for name, fn in HASHES.items():
        out[name] = len(np.unique(fn(x), axis=0))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_280_000, help="images to hash (default 1,280,000)")
    ap.add_argument("--block", type=int, default=16_384, help="images made at a time")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--collisions", action="store_true", help="also the review's two-byte case")
    record_argument(ap)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    seconds = dict.fromkeys(HASHES, 0.0)
    t_make = 0.0
    for lo in range(0, a.n, a.block):
        t0 = time.perf_counter()
        x = random_block(rng, min(a.block, a.n - lo), a.size)
        t_make += time.perf_counter() - t0
        for name, fn in HASHES.items():
            t0 = time.perf_counter()
            fn(x)
            seconds[name] += time.perf_counter() - t0
        del x
    print(
        f"{a.n:,} random {a.size}x{a.size}x3 uint8 images in blocks of {a.block:,} "
        f"(making them: {t_make:.1f} s, not counted)"
    )
    result: dict = {"n": a.n, "size": a.size, "block": a.block, "hashes": {}}
    for name, s in seconds.items():
        rate = a.n / s
        result["hashes"][name] = {
            "seconds": round(s, 2),
            "images_per_s": round(rate),
            "seconds_at_1281167": round(IMAGENET / rate, 2),
        }
        print(
            f"  {name:13s} {s:7.2f} s   {rate:12,.0f} images/s   "
            f"{IMAGENET / rate:7.2f} s at 1,281,167 images"
        )
    if a.collisions:
        result["distinct_keys_of_65536_two_byte_images"] = c = collisions(size=a.size)
        print("  65,536 images differing only in bytes 7 and 15, distinct keys:", c)
    print(json.dumps(result))
    if a.record:
        figures = [
            (f"{name}: seconds for {a.n:,} images", h["seconds"])
            for name, h in result["hashes"].items()
        ] + [(f"{name}: images/s", h["images_per_s"]) for name, h in result["hashes"].items()]
        if a.collisions:
            for name, k in c.items():
                figures.append((f"{name}: distinct keys of 65,536 two-byte-change images", k))
        record(
            "keys_bench",
            "Exact-copy keys (exact.image_keys)",
            f"{a.n:,} random {a.size}x{a.size}x3 uint8 images, made in blocks of {a.block:,} "
            "(making them is not timed)",
            figures,
            notes="xxh3_128 is the key the pipeline uses; blake2b the standard-library "
            "alternative; linear (old) the former key, which collides on two-byte changes.",
        )
    return result


if __name__ == "__main__":
    main()
