#include "compression.h"

#include <dlfcn.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "parallel.h"

namespace fastsynth {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Documents are claimed in chunks of this many: small enough to balance a corpus whose
// lengths vary 1000x, large enough that the atomic counter is not contended.
constexpr size_t kChunk = 16;
// Output is only counted, never kept, so deflate writes into a reused scratch buffer.
// At levels >= 1 the deflate stream does not depend on how much output space each
// call gets, but at level 0 (stored blocks) zlib sizes each block by avail_out. To be
// bit-identical there too, the buffer is offered in CPython's (3.10+) growth schedule
// for zlib.compress: 32 KiB, 64 KiB, 256 KiB, 1 MiB, 4, 8, 16, 16, 32 MiB, ...
constexpr size_t kKiB = 1024, kMiB = 1024 * 1024;
constexpr size_t kCPythonBlocks[] = {32 * kKiB, 64 * kKiB, 256 * kKiB, 1 * kMiB, 4 * kMiB,
                                     8 * kMiB, 16 * kMiB, 16 * kMiB, 32 * kMiB, 32 * kMiB,
                                     32 * kMiB, 32 * kMiB, 64 * kMiB, 64 * kMiB, 128 * kMiB,
                                     128 * kMiB, 256 * kMiB};
inline size_t cpython_block(size_t k) {
  constexpr size_t n = sizeof(kCPythonBlocks) / sizeof(kCPythonBlocks[0]);
  return kCPythonBlocks[k < n ? k : n - 1];
}

// One z_stream per thread, initialised once and reset per document: deflateInit2
// allocates ~256 KiB and clears the hash table, which would dominate short documents.
// deflateReset restores the identical initial state, so the output is unchanged.
class ZlibCounter {
 public:
  explicit ZlibCounter(int level) : scratch_(kCPythonBlocks[0]) {
    stream_.zalloc = Z_NULL;
    stream_.zfree = Z_NULL;
    stream_.opaque = Z_NULL;
    // The exact parameters of CPython's zlib.compress(data, level): window bits 15
    // (zlib container), memLevel 8 (DEF_MEM_LEVEL), default strategy.
    if (deflateInit2(&stream_, level, Z_DEFLATED, MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      throw std::runtime_error("zlib deflateInit2 failed");
  }
  ~ZlibCounter() { deflateEnd(&stream_); }
  ZlibCounter(const ZlibCounter&) = delete;
  ZlibCounter& operator=(const ZlibCounter&) = delete;

  size_t compressed_size(std::string_view text) {
    if (deflateReset(&stream_) != Z_OK) throw std::runtime_error("zlib deflateReset failed");
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
    // Feed in pieces that fit uInt (32-bit) so texts over 4 GiB are still correct.
    // CPython hands zlib input in pieces of at most UINT_MAX bytes and output in the
    // block schedule above; both are mirrored here.
    size_t remaining = text.size();
    size_t block = 0;
    stream_.avail_out = 0;
    for (;;) {
      uInt piece = static_cast<uInt>(std::min<size_t>(remaining, UINT32_MAX));
      stream_.avail_in = piece;
      remaining -= piece;
      int flush = remaining == 0 ? Z_FINISH : Z_NO_FLUSH;
      for (;;) {
        if (stream_.avail_out == 0) {
          size_t size = cpython_block(block++);
          if (scratch_.size() < size) scratch_.resize(size);
          stream_.next_out = scratch_.data();
          stream_.avail_out = static_cast<uInt>(size);
        }
        int rc = deflate(&stream_, flush);
        if (rc == Z_STREAM_ERROR) throw std::runtime_error("zlib deflate failed");
        if (flush == Z_FINISH ? rc == Z_STREAM_END : (stream_.avail_in == 0 && stream_.avail_out != 0)) break;
      }
      if (remaining == 0) break;
    }
    return static_cast<size_t>(stream_.total_out);
  }

 private:
  z_stream stream_{};
  std::vector<Bytef> scratch_;
};

// libdeflate, loaded at run time so that neither the build nor the import depends on
// it. The four entry points below are libdeflate's stable public C API (v1.0+).
struct Libdeflate {
  using Alloc = void* (*)(int);
  using Free = void (*)(void*);
  using Compress = size_t (*)(void*, const void*, size_t, void*, size_t);
  using Bound = size_t (*)(void*, size_t);
  Alloc alloc = nullptr;
  Free free = nullptr;
  Compress compress = nullptr;
  Bound bound = nullptr;
  std::string error;

  static const Libdeflate& get() {
    static Libdeflate lib = load();
    return lib;
  }

 private:
  static Libdeflate load() {
    Libdeflate lib;
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("FASTSYNTH_LIBDEFLATE"); env && *env) {
      candidates.emplace_back(env);
    } else {
      candidates = {"libdeflate.so.0", "libdeflate.so", "libdeflate.0.dylib", "libdeflate.dylib"};
    }
    void* handle = nullptr;
    std::string tried;
    for (const auto& name : candidates) {
      handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle) break;
      tried += (tried.empty() ? "" : ", ") + name;
    }
    if (!handle) {
      lib.error = "libdeflate not found (tried " + tried +
                  "); install it (Debian/Ubuntu: apt-get install libdeflate0) or set "
                  "FASTSYNTH_LIBDEFLATE to the library's path";
      return lib;
    }
    lib.alloc = reinterpret_cast<Alloc>(dlsym(handle, "libdeflate_alloc_compressor"));
    lib.free = reinterpret_cast<Free>(dlsym(handle, "libdeflate_free_compressor"));
    lib.compress = reinterpret_cast<Compress>(dlsym(handle, "libdeflate_zlib_compress"));
    lib.bound = reinterpret_cast<Bound>(dlsym(handle, "libdeflate_zlib_compress_bound"));
    if (!lib.alloc || !lib.free || !lib.compress || !lib.bound) {
      lib.error = "the libdeflate found lacks the zlib compression API";
      lib.alloc = nullptr;
    }
    return lib;
  }
};

class LibdeflateCounter {
 public:
  explicit LibdeflateCounter(int level) : lib_(Libdeflate::get()) {
    compressor_ = lib_.alloc(level);
    if (!compressor_) throw std::runtime_error("libdeflate_alloc_compressor failed");
  }
  ~LibdeflateCounter() { lib_.free(compressor_); }
  LibdeflateCounter(const LibdeflateCounter&) = delete;
  LibdeflateCounter& operator=(const LibdeflateCounter&) = delete;

