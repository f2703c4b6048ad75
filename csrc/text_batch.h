// A batch of texts as (pointer, length) views into memory owned by the caller:
// Python str objects' cached UTF-8, bytes objects, or an Arrow string array's data
// buffer. Hot paths see only this; the bindings build it without copying text.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace fastsynth {

struct TextBatch {
  std::vector<std::string_view> texts;
  // valid[i] == 0 marks a missing value (an Arrow null); hot paths return NaN for it.
  std::vector<uint8_t> valid;

  size_t size() const { return texts.size(); }
  bool is_valid(size_t i) const { return valid.empty() || valid[i] != 0; }
};

}  // namespace fastsynth
