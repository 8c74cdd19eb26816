// The byte-level LRA tasks (specs/lra.md §3.2, §3.3): IMDb reviews from the aclImdb tree (Text) and AAN document
// pairs from the release's TSV files (Retrieval), encoded as byte + 1 (pad 0, vocab 257).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "apps/data/sequences.h"
#include "apps/data/split.h"  // TrainValSplit

namespace mixgrad::data {

inline constexpr int64_t kByteVocab = 257;  // 0 = padding, byte b -> b + 1

// The first max_len bytes of `text` as ids byte + 1 (max_len >= 0).
std::vector<int32_t> encode_bytes(std::string_view text, int64_t max_len);

// IMDb from the standard tree `aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt`; `root` is the aclImdb folder or
// the folder holding it, `split` is "train" or "test", `unsup/` is ignored. Samples: every `*.txt` of neg/ (label 0)
// then of pos/ (label 1), each folder in sorted file-name (byte) order; num_classes 2, vocab_size 257; reviews longer
// than max_len bytes keep their first max_len (the number so cut is added to *truncated when given). An unreadable
// or empty file is counted and skipped in `report` (an error when report == nullptr). A missing split or class
// folder, or a class folder without `*.txt` files or usable ones, is an error.
SequenceSet read_imdb_tree(const std::filesystem::path& root, const std::string& split, int64_t max_len,
                           ReadReport* report, int64_t* truncated = nullptr);

// The project's IMDb validation split (specs/lra.md §9.2) of a read_imdb_tree("train") set: per class, the last
// `fraction` of its samples in set order (= sorted file order) go to validation, rounded to the nearest count and
// at least one; the rest train. Throws when a class has fewer than 2 samples or fraction is not in (0, 1).
TrainValSplit imdb_validation_split(const SequenceSet& train, double fraction = 0.1);

// AAN pairs from `new_aan_pairs.{train,eval,test}.tsv`: no header, 5 tab-separated fields `label id1 id2 text1
// text2`, quotes literal, LF or CRLF. The label is read as a number and must be exactly 0 or 1 (`0`, `1`, `0.0`,
// `1.0`, ...). Result: paired (text1 -> sample, text2 -> sample2), num_classes 2, vocab_size 257, each document cut
// to its first max_len bytes (cut documents added to *truncated when given). Rows with != 5 fields, another label
// or an empty text are counted and skipped in `report` (an error when report == nullptr). A missing or empty file,
// or one without a usable row, is an error.
SequenceSet read_aan_tsv(const std::filesystem::path& path, int64_t max_len, ReadReport* report,
                         int64_t* truncated = nullptr);

}  // namespace mixgrad::data
