// The only file that knows about Python. It turns Python inputs into TextBatch views
// (no text is copied), checks arguments, releases the GIL and calls the hot paths.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "compression.h"
#include "heuristics.h"
#include "lsh.h"
#include "minhash.h"
#include "pack.h"
#include "word_scan.h"
#include "quant_matvec.h"
#include "sha1.h"
#include "text_batch.h"

namespace py = pybind11;
using namespace fastsynth;

namespace fastsynth {
void register_decode(py::module_& m);  // decode_bindings.cpp
}  // namespace fastsynth

namespace {

// An Arrow string array's buffers, built by fastsynth._texts from a pyarrow array:
// data (the UTF-8 bytes), offsets (n+1 int64, already shifted by the array's slice
// offset) and an optional validity mask (n uint8, 0 = null).
struct ArrowTexts {
  py::buffer data;
  py::array_t<int64_t, py::array::c_style | py::array::forcecast> offsets;
  py::object valid;  // None or uint8 array
};

// A TextBatch plus the Python references that keep its memory alive.
struct HeldBatch {
  TextBatch batch;
  std::vector<py::object> owners;
};

// defer_encoding: non-ASCII str items are passed as their code units and encoded to
// UTF-8 by the worker threads (TextBatch::utf8); hot paths that read items through
// utf8() opt in. Otherwise CPython encodes (and caches) each one here.
HeldBatch to_batch(const py::handle& texts, bool defer_encoding = false) {
  HeldBatch held;
  if (py::isinstance<ArrowTexts>(texts)) {
    auto& a = texts.cast<ArrowTexts&>();
    py::buffer_info data = a.data.request();
    auto off = a.offsets.unchecked<1>();
    if (off.shape(0) < 1) throw py::value_error("texts: Arrow offsets must hold n + 1 entries");
    const size_t n = static_cast<size_t>(off.shape(0) - 1);
    const char* base = static_cast<const char*>(data.ptr);
    const int64_t size = static_cast<int64_t>(data.size * data.itemsize);
    held.batch.texts.resize(n);
    for (size_t i = 0; i < n; ++i) {
      int64_t b = off(i), e = off(i + 1);
      if (b < 0 || e < b || e > size)
        throw py::value_error("texts: Arrow offsets out of range at index " + std::to_string(i));
      held.batch.texts[i] = std::string_view(base + b, static_cast<size_t>(e - b));
    }
    if (!a.valid.is_none()) {
      auto v = a.valid.cast<py::array_t<uint8_t, py::array::c_style | py::array::forcecast>>();
      if (static_cast<size_t>(v.size()) != n) throw py::value_error("texts: validity mask length differs");
      held.batch.valid.assign(v.data(), v.data() + n);
    }
    held.owners.push_back(py::reinterpret_borrow<py::object>(texts));
    return held;
  }
  if (!py::isinstance<py::list>(texts) && !py::isinstance<py::tuple>(texts))
    throw py::type_error("texts must be a list of str or bytes, or a pyarrow string array");
  py::sequence seq = py::reinterpret_borrow<py::sequence>(texts);
  const size_t n = seq.size();
  held.batch.texts.resize(n);
  held.owners.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    py::object item = seq[i];
    PyObject* o = item.ptr();
    if (PyUnicode_Check(o) && defer_encoding && !PyUnicode_IS_ASCII(o)) {
      if (held.batch.wide.empty()) held.batch.wide.resize(n);
      held.batch.wide[i] = WideText{PyUnicode_DATA(o), static_cast<size_t>(PyUnicode_GET_LENGTH(o)),
                                    static_cast<uint8_t>(PyUnicode_KIND(o))};
    } else if (PyUnicode_Check(o)) {
      Py_ssize_t len = 0;
      const char* p = PyUnicode_AsUTF8AndSize(o, &len);
      if (!p) {
        PyErr_Clear();
        throw py::value_error("texts[" + std::to_string(i) +
                              "] cannot be encoded as UTF-8 (it holds a lone surrogate)");
      }
      held.batch.texts[i] = std::string_view(p, static_cast<size_t>(len));
    } else if (PyBytes_Check(o)) {
      held.batch.texts[i] = std::string_view(PyBytes_AS_STRING(o), static_cast<size_t>(PyBytes_GET_SIZE(o)));
    } else {
      throw py::type_error("texts[" + std::to_string(i) + "] must be str or bytes, got " +
                           std::string(Py_TYPE(o)->tp_name));
    }
    held.owners.push_back(std::move(item));
  }
  return held;
}

