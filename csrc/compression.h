// gzip_ratio: compressed size over original size of each text's UTF-8 bytes.
#pragma once

#include <string>

#include "text_batch.h"

namespace fastsynth {

enum class DeflateBackend { Zlib, Libdeflate };

// out[i] = compressed_bytes / original_bytes for texts[i], in zlib format (2-byte
// header + deflate stream + 4-byte Adler-32), NaN for empty or missing texts.
// Zlib: the linked zlib with deflateInit2(level, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY),
// exactly what Python's zlib.compress(data, level) does, so results are bit-identical
// to len(zlib.compress(b, level)) / len(b) when both use the same zlib release.
// Libdeflate: libdeflate_zlib_compress at the same level; sizes differ from zlib's.
// Throws std::invalid_argument for a bad level, std::runtime_error if the backend is
// unavailable.
void gzip_ratio(const TextBatch& batch, int level, int threads, DeflateBackend backend,
                double* out);

// The zlib release linked into the module (zlibVersion()).
std::string linked_zlib_version();

// Whether libdeflate could be loaded; if not, *why says what was tried.
bool libdeflate_available(std::string* why);

}  // namespace fastsynth
