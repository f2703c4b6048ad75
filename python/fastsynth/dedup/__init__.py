"""Near-duplicate removal with MinHash + LSH.

* :func:`minhash` / :func:`shingles` — signatures (``fastsynth.dedup.minhash`` documents
  the normalisation, both hash schemes and the empty-document signature);
* :func:`optimal_params` — LSH (bands, rows), equal to datasketch's choice;
* :class:`LSHIndex` — streaming insert/query;
* :func:`dedup` — clusters with a deterministic keep rule, optionally in bounded memory;
  :func:`cluster_signatures` — the same from precomputed signatures (LSH only);
* ``spill`` — the versioned on-disk format; ``synthetic`` — labelled near-duplicates.
"""
from fastsynth.dedup.cluster import DedupResult, cluster_signatures, dedup
from fastsynth.dedup.lsh import LSHIndex, band_keys
from fastsynth.dedup.minhash import EMPTY_HASH, is_empty, minhash, permutations, shingles
from fastsynth.dedup.params import optimal_params

__all__ = ["minhash", "shingles", "permutations", "is_empty", "EMPTY_HASH", "optimal_params", "LSHIndex",
           "band_keys", "dedup", "cluster_signatures", "DedupResult"]
