"""The speedup harness: S(N) = X(N) / X(1) over 1..N nodes, measured by :mod:`stress`."""
