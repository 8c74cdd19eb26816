// ListOps (LRA, specs/lra.md §3.1, §4): the tree generator, its text rendering, the tokenizer to the project's
// fixed ids, the stack-machine evaluator, and the release-format TSV writer and reader.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "apps/data/sequences.h"

namespace mixgrad::data {

// Project token ids (fixed, §3.1): PAD 0, digits 0..9 -> 1..10, operators, close bracket (`]` or `X`).
inline constexpr int32_t kListOpsPad = 0, kListOpsDigit0 = 1, kListOpsMin = 11, kListOpsMax = 12, kListOpsMed = 13,
                         kListOpsSm = 14, kListOpsClose = 15;
inline constexpr int64_t kListOpsVocab = 16, kListOpsClasses = 10;

// §4.1 constants. Accepted trees have min_length < length < max_length (strict: 501..1999 by default), length =
// the number of tokens after tokenization.
struct ListOpsConfig {
  int64_t min_length = 500, max_length = 2000;
  int max_depth = 10;     // the root is depth 1; a node at max_depth is always a leaf
  int max_args = 10;      // an operator has 2..max_args children
  double value_p = 0.25;  // probability that a node at depth < max_depth is an operator; in (0, 1)
  int64_t train = 96000, val = 2000, test = 2000;
  uint64_t seed = 0;
  // Generation fails (instead of looping forever) after this many draws in a row that yield no new sample: the
  // bounds are (nearly) unreachable or every distinct tree of those lengths is already taken.
  int64_t max_rejections = 1000000;
};

// A ListOps tree in pre-order: each node is a digit (token 1..10, arity 0) or an operator (token 11..14) followed by
// its `arity` children, each child's whole subtree before the next. {{kListOpsMax, 2}, {3, 0}, {10, 0}} = [MAX 2 9].
struct ListOpsNode {
  int32_t token = 0;
  int32_t arity = 0;
};
using ListOpsTree = std::vector<ListOpsNode>;

// §4.2 rendering, left-nested pairs: [MAX 2 9 ] is "( ( ( [MAX 2 ) 9 ) ] )". Throws on a malformed tree.
std::string listops_text(const ListOpsTree& tree);

// §3.1 official tokenization (`]` -> close, `(` and `)` deleted, split on whitespace) to the ids above. Throws
// std::invalid_argument naming an unknown token.
std::vector<int32_t> tokenize_listops(std::string_view source);

// §4.3 stack machine over token ids: MIN, MAX, SM = sum mod 10, MED = int(np.median) (even count: floor of the
// mean of the two middle values). Returns 0..9; throws std::invalid_argument on a malformed sequence (padding or an
// unknown id inside it, a close without an open operator, an operator closed without arguments, operators left
// open, a second top-level value, nothing at all).
int32_t evaluate_listops(std::span<const int32_t> tokens);

enum class ListOpsSplit { kTrain, kVal, kTest };

struct ListOpsExample {
  std::string source;  // the rendered text (§4.2)
  int32_t label = 0;   // the tree's value 0..9
};

// What generation drew: every tree counts once in `draws`; rejected ones in exactly one of the other counters.
struct ListOpsStats {
  int64_t draws = 0, too_short = 0, too_long = 0, duplicates = 0;
};

// §4.2 build(): draws trees from DataRng(cfg.seed) until cfg.train + cfg.val + cfg.test distinct ones (dedup on the
// rendered text) fall inside the length bounds, and hands each to `emit` in first-seen order: the first cfg.train
// to kTrain, the next cfg.val to kVal, the rest to kTest. Throws std::invalid_argument on a configuration that can
// never give a sample, std::runtime_error after cfg.max_rejections fruitless draws in a row.
ListOpsStats generate_listops(const ListOpsConfig& cfg,
                              const std::function<void(ListOpsSplit, const ListOpsExample&)>& emit);

// The same examples collected in memory (small configurations; write_listops_tsv streams the full-size set).
struct ListOpsSplits {
  std::vector<ListOpsExample> train, val, test;
  ListOpsStats stats;
};
ListOpsSplits generate_listops(const ListOpsConfig& cfg);

// Writes `dir`/basic_{train,val,test}.tsv (creating `dir`) byte-compatible with the LRA release: header
// "Source\tTarget", one "<source>\t<label>" row per example, CRLF line ends. Each file is written under a temporary
// name and renamed into place only after all three are complete.
ListOpsStats write_listops_tsv(const std::filesystem::path& dir, const ListOpsConfig& cfg);

// Reads a ListOps TSV file (release or generated) into token ids: num_classes 10, vocab_size 16. Lines may end in
// LF or CRLF; the first line must be the "Source\tTarget" header. A bad row (not exactly 2 fields, label not 0..9,
// unknown token, empty source) is counted and skipped in `report` with its line number; with report == nullptr it
// is an error. Sources longer than max_len tokens keep their first max_len; the number so cut is added to
// *truncated when given. A missing file, an empty or header-only file, or a file with no usable row is an error.
SequenceSet read_listops_tsv(const std::filesystem::path& path, int64_t max_len, ReadReport* report,
                             int64_t* truncated = nullptr);

}  // namespace mixgrad::data