int check_threads(int threads) {
  if (threads < 0) throw py::value_error("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
  return threads;
}

// Runs fn with the GIL released, turning C++ argument errors into ValueError.
template <class Fn>
void without_gil(Fn&& fn) {
  try {
    py::gil_scoped_release release;
    fn();
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
}


// ---- dedup (MinHash, LSH) helpers ----------------------------------------------
using U32Array = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>;
using U64Array = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
using I64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

// Hands a vector's memory to numpy without copying it.
template <class T>
py::array_t<T> vector_to_numpy(std::vector<T>&& v) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(static_cast<py::ssize_t>(heap->size()), heap->data(), owner);
}

ShingleSpec make_spec(int ngram, const std::string& kind) {
  if (ngram < 1) throw py::value_error("ngram must be >= 1, got " + std::to_string(ngram));
  ShingleSpec spec;
  spec.ngram = ngram;
  if (kind == "word") spec.kind = ShingleKind::Word;
  else if (kind == "char") spec.kind = ShingleKind::Char;
  else throw py::value_error("shingle must be 'word' or 'char', got '" + kind + "'");
  return spec;
}

Scheme make_scheme(const std::string& scheme) {
  if (scheme == "fast") return Scheme::Fast;
  if (scheme == "datasketch") return Scheme::Datasketch;
  throw py::value_error("scheme must be 'fast' or 'datasketch', got '" + scheme + "'");
}

void check_perms(const U32Array& a, const U32Array& b) {
  if (a.ndim() != 1 || b.ndim() != 1 || a.size() != b.size() || a.size() < 1)
    throw py::value_error("permutations: a and b must be 1-D uint32 arrays of equal, non-zero length");
}

void check_csr(const I64Array& offsets, size_t n_values, const char* what) {
  auto o = offsets.unchecked<1>();
  if (o.shape(0) < 1 || o(0) != 0 || static_cast<size_t>(o(o.shape(0) - 1)) != n_values)
    throw py::value_error(std::string(what) + ": offsets must start at 0 and end at the number of values");
  for (py::ssize_t i = 1; i < o.shape(0); ++i)
    if (o(i) < o(i - 1)) throw py::value_error(std::string(what) + ": offsets must be non-decreasing");
}

void check_pairs(const I64Array& u, const I64Array& v, size_t n) {
  if (u.size() != v.size()) throw py::value_error("pairs: u and v differ in length");
  auto uu = u.unchecked<1>();
  auto vv = v.unchecked<1>();
  for (py::ssize_t k = 0; k < uu.shape(0); ++k)
    if (uu(k) < 0 || vv(k) < 0 || static_cast<size_t>(uu(k)) >= n || static_cast<size_t>(vv(k)) >= n)
      throw py::value_error("pairs: index out of range at position " + std::to_string(k));
}

// ---- quantised matmul helpers ---------------------------------------------------
// A C-contiguous array of dtype T, or ValueError naming the parameter.
template <class T>
void check_contiguous(const py::array& a, const char* name, const char* dtype) {
  if (!py::isinstance<py::array_t<T>>(a))
    throw py::value_error(std::string(name) + " must be a " + dtype + " array, got dtype " +
                          std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "fastsynth native hot paths (see fastsynth.quality for the documented API)";
  register_decode(m);

  py::class_<ArrowTexts>(m, "ArrowTexts")
      .def(py::init<py::buffer, py::array_t<int64_t, py::array::c_style | py::array::forcecast>, py::object>(),
           py::arg("data"), py::arg("offsets"), py::arg("valid") = py::none());

  m.def(
      "gzip_ratio",
      [](const py::handle& texts, int level, int threads, const std::string& backend) {
        DeflateBackend b;
        if (backend == "zlib") b = DeflateBackend::Zlib;
        else if (backend == "libdeflate") b = DeflateBackend::Libdeflate;
        else throw py::value_error("backend must be 'zlib' or 'libdeflate', got '" + backend + "'");
        check_threads(threads);
        HeldBatch held = to_batch(texts);
        py::array_t<double> out(static_cast<py::ssize_t>(held.batch.size()));
        double* ptr = out.mutable_data();
        without_gil([&] { gzip_ratio(held.batch, level, threads, b, ptr); });
        return out;
      },
      py::arg("texts"), py::arg("level") = 6, py::arg("threads") = 0, py::arg("backend") = "zlib");

  m.def(
      "heuristics",
      [](const py::handle& texts, int threads) {
        check_threads(threads);
        HeldBatch held = to_batch(texts);
        const auto n = static_cast<py::ssize_t>(held.batch.size());
        py::array_t<double> out({static_cast<py::ssize_t>(kNumHeuristics), n});
        double* ptr = out.mutable_data();
        without_gil([&] { heuristics(held.batch, threads, ptr); });
        return out;
      },
      py::arg("texts"), py::arg("threads") = 0);

  std::vector<std::string> names(kHeuristicNames.begin(), kHeuristicNames.end());
  m.attr("heuristic_names") = names;
  m.attr("zlib_version") = linked_zlib_version();
  m.def("libdeflate_status", [] {
    std::string why;
    bool ok = libdeflate_available(&why);
    return py::make_tuple(ok, why);
  });

  // ---- dedup (MinHash, LSH): fastsynth.dedup is the documented API ----------------
  m.def(
      "minhash",
      [](const py::handle& texts, const U32Array& a, const U32Array& b, int ngram, const std::string& shingle,
         const std::string& scheme, int threads) {
        check_perms(a, b);
        check_threads(threads);
        ShingleSpec spec = make_spec(ngram, shingle);
        Scheme sc = make_scheme(scheme);
        HeldBatch held = to_batch(texts, /*defer_encoding=*/true);
        const size_t p = static_cast<size_t>(a.size());
        py::array_t<uint32_t> out({static_cast<py::ssize_t>(held.batch.size()), static_cast<py::ssize_t>(p)});
        uint32_t* ptr = out.mutable_data();
        without_gil([&] { minhash_signatures(held.batch, spec, sc, a.data(), b.data(), p, threads, ptr); });
        return out;
      },
      py::arg("texts"), py::arg("a"), py::arg("b"), py::arg("ngram") = 5, py::arg("shingle") = "word",
      py::arg("scheme") = "fast", py::arg("threads") = 0);
  m.def(
      "shingle_prehashes",
      [](const py::handle& texts, int ngram, const std::string& shingle, const std::string& scheme, int threads) {
        check_threads(threads);
        ShingleSpec spec = make_spec(ngram, shingle);
        Scheme sc = make_scheme(scheme);
        HeldBatch held = to_batch(texts, /*defer_encoding=*/true);
        std::vector<uint32_t> values;
        std::vector<int64_t> offsets;
        without_gil([&] { shingle_prehashes(held.batch, spec, sc, threads, values, offsets); });
        return py::make_tuple(vector_to_numpy(std::move(values)), vector_to_numpy(std::move(offsets)));
      },
      py::arg("texts"), py::arg("ngram") = 5, py::arg("shingle") = "word", py::arg("scheme") = "fast",
      py::arg("threads") = 0);
  m.def(
      "minhash_from_prehash",
      [](const U32Array& values, const I64Array& offsets, const U32Array& a, const U32Array& b, int threads) {
        check_perms(a, b);
        check_threads(threads);
        check_csr(offsets, static_cast<size_t>(values.size()), "prehash");
        const size_t n = static_cast<size_t>(offsets.size() - 1), p = static_cast<size_t>(a.size());
        py::array_t<uint32_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(p)});
        uint32_t* ptr = out.mutable_data();
        without_gil([&] {
          minhash_from_prehash(values.data(), offsets.data(), n, a.data(), b.data(), p, threads, ptr);
        });
        return out;
      },
      py::arg("values"), py::arg("offsets"), py::arg("a"), py::arg("b"), py::arg("threads") = 0);
  m.def(
      "shingle_sets",
      [](const py::handle& texts, int ngram, const std::string& shingle, int threads) {
        check_threads(threads);
        ShingleSpec spec = make_spec(ngram, shingle);
        HeldBatch held = to_batch(texts, /*defer_encoding=*/true);
        std::vector<uint64_t> values;
        std::vector<int64_t> offsets;
        without_gil([&] { shingle_sets(held.batch, spec, threads, values, offsets); });
        return py::make_tuple(vector_to_numpy(std::move(values)), vector_to_numpy(std::move(offsets)));
      },
      py::arg("texts"), py::arg("ngram") = 5, py::arg("shingle") = "word", py::arg("threads") = 0);
  m.def(
      "shingles",
      [](const py::handle& text, int ngram, const std::string& shingle, bool simd) {
        ShingleSpec spec = make_spec(ngram, shingle);
        py::list one;
        one.append(text);
        HeldBatch held = to_batch(one);
        return shingles_of(held.batch.texts[0], spec, simd);
      },
      py::arg("text"), py::arg("ngram") = 5, py::arg("shingle") = "word", py::arg("simd") = true);
  m.def(
      "word_hashes",
      [](const py::handle& text, bool simd) {
        py::list one;
        one.append(text);
        HeldBatch held = to_batch(one);
        WordScanScratch scratch;
        std::vector<uint64_t> out;
        normalized_word_hashes(held.batch.texts[0], scratch, out, simd);
        return out;
      },
      "word_hash (hash64.h) of each word of the normalised text, from the word scanner (for tests)",
      py::arg("text"), py::arg("simd") = true);
  m.def("sha1", [](const py::bytes& data) {
    std::string_view s = data;
    uint8_t d[20];
    sha1(s.data(), s.size(), d);
    return py::bytes(reinterpret_cast<const char*>(d), 20);
  });
  m.def("hash64", [](const py::bytes& data) {
    std::string_view s = data;
    return hash64(s.data(), s.size());
  });
  m.def("fold_case", [](uint32_t cp) { return fold_case(cp); });
  m.def(
      "shingle_hash64",
      [](const py::bytes& shingle, const std::string& kind) {
        return shingle_hash64(std::string_view(shingle), make_spec(1, kind).kind);
      },
      py::arg("shingle"), py::arg("shingle_kind") = "word");
  m.def(
      "band_keys",
      [](const U32Array& sigs, int bands, int rows, int threads) {
        check_threads(threads);
        if (sigs.ndim() != 2) throw py::value_error("sigs must be a 2-D (n, num_perm) uint32 array");
        const size_t n = static_cast<size_t>(sigs.shape(0)), p = static_cast<size_t>(sigs.shape(1));
        if (bands < 1 || rows < 1 || static_cast<size_t>(bands) * static_cast<size_t>(rows) > p)
          throw py::value_error("bands * rows must be between 1 and num_perm (" + std::to_string(p) + ")");
        py::array_t<uint64_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(bands)});
        uint64_t* ptr = out.mutable_data();
        without_gil([&] { band_keys(sigs.data(), n, p, bands, rows, threads, ptr); });
        return out;
      },
      py::arg("sigs"), py::arg("bands"), py::arg("rows"), py::arg("threads") = 0);
  m.def(
      "bucket_pairs",
      [](const U64Array& keys, const I64Array& ids, int64_t max_all) {
        if (keys.size() != ids.size()) throw py::value_error("keys and ids differ in length");
        // A negative max_all would become a huge size_t: every bucket all-pairs (quadratic).
        if (max_all < 0) throw py::value_error("max_all must be >= 0");
        std::vector<int64_t> u, v;
        without_gil([&] {
          bucket_pairs(keys.data(), ids.data(), static_cast<size_t>(keys.size()), static_cast<size_t>(max_all), u, v);
        });
        return py::make_tuple(vector_to_numpy(std::move(u)), vector_to_numpy(std::move(v)));
      },
      py::arg("keys"), py::arg("ids"), py::arg("max_all") = 32);
  m.def(
      "pair_jaccard",
      [](const U64Array& values, const I64Array& offsets, const I64Array& u, const I64Array& v, int threads) {
        check_threads(threads);
        check_csr(offsets, static_cast<size_t>(values.size()), "shingle sets");
        check_pairs(u, v, static_cast<size_t>(offsets.size() - 1));
        py::array_t<double> out(u.size());
        double* ptr = out.mutable_data();
        without_gil([&] {
          pair_jaccard(values.data(), offsets.data(), u.data(), v.data(), static_cast<size_t>(u.size()), threads, ptr);
        });
        return out;
      },
      py::arg("values"), py::arg("offsets"), py::arg("u"), py::arg("v"), py::arg("threads") = 0);
  m.def(
      "union_pairs",
      [](py::array_t<int64_t, py::array::c_style> parent, const I64Array& u, const I64Array& v, const py::object& keep) {
        const size_t n = static_cast<size_t>(parent.size());
        auto pp = parent.unchecked<1>();
        for (size_t i = 0; i < n; ++i)
          if (pp(i) < 0 || static_cast<size_t>(pp(i)) > i) throw py::value_error("parent is not a valid union-find array");
        check_pairs(u, v, n);
        py::array_t<uint8_t, py::array::c_style | py::array::forcecast> k;
        const uint8_t* kp = nullptr;
        if (!keep.is_none()) {
          k = keep.cast<py::array_t<uint8_t, py::array::c_style | py::array::forcecast>>();
          if (k.size() != u.size()) throw py::value_error("keep must have one flag per pair");
          kp = k.data();
        }
        int64_t* ptr = parent.mutable_data();
        without_gil([&] { union_pairs(ptr, n, u.data(), v.data(), kp, static_cast<size_t>(u.size())); });
      },
      py::arg("parent"), py::arg("u"), py::arg("v"), py::arg("keep") = py::none());
  m.def(
      "resolve_roots",
      [](py::array_t<int64_t, py::array::c_style> parent) {
        int64_t* ptr = parent.mutable_data();
        const size_t n = static_cast<size_t>(parent.size());
        // resolve_roots reads parent[parent[i]]: an entry outside [0, i] would read out of
        // bounds (the same invariant union_pairs checks).
        for (size_t i = 0; i < n; ++i)
          if (ptr[i] < 0 || static_cast<size_t>(ptr[i]) > i) throw py::value_error("parent is not a valid union-find array");
        without_gil([&] { resolve_roots(ptr, n); });
      },
      py::arg("parent"));

  // ---- sequence packing: fastsynth.train.packing is the API -------------------------
  m.def(
      "pack",
      [](const py::array& lengths, int64_t seq_len, const std::string& method) {
        PackMethod mth;
        if (method == "best-fit") mth = PackMethod::BestFit;
        else if (method == "first-fit") mth = PackMethod::FirstFit;
        else if (method == "concat") mth = PackMethod::Concat;
        else throw py::value_error("method must be 'best-fit', 'first-fit' or 'concat', got '" + method + "'");
        check_contiguous<int64_t>(lengths, "lengths", "int64");
        if (lengths.ndim() != 1) throw py::value_error("lengths must be 1-D, got " + std::to_string(lengths.ndim()) + "-D");
        const int64_t* lp = static_cast<const int64_t*>(lengths.data());
        const size_t n = static_cast<size_t>(lengths.shape(0));
        std::vector<Piece> pieces;
        without_gil([&] { pieces = pack(lp, n, seq_len, mth); });
        // Piece is four int64s: hand the memory to numpy as an (n, 4) array.
        static_assert(sizeof(Piece) == 4 * sizeof(int64_t), "Piece must be four packed int64");
        auto* heap = new std::vector<Piece>(std::move(pieces));
        py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<Piece>*>(p); });
        return py::array_t<int64_t>({static_cast<py::ssize_t>(heap->size()), py::ssize_t{4}},
                                    reinterpret_cast<const int64_t*>(heap->data()), owner);
      },
      "Pieces (row, doc, start, length) as an (n, 4) int64 array; see fastsynth.train.pack",
      py::arg("lengths"), py::arg("seq_len"), py::arg("method") = "best-fit");

  // ---- quantised weights (GGML blocks): fastsynth.model.quant_linear is the API ------
  m.def("quant_simd_available", &quant_simd_available);
  m.def("quant_avx512_available", &quant_avx512_available,
        "True when batched GGUF-block products use AVX-512 tiles on this CPU.");
  m.def("quant_allow_avx512", &quant_allow_avx512, py::arg("allowed"),
        "Allow (default) or forbid the AVX-512 tiles process-wide; returns the previous setting.");
  m.def(
      "quant_matmul",
      [](const py::array& blocks, const std::string& fmt, py::ssize_t out_features, const py::array& x,
         py::object out, int threads, bool simd) {
        QuantFormat f;
        if (fmt == "q4_1" || fmt == "Q4_1") f = QuantFormat::Q4_1;
        else if (fmt == "q8_0" || fmt == "Q8_0") f = QuantFormat::Q8_0;
        else throw py::value_error("fmt must be 'q4_1' or 'q8_0', got '" + fmt + "'");
        check_threads(threads);
        if (out_features < 1) throw py::value_error("out_features must be >= 1, got " + std::to_string(out_features));
        check_contiguous<float>(x, "x", "float32");
        if (x.ndim() != 2) throw py::value_error("x must be 2-D (batch, in_features), got " + std::to_string(x.ndim()) + "-D");
        const size_t batch = static_cast<size_t>(x.shape(0)), in = static_cast<size_t>(x.shape(1));
        if (in == 0 || in % kQuantBlock != 0)
          throw py::value_error("x: in_features must be a positive multiple of 32 (the block size), got " + std::to_string(in));
        check_contiguous<uint8_t>(blocks, "blocks", "uint8");
        const size_t want = static_cast<size_t>(out_features) * (in / kQuantBlock) * quant_block_bytes(f);
        if (static_cast<size_t>(blocks.nbytes()) != want)
          throw py::value_error("blocks: expected " + std::to_string(want) + " bytes for " + std::to_string(out_features) +
                                " x " + std::to_string(in) + " " + fmt + " weights, got " + std::to_string(blocks.nbytes()));
        py::array_t<float> y;
        if (out.is_none()) {
          y = py::array_t<float>({static_cast<py::ssize_t>(batch), out_features});
        } else {
          if (!py::isinstance<py::array>(out)) throw py::value_error("out must be a float32 numpy array or None");
          py::array o = out.cast<py::array>();
          check_contiguous<float>(o, "out", "float32");
          if (o.ndim() != 2 || static_cast<size_t>(o.shape(0)) != batch || o.shape(1) != out_features)
            throw py::value_error("out must have shape (" + std::to_string(batch) + ", " + std::to_string(out_features) + ")");
          if (!o.writeable()) throw py::value_error("out must be writeable");
          y = o.cast<py::array_t<float>>();
          const char *xb = static_cast<const char*>(x.data()), *yb = reinterpret_cast<const char*>(y.data());
          if (yb < xb + x.nbytes() && xb < yb + y.nbytes()) throw py::value_error("out must not overlap x");
        }
        const uint8_t* bp = static_cast<const uint8_t*>(blocks.data());
        const float* xp = static_cast<const float*>(x.data());
        float* yp = y.mutable_data();
        without_gil([&] { quant_matmul(bp, f, static_cast<size_t>(out_features), in, xp, batch, yp, threads, simd); });
        return y;
      },
      py::arg("blocks"), py::arg("fmt"), py::arg("out_features"), py::arg("x"), py::arg("out") = py::none(),
      py::arg("threads") = 0, py::arg("simd") = true);
}
