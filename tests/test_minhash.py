"""MinHash signatures: SHA-1, normalisation, shingles, datasketch bit-identity, accuracy."""
from __future__ import annotations

import hashlib
import unicodedata

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastsynth as fs
from fastsynth import _native
from fastsynth.dedup import EMPTY_HASH, is_empty, minhash, permutations, shingles
from fastsynth.dedup.synthetic import family_pairs, make_near_duplicates

datasketch = pytest.importorskip("datasketch")


# ---- SHA-1 and hashes --------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_sha1_matches_hashlib(data):
    assert _native.sha1(data) == hashlib.sha1(data).digest()


@pytest.mark.parametrize("n", [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000])
def test_sha1_padding_boundaries(n):
    data = bytes(range(256)) * 4
    assert _native.sha1(data[:n]) == hashlib.sha1(data[:n]).digest()


def test_hash64_spreads_and_depends_on_every_byte():
    base = b"the quick brown fox"
    h = _native.hash64(base)
    for i in range(len(base)):
        flipped = bytearray(base)
        flipped[i] ^= 1
        assert _native.hash64(bytes(flipped)) != h
    assert _native.hash64(b"") != _native.hash64(b"\0")
    assert _native.hash64(b"ab") != _native.hash64(b"ab\0")


# ---- normalisation -------------------------------------------------------------------

FOLD_RANGES = [(0x41, 0x5A), (0xC0, 0xDE), (0x100, 0x17F), (0x386, 0x3AB), (0x400, 0x52F), (0x531, 0x556),
               (0x1E00, 0x1EFF), (0xFF21, 0xFF3A)]


def test_case_folding_matches_python_lower_in_documented_scope():
    checked = 0
    for lo, hi in FOLD_RANGES:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if unicodedata.category(ch) != "Lu":
                continue
            low = ch.lower()
            if len(low) != 1:  # e.g. U+0130 (no simple folding): left unchanged by design
                assert _native.fold_case(cp) == cp
                continue
            assert _native.fold_case(cp) == ord(low), hex(cp)
            checked += 1
    assert checked > 450  # every upper-case letter of the documented ranges
    assert _native.fold_case(0x3C2) == 0x3C3  # final sigma folds to sigma
    assert _native.fold_case(0x4E2D) == 0x4E2D  # CJK unchanged


def _reference_words(text: str) -> list[str]:
    """Reference normaliser for ASCII/Latin/Greek/Cyrillic/CJK text without exotic symbols."""
    text = "".join(ch for ch in text if not (unicodedata.category(ch).startswith("P")))
    return text.lower().replace("ς", "σ").split()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["Hello", "WORLD", "don't", "Ünïcödé", "ΣΙΣΥΦΟΣ", "Привет", "日本語", "x",
                                 "naïve", "Straße", "(paren)", "“quoted”", "a—b", "end.", "¿qué?", "Ёлка"]),
                max_size=20),
       st.lists(st.sampled_from([" ", "  ", "\t", "\n", "\u00a0", "\u3000", " \r\n "]), min_size=20, max_size=20),
       st.integers(1, 6))
def test_word_shingles_follow_documented_normalisation(words, seps, n):
    text = "".join(w + s for w, s in zip(words, seps))
    ref = _reference_words(text)
    got = shingles(text, n)
    if not ref:
        assert got == []
    elif len(ref) <= n:
        assert got == [" ".join(ref)]
    else:
        assert got == [" ".join(ref[i:i + n]) for i in range(len(ref) - n + 1)]


def test_shingles_examples():
    assert shingles("Hello, World!  How are you today?", 3) == ["hello world how", "world how are",
                                                                  "how are you", "are you today"]
    assert shingles("only two", 5) == ["only two"]  # fewer words than ngram: one shingle of all
    assert shingles("", 5) == [] and shingles(" \t\n", 5) == [] and shingles("!?...", 5) == []
    assert shingles("日本語テキスト", 3, shingle="char") == ["日本語", "本語テ", "語テキ", "テキス", "キスト"]
    assert shingles("Ab  cd", 3, shingle="char") == ["ab ", "b c", " cd"]


