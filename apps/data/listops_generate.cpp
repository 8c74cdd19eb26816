// ListOps generator (specs/lra.md §4.2): random trees from one DataRng stream, length filter, dedup, split.
#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "apps/data/listops.h"
#include "apps/data/listops_internal.h"
#include "apps/data/random.h"
#include "engine/error.h"

namespace mixgrad::data {
namespace {

constexpr int kMaxDepthLimit = 100;  // the drawer recurses once per level

std::invalid_argument config_error(const std::string& what) {
  return std::invalid_argument("ListOps generator config: " + what);
}

// The longest tree the depth and arity limits allow (every node above max_depth an operator with max_args
// children), capped so it cannot overflow.
int64_t longest_possible_tree(const ListOpsConfig& cfg) {
  const int64_t cap = int64_t{1} << 40;
  int64_t length = 1;  // a leaf at max_depth
  for (int d = cfg.max_depth - 1; d >= 1 && length < cap; --d) length = std::min(cap, 2 + cfg.max_args * length);
  return length;
}

void validate(const ListOpsConfig& cfg) {
  if (cfg.min_length < 0 || cfg.max_length < cfg.min_length + 2)
    throw config_error("no length L with min_length " + std::to_string(cfg.min_length) + " < L < max_length " +
                       std::to_string(cfg.max_length) + "; expected 0 <= min_length and min_length + 2 <= max_length");
  if (cfg.max_depth < 1 || cfg.max_depth > kMaxDepthLimit)
    throw config_error("max_depth " + std::to_string(cfg.max_depth) + ", expected 1.." +
                       std::to_string(kMaxDepthLimit));
  if (cfg.max_args < 2) throw config_error("max_args " + std::to_string(cfg.max_args) + ", expected >= 2");
  if (!(cfg.value_p > 0.0 && cfg.value_p < 1.0))
    throw config_error("value_p " + std::to_string(cfg.value_p) + ", expected 0 < value_p < 1");
  if (cfg.train < 0 || cfg.val < 0 || cfg.test < 0 || cfg.train + cfg.val + cfg.test < 1)
    throw config_error("sample counts train " + std::to_string(cfg.train) + ", val " + std::to_string(cfg.val) +
                       ", test " + std::to_string(cfg.test) + ", expected each >= 0 and at least one sample");
  if (cfg.max_rejections < 1)
    throw config_error("max_rejections " + std::to_string(cfg.max_rejections) + ", expected >= 1");
  const int64_t longest = longest_possible_tree(cfg);
  if (longest <= cfg.min_length)
    throw config_error("max_depth " + std::to_string(cfg.max_depth) + " and max_args " + std::to_string(cfg.max_args) +
                       " allow trees of at most " + std::to_string(longest) + " tokens, but min_length " +
                       std::to_string(cfg.min_length) + " asks for longer ones");
}

// §4.2 gen(): one tree per draw() into tree(), its value computed bottom-up as the tree is built.
class TreeDrawer {
 public:
  explicit TreeDrawer(const ListOpsConfig& cfg) : cfg_(cfg), rng_(cfg.seed) {}

  // Draws a tree and returns its length. A tree is abandoned as soon as it reaches max_length: the filter rejects
  // it whatever the rest would be, and trees are independent, so the accepted trees keep their distribution.
  int64_t draw() {
    tree_.clear();
    length_ = 0;
    value_ = draw_node(1);
    return length_;
  }
  const ListOpsTree& tree() const { return tree_; }
  int32_t value() const { return value_; }

