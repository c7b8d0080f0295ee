"""The long fuzz run: ``python -m bench.fuzz [--count 200000] [--seed 1] [--jobs 2]``.

Mutates the suite's seed messages (:mod:`tests.fuzzing`), reads each one offline
as a bot would (every property, every part, every attachment saved), and prints
how many raised, per exception site. The target is none. The suite runs the same
fuzzer with a fixed seed and 2,000 mutations (``tests/test_fuzz.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor

from tests import fuzzing

BATCH = 5000


def _batch(seed: int, count: int) -> dict[str, int]:
    return {site: len(found) for site, found in fuzzing.run(seed, count).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    options = parser.parse_args()
    started = time.perf_counter()
    totals: dict[str, int] = {}
    batches = [(options.seed * 1_000_003 + n, min(BATCH, options.count - n)) for n in range(0, options.count, BATCH)]
    with ProcessPoolExecutor(options.jobs) as pool:
        for counts in pool.map(_batch, *zip(*batches, strict=True)):
            for site, count in counts.items():
                totals[site] = totals.get(site, 0) + count
    wall = time.perf_counter() - started
    print(f"{options.count} mutated messages in {wall:.0f} s: {sum(totals.values())} raised")
    for site, count in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"{count:8d}  {site}")
    print(json.dumps({"count": options.count, "raised": sum(totals.values()), "sites": totals, "wall": wall}))


if __name__ == "__main__":
    main()