# ---- datasketch bit-identity -----------------------------------------------------------

def _varied_docs(n: int, seed: int) -> list[str]:
    rng = np.random.RandomState(seed)
    pools = [
        "the of and to in is was for on that with as by at from".split(),
        "Résumé café naïve Straße Ærø Łódź Çà ŒUVRE ĳssel ẞig".split(),
        "Αθήνα ΣΟΦΙΑ λόγος ψυχή Ωμέγα".split(),
        "Москва ПРИВЕТ мир Ёж Україна".split(),
        ["日本語のテキスト", "中文文本", "한국어", "東京", "北京市"],
        ["😀", "🚀🚀", "👍🏽", "🇫🇷", "❤️"],
        ["--", "...", "“", "”", "!!", "(", ")", "'s", "¿", "¡"],
    ]
    seps = [" ", " ", " ", "  ", "\n", "\t", "\u00a0", "\u3000", ""]
    docs = []
    for i in range(n):
        kind = i % 10
        if kind == 0:
            docs.append(["", " ", "\n\t ", "!!!", "…"][rng.randint(5)])
            continue
        length = rng.randint(1, 6) if kind == 1 else rng.randint(5, 80)
        parts = []
        for _ in range(length):
            pool = pools[rng.randint(len(pools))] if kind >= 5 else pools[rng.randint(3)]
            parts.append(pool[rng.randint(len(pool))])
            parts.append(seps[rng.randint(len(seps))])
        docs.append("".join(parts))
    return docs


def _datasketch_sigs(docs, num_perm, seed, ngram, shingle="word"):
    perms = datasketch.MinHash(num_perm, seed=seed).permutations
    out = np.empty((len(docs), num_perm), dtype=np.uint32)
    for i, d in enumerate(docs):
        m = datasketch.MinHash(num_perm, seed=seed, permutations=perms, scheme="affine32")
        m.update_batch([s.encode("utf-8") for s in shingles(d, ngram, shingle=shingle)])
        out[i] = m.hashvalues
    return out


def test_permutations_equal_datasketch():
    for num_perm, seed in [(128, 1), (64, 7), (257, 42)]:
        a, b = permutations(num_perm, seed)
        ref = datasketch.MinHash(num_perm, seed=seed).permutations
        assert np.array_equal(a, ref[0]) and np.array_equal(b, ref[1])


def test_compat_bit_identical_on_10k_varied_docs():
    docs = _varied_docs(10_000, seed=3)
    ours = minhash(docs, num_perm=128, ngram=5, seed=1, compat="datasketch")
    ref = _datasketch_sigs(docs, 128, 1, 5)
    assert ours.dtype == np.uint32 and ours.shape == (10_000, 128)
    assert np.array_equal(ours, ref)
    assert is_empty(ours).sum() >= 1000  # the empty / punctuation-only tenth


@pytest.mark.parametrize("num_perm,seed,ngram,shingle", [(64, 5, 3, "word"), (100, 0, 1, "word"),
                                                         (128, 9, 4, "char")])
def test_compat_other_parameters(num_perm, seed, ngram, shingle):
    docs = _varied_docs(600, seed=11)
    ours = fs.minhash(docs, num_perm=num_perm, ngram=ngram, seed=seed, compat="datasketch", shingle=shingle)
    assert np.array_equal(ours, _datasketch_sigs(docs, num_perm, seed, ngram, shingle))


# ---- inputs, threads, empty documents ---------------------------------------------------

