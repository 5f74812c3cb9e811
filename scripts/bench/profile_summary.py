"""Where a py-spy profile spent its samples: the functions with the most samples of their own
(self) and the most samples under them (total), in % of all samples. Lines of one function
count together.

    python scripts/bench/profile_summary.py PROFILE.txt [ROWS]

PROFILE.txt is py-spy's `record --format raw` output: one line per distinct stack,
`frame;frame;...;frame COUNT`, the outermost frame first.
"""

import sys
from collections import Counter


def _function(frame: str) -> str:
    """'name (path:line)' -> 'name (path)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rpartition(':')[0]})" if ":" in where else frame


def summarise(path: str, rows: int) -> None:
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    with open(path) as profile:
        for line in profile:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_function(frame) for frame in stack.split(";")]
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                under[frame] += count
    if not total:
        print(f"{path}: no samples")
        return
    print(f"{total} samples")
    for title, counter in (("self", own), ("total", under)):
        print(f"-- {title}")
        for frame, count in counter.most_common(rows):
            print(f"{100 * count / total:5.1f}%  {frame}")


if __name__ == "__main__":
    summarise(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)