  size_t compressed_size(std::string_view text) {
    size_t need = lib_.bound(compressor_, text.size());
    if (out_.size() < need) out_.resize(need);
    size_t n = lib_.compress(compressor_, text.data(), text.size(), out_.data(), out_.size());
    if (n == 0) throw std::runtime_error("libdeflate_zlib_compress failed");
    return n;
  }

 private:
  const Libdeflate& lib_;
  void* compressor_ = nullptr;
  std::vector<unsigned char> out_;
};

template <class Counter>
void run(const TextBatch& batch, int level, int threads, double* out) {
  const size_t n = batch.size();
  threads = resolve_threads(threads, (n + kChunk - 1) / kChunk);
  std::vector<std::unique_ptr<Counter>> counters(static_cast<size_t>(threads));
  parallel_for(n, threads, kChunk, [&](int tid, size_t begin, size_t end) {
    auto& counter = counters[static_cast<size_t>(tid)];
    if (!counter) counter = std::make_unique<Counter>(level);
    for (size_t i = begin; i < end; ++i) {
      std::string_view t = batch.texts[i];
      if (!batch.is_valid(i) || t.empty()) {
        out[i] = kNaN;
        continue;
      }
      out[i] = static_cast<double>(counter->compressed_size(t)) / static_cast<double>(t.size());
    }
  });
}

}  // namespace

std::string linked_zlib_version() { return zlibVersion(); }

bool libdeflate_available(std::string* why) {
  const auto& lib = Libdeflate::get();
  if (lib.alloc) return true;
  if (why) *why = lib.error;
  return false;
}

void gzip_ratio(const TextBatch& batch, int level, int threads, DeflateBackend backend,
                double* out) {
  if (backend == DeflateBackend::Zlib) {
    if (level < -1 || level > 9)
      throw std::invalid_argument("level must be in [-1, 9] for the zlib backend, got " +
                                  std::to_string(level));
    run<ZlibCounter>(batch, level, threads, out);
  } else {
    if (level < 0 || level > 12)
      throw std::invalid_argument("level must be in [0, 12] for the libdeflate backend, got " +
                                  std::to_string(level));
    std::string why;
    if (!libdeflate_available(&why)) throw std::runtime_error(why);
    run<LibdeflateCounter>(batch, level, threads, out);
  }
}

}  // namespace fastsynth