def test_arrow_bytes_list_and_threads_agree():
    docs = _varied_docs(2000, seed=5)
    ref = minhash(docs, threads=1)
    assert np.array_equal(minhash(docs, threads=2), ref)
    assert np.array_equal(minhash([d.encode("utf-8") for d in docs]), ref)
    assert np.array_equal(minhash(pa.array(docs, pa.large_string())), ref)
    chunked = pa.chunked_array([pa.array(docs[:700]), pa.array(docs[700:])])
    assert np.array_equal(minhash(chunked), ref)
    with_null = minhash(pa.array(["a b c", None]))
    assert is_empty(with_null).tolist() == [False, True]


def test_empty_documents_have_the_documented_signature():
    sigs = minhash(["", "   ", "\n\t", "?!", "word"], num_perm=16)
    assert (sigs[:4] == EMPTY_HASH).all()
    assert not (sigs[4] == EMPTY_HASH).all()
    assert minhash([], num_perm=16).shape == (0, 16)


def test_cpu_prehash_path_equals_direct_path():
    docs = _varied_docs(500, seed=8)
    a, b = permutations(128, 1)
    for scheme in ("fast", "datasketch"):
        v, o = _native.shingle_prehashes(docs, 5, "word", scheme, 0)
        assert np.array_equal(_native.minhash_from_prehash(v, o, a, b, 0),
                              _native.minhash(docs, a, b, 5, "word", scheme, 0))


@pytest.mark.parametrize("kwargs,name", [({"num_perm": 0}, "num_perm"), ({"num_perm": 10**6}, "num_perm"),
                                         ({"ngram": 0}, "ngram"), ({"ngram": 1000}, "ngram"),
                                         ({"seed": -1}, "seed"), ({"compat": "rensa"}, "compat"),
                                         ({"threads": -2}, "threads"), ({"shingle": "line"}, "shingle")])
def test_bad_parameters_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        minhash(["a b c"], **kwargs)


def test_bad_texts():
    with pytest.raises(TypeError):
        minhash("not a list")
    with pytest.raises(TypeError):
        minhash([1, 2])


# ---- accuracy of the fast scheme vs the true Jaccard ---------------------------------------

def test_fast_scheme_estimates_jaccard_as_well_as_datasketch_scheme():
    data = make_near_duplicates(150, seed=4)
    i, j, jac = family_pairs(data)
    errs = {}
    for compat in (None, "datasketch"):
        sigs = minhash(data.texts, num_perm=128, compat=compat)
        est = (sigs[i] == sigs[j]).mean(axis=1)
        errs[compat] = est - jac
    theory = np.sqrt(jac * (1 - jac) / 128).mean()  # mean std error of an unbiased estimate
    for compat, e in errs.items():
        assert abs(e.mean()) < 0.01, (compat, e.mean())
        assert np.abs(e).mean() < 1.1 * theory, (compat, np.abs(e).mean(), theory)
    assert np.abs(errs[None]).mean() < 1.15 * np.abs(errs["datasketch"]).mean()


def test_fast_scheme_hashes_exactly_the_returned_shingles():
    """The fast pre-hash of a document's shingles is computed from the shingle strings
    that shingles() returns (word shingles: per-word hash64 combined; see minhash.h)."""
    docs = _varied_docs(300, seed=21) + ["one", "two words", "exactly five words are here"]
    for shingle, n in (("word", 5), ("word", 2), ("char", 4)):
        values, offsets = _native.shingle_prehashes(docs, n, shingle, "fast", 0)
        sets, set_off = _native.shingle_sets(docs, n, shingle, 0)
        for k, d in enumerate(docs):
            h = [_native.shingle_hash64(s.encode("utf-8"), shingle) for s in shingles(d, n, shingle=shingle)]
            assert values[offsets[k]:offsets[k + 1]].tolist() == [x >> 32 for x in h]
            assert sets[set_off[k]:set_off[k + 1]].tolist() == sorted(set(h))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abcXYZ019_ \t\n\r\x00\x0b\x1f\x7f.,;'()-!?\"") + ["é", "Ω", "日", "😀", "\u00a0"]),
               max_size=120),
       st.integers(1, 6))