 private:
  int32_t draw_node(int depth) {
    const double r = depth < cfg_.max_depth ? rng_.uniform() : 1.0;
    if (r > cfg_.value_p) {
      const auto digit = static_cast<int32_t>(rng_.randint(0, 9));
      tree_.push_back({kListOpsDigit0 + digit, 0});
      ++length_;
      return digit;
    }
    const auto n = static_cast<int32_t>(rng_.randint(2, cfg_.max_args));
    const size_t slot = tree_.size();
    tree_.push_back({0, n});
    length_ += 2;  // the operator and its close
    std::vector<int32_t> args;
    for (int32_t i = 0; i < n && length_ < cfg_.max_length; ++i) args.push_back(draw_node(depth + 1));
    if (length_ >= cfg_.max_length) return 0;  // abandoned; the caller discards the tree
    const int32_t op = kListOpsMin + static_cast<int32_t>(rng_.randint(0, 3));  // drawn after the children
    tree_[slot].token = op;
    return apply_listops_operator(op, args);
  }

  const ListOpsConfig& cfg_;
  DataRng rng_;
  ListOpsTree tree_;
  int64_t length_ = 0;
  int32_t value_ = 0;
};

// Equal keys <=> equal trees <=> equal rendered texts (the token sequence determines the tree); ids 1..15 packed two
// per byte keep the set of 100,000 keys near 50 MB instead of the texts' ~400 MB.
std::string dedup_key(const std::vector<int32_t>& tokens) {
  std::string key((tokens.size() + 1) / 2, '\0');
  for (size_t i = 0; i < tokens.size(); ++i) key[i / 2] = static_cast<char>(key[i / 2] | (tokens[i] << (4 * (i % 2))));
  return key;
}

ListOpsSplit split_of(int64_t index, const ListOpsConfig& cfg) {
  if (index < cfg.train) return ListOpsSplit::kTrain;
  return index < cfg.train + cfg.val ? ListOpsSplit::kVal : ListOpsSplit::kTest;
}

[[noreturn]] void throw_exhausted(const ListOpsConfig& cfg, int64_t accepted, const ListOpsStats& s) {
  throw Error("ListOps generator: no new sample in " + std::to_string(cfg.max_rejections) + " draws in a row (" +
              std::to_string(accepted) + " of " + std::to_string(cfg.train + cfg.val + cfg.test) + " accepted after " +
              std::to_string(s.draws) + " draws: " + std::to_string(s.too_short) + " too short, " +
              std::to_string(s.too_long) + " too long, " + std::to_string(s.duplicates) +
              " duplicates); lengths strictly between " + std::to_string(cfg.min_length) + " and " +
              std::to_string(cfg.max_length) +
              " are too rare or their distinct trees are used up: widen the bounds, "
              "raise max_depth / max_args or ask for fewer samples");
}

}  // namespace

ListOpsStats generate_listops(const ListOpsConfig& cfg,
                              const std::function<void(ListOpsSplit, const ListOpsExample&)>& emit) {
  validate(cfg);
  TreeDrawer drawer(cfg);
  std::unordered_set<std::string> seen;
  ListOpsStats stats;
  ListOpsExample example;
  const int64_t total = cfg.train + cfg.val + cfg.test;
  int64_t accepted = 0, fruitless = 0;
  while (accepted < total) {
    if (fruitless == cfg.max_rejections) throw_exhausted(cfg, accepted, stats);
    ++stats.draws;
    ++fruitless;
    const int64_t length = drawer.draw();
    if (length <= cfg.min_length) {
      ++stats.too_short;
    } else if (length >= cfg.max_length) {
      ++stats.too_long;
    } else if (!seen.insert(dedup_key(listops_tree_tokens(drawer.tree()))).second) {
      ++stats.duplicates;
    } else {
      example.source = listops_text(drawer.tree());
      example.label = drawer.value();
      emit(split_of(accepted++, cfg), example);
      fruitless = 0;
    }
  }
  return stats;
}

ListOpsSplits generate_listops(const ListOpsConfig& cfg) {
  ListOpsSplits out;
  out.stats = generate_listops(cfg, [&](ListOpsSplit split, const ListOpsExample& ex) {
    (split == ListOpsSplit::kTrain ? out.train : split == ListOpsSplit::kVal ? out.val : out.test).push_back(ex);
  });
  return out;
}

}  // namespace mixgrad::data
