"""The baseline that fastsynth's LSH clustering is measured against: datasketch's ``MinHashLSH``
(insert every signature, query every signature) with a union-find over the candidate pairs.

Used by the accuracy tests (recall beside datasketch's at the same threshold) and the LSH
benchmark (same partition, time). Needs ``datasketch`` (a test/bench dependency, imported here
on call).
"""
from __future__ import annotations

import numpy as np


def datasketch_components(sigs: np.ndarray, threshold: float = 0.8) -> np.ndarray:
    """Connected components of datasketch's LSH candidates over ``sigs`` (uint32
    ``(n, num_perm)``, affine32 hash values): for each row, the lowest row index of its
    component."""
    import datasketch

    num_perm = sigs.shape[1]
    lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=num_perm)
    mhs = [datasketch.MinHash(num_perm, hashvalues=s, scheme="affine32") for s in sigs]
    for i, m in enumerate(mhs):
        lsh.insert(i, m)
    parent = list(range(len(mhs)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, m in enumerate(mhs):
        for j in lsh.query(m):
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(len(mhs))])
