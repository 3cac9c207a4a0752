"""A set of small integers that finds its lowest member in O(log64 n).

The spec's deterministic choices (lowest free host frame, lowest free transaction slot)
must be reproduced exactly.  A flat bitmap would make ``lowest`` O(n); a heap would cost a
Python object per free frame.  This is a 64-ary summary tree of machine words: level 0 has
one bit per member, each higher level one bit per non-empty word below, so ``lowest``
walks ~4 words for four million frames and memory stays ~n/8 bytes (the all-ones words of
a fresh set share one int object).
"""

from __future__ import annotations

FULL = (1 << 64) - 1


class LowestSet:
    __slots__ = ("_levels", "n")

    def __init__(self, n: int, full: bool = False) -> None:
        """A set over ``range(n)``, initially empty or (``full``) holding every member."""
        self.n = n
        levels: list[list[int]] = []
        size = max(n, 1)
        while True:
            words = (size + 63) // 64
            if full:
                level = [FULL] * words
                if size % 64:
                    level[-1] = (1 << (size % 64)) - 1
            else:
                level = [0] * words
            levels.append(level)
            if words == 1:
                break
            size = words
        if full and n == 0:
            levels[0][0] = 0
        self._levels = levels

    def add(self, i: int) -> None:
        for level in self._levels:
            w, b = i >> 6, i & 63
            old = level[w]
            level[w] = old | (1 << b)
            if old:
                return
            i = w

    def discard(self, i: int) -> None:
        for level in self._levels:
            w, b = i >> 6, i & 63
            new = level[w] & ~(1 << b)
            level[w] = new
            if new:
                return
            i = w

    def __contains__(self, i: int) -> bool:
        return 0 <= i < self.n and bool(self._levels[0][i >> 6] >> (i & 63) & 1)

    def lowest(self) -> int:
        """The smallest member, or -1 when empty."""
        levels = self._levels
        top = levels[-1][0]
        if not top:
            return -1
        i = (top & -top).bit_length() - 1
        for level in reversed(levels[:-1]):
            w = level[i]
            i = (i << 6) | ((w & -w).bit_length() - 1)
        return i

    def pop_lowest(self) -> int:
        """Remove and return the smallest member (-1 when empty)."""
        i = self.lowest()
        if i >= 0:
            self.discard(i)
        return i
