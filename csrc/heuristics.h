// Gopher quality and repetition heuristics (Rae et al. 2021, Appendix A), one native
// pass per document. The exact definitions are written out in
// python/fastsynth/quality/heuristics.py and executed, slowly, by
// python/fastsynth/quality/_reference.py, which the tests compare against.
#pragma once

#include <array>
#include <string_view>

#include "text_batch.h"

namespace fastsynth {

// Column order of the output; the Python layer reads the names from here.
inline constexpr std::array<std::string_view, 26> kHeuristicNames = {
    "n_chars",
    "n_words",
    "mean_word_length",
    "symbol_word_ratio",
    "hash_word_ratio",
    "ellipsis_word_ratio",
    "frac_words_alpha",
    "n_stop_words",
    "n_lines",
    "frac_lines_end_punct",
    "frac_lines_end_ellipsis",
    "frac_lines_start_bullet",
    "dup_line_frac",
    "dup_line_char_frac",
    "dup_para_frac",
    "dup_para_char_frac",
    "top_2gram_char_frac",
    "top_3gram_char_frac",
    "top_4gram_char_frac",
    "dup_5gram_char_frac",
    "dup_6gram_char_frac",
    "dup_7gram_char_frac",
    "dup_8gram_char_frac",
    "dup_9gram_char_frac",
    "dup_10gram_char_frac",
    "n_paragraphs",
};
inline constexpr size_t kNumHeuristics = kHeuristicNames.size();

// out is column-major: out[k * batch.size() + i] is heuristic k of document i.
void heuristics(const TextBatch& batch, int threads, double* out);

}  // namespace fastsynth