def test_simd_and_scalar_normalisation_agree(text, n):
    assert _native.shingles(text, n, "word", True) == _native.shingles(text, n, "word", False)
    assert _native.shingles(text, n, "char", True) == _native.shingles(text, n, "char", False)


_TOKEN = st.one_of(
    st.text(alphabet=st.sampled_from(list("aZ9_")), min_size=1, max_size=40),     # words, some > 16 bytes
    st.text(alphabet=st.sampled_from(list("aQ.,'()-\"*")), min_size=1, max_size=24),  # punctuation inside
    st.text(alphabet=st.sampled_from(["é", "Ω", "日", "😀", "\u00a0", "\u2014", "\u200b", "Ä", "x"]),
            min_size=1, max_size=6),                                             # non-ASCII runs
    st.text(alphabet=st.sampled_from(list(" \t\n\x00\x7f\x1f")), min_size=1, max_size=3),  # separators
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_TOKEN, max_size=60).map("".join))
def test_word_scanner_equals_hashing_the_normalised_words(text):
    """The AVX2 word scanner (runs on bitmaps, pshufb compaction, normalize() only around
    non-ASCII runs) gives the same word hashes as normalising the whole text first. Runs
    of up to 40 bytes cross the 16-byte fast path and the 64-byte block boundaries."""
    want = _native.word_hashes(text, False)
    assert _native.word_hashes(text, True) == want
    assert len(want) == len(_native.shingles(text, 1, "word", False)) or not want


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.one_of(
    st.characters(max_codepoint=0xFF), st.characters(max_codepoint=0xFFFF, blacklist_categories=("Cs",)),
    st.characters(blacklist_categories=("Cs",)), st.sampled_from(list("ab cd.,\n"))), max_size=80), max_size=6))
def test_str_encoded_by_workers_equals_utf8_bytes(texts):
    """Non-ASCII str items (Latin-1, UCS-2 and UCS-4 storage) are encoded to UTF-8 by the
    worker threads; the result equals passing the UTF-8 bytes."""
    as_bytes = [t.encode("utf-8") for t in texts]
    assert np.array_equal(minhash(texts, num_perm=16), minhash(as_bytes, num_perm=16))
    for shingle in ("word", "char"):
        v1, o1 = _native.shingle_sets(texts, 3, shingle, 1)
        v2, o2 = _native.shingle_sets(as_bytes, 3, shingle, 1)
        assert np.array_equal(v1, v2) and np.array_equal(o1, o2)


def test_lone_surrogate_is_named():
    for bad in ("\ud800", "caf\u00e9 \udfff", "日本 \ud83d x", "😀\udc00"):
        with pytest.raises(ValueError, match=r"texts\[1\].*surrogate"):
            minhash(["fine", bad])


def test_word_scanner_on_block_boundaries():
    """Words ending exactly at byte 64, 128 and at the end of a 64-byte-multiple text."""
    for n in (63, 64, 65, 127, 128, 129):
        for text in ("a" * n, ("ab " * 64)[:n], ("x." * 64)[:n], "w" * (n - 1) + " ", " " + "v" * (n - 1)):
            assert _native.word_hashes(text, True) == _native.word_hashes(text, False), (n, text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=200), st.integers(1, 5))
def test_ascii_normalisation_matches_reference(text, n):
    cleaned = "".join(" " if (ord(c) < 0x21 or c == "\x7f") else c for c in text)
    words = "".join(c for c in cleaned if c.isalnum() or c in "_ ").lower().split()
    want = [] if not words else ([" ".join(words)] if len(words) <= n else
                                 [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)])
    assert shingles(text, n) == want


def test_device_choice_is_checked():
    with pytest.raises(ValueError, match="device"):
        minhash(["a b c"], device="tpu")
    assert np.array_equal(minhash(["a b c d e f"], device="cpu"), minhash(["a b c d e f"]))
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            minhash(["a b c"], device="cuda")
