// A batch of texts as (pointer, length) views into memory owned by the caller:
// Python str objects' cached UTF-8, bytes objects, or an Arrow string array's data
// buffer. Hot paths see only this; the bindings build it without copying text.
//
// A binding may defer encoding: a non-ASCII str is then passed as its PEP 393 code
// units (1, 2 or 4 bytes each) and the worker thread that reads it encodes it to UTF-8
// in its own buffer (utf8()), in parallel and without the GIL, instead of CPython
// encoding every such str on one thread and caching a copy on the object.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fastsynth {

struct WideText {
  const void* data = nullptr;  // nullptr: the item is texts[i]
  size_t length = 0;           // code units
  uint8_t kind = 0;            // bytes per code unit: 1, 2 or 4
};

struct TextBatch {
  std::vector<std::string_view> texts;
  // valid[i] == 0 marks a missing value (an Arrow null); hot paths return NaN for it.
  std::vector<uint8_t> valid;
  // Empty, or one entry per text: a set entry replaces texts[i] (deferred encoding).
  std::vector<WideText> wide;

  size_t size() const { return texts.size(); }
  bool is_valid(size_t i) const { return valid.empty() || valid[i] != 0; }
  // Item i as UTF-8: texts[i], or wide[i] encoded into buf (which the caller reuses).
  // Throws std::invalid_argument naming the item if it holds a lone surrogate.
  std::string_view utf8(size_t i, std::string& buf) const {
    if (wide.empty() || !wide[i].data) return texts[i];
    return encode_utf8(wide[i], i, buf);
  }

  static std::string_view encode_utf8(const WideText& w, size_t index, std::string& buf);
};

}  // namespace fastsynth
