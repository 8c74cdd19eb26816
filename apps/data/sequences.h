// Labelled token sequences in memory (the LRA text and pixel tasks): every sample's int32 tokens stored back to
// back without padding, with an optional second document per sample (Retrieval), and the report of a reader that
// counts and skips bad records instead of failing on the first.
#pragma once
#include <algorithm>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace mixgrad::data {

// Sample i's tokens are tokens[offsets[i], offsets[i + 1]); with two documents per sample, the second one's are
// tokens2[offsets2[i], offsets2[i + 1]). Token id 0 is padding and never appears inside a stored sample of a text
// task (pixel tasks store raw intensities 0..255, where 0 is black, not padding: the padding mask always comes from
// the lengths).
struct SequenceSet {
  std::vector<int32_t> tokens, tokens2;
  std::vector<int64_t> offsets{0}, offsets2{0};
  std::vector<int64_t> labels;
  int64_t num_classes = 0;  // labels lie in [0, num_classes)
  int64_t vocab_size = 0;   // token ids lie in [0, vocab_size)

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  bool paired() const { return offsets2.size() > 1; }
  int64_t length(int64_t i) const { return offsets[size_t(i) + 1] - offsets[size_t(i)]; }
  int64_t length2(int64_t i) const { return offsets2[size_t(i) + 1] - offsets2[size_t(i)]; }
  std::span<const int32_t> sample(int64_t i) const {
    return {tokens.data() + offsets[size_t(i)], static_cast<size_t>(length(i))};
  }
  std::span<const int32_t> sample2(int64_t i) const {
    return {tokens2.data() + offsets2[size_t(i)], static_cast<size_t>(length2(i))};
  }
  void add(std::span<const int32_t> t, int64_t label) {
    tokens.insert(tokens.end(), t.begin(), t.end());
    offsets.push_back(static_cast<int64_t>(tokens.size()));
    labels.push_back(label);
  }
  void add_pair(std::span<const int32_t> a, std::span<const int32_t> b, int64_t label) {
    tokens2.insert(tokens2.end(), b.begin(), b.end());
    offsets2.push_back(static_cast<int64_t>(tokens2.size()));
    add(a, label);
  }
  // Every sample of `other` after this set's (both paired or both single); returns the index of its first sample.
  // Classes and vocabulary become the larger of the two.
  int64_t append(const SequenceSet& other) {
    const int64_t first = size();
    if (size() > 0 && other.size() > 0 && paired() != other.paired())
      throw std::invalid_argument("SequenceSet::append: cannot mix paired and single-document samples");
    for (int64_t i = 0; i < other.size(); ++i)
      if (other.paired())
        add_pair(other.sample(i), other.sample2(i), other.labels[size_t(i)]);
      else
        add(other.sample(i), other.labels[size_t(i)]);
    num_classes = std::max(num_classes, other.num_classes);
    vocab_size = std::max(vocab_size, other.vocab_size);
    return first;
  }
};

// What a reader skipped: the number of rows (or files) it looked at, how many it skipped, and the first few
// reasons ("basic_train.tsv:17: 3 tab-separated fields, expected 2").
struct ReadReport {
  int64_t records = 0, skipped = 0;
  std::vector<std::string> problems;  // at most kMaxProblems, in the order met
  static constexpr size_t kMaxProblems = 20;
  void skip(std::string why) {
    ++skipped;
    if (problems.size() < kMaxProblems) problems.push_back(std::move(why));
  }
};

}  // namespace mixgrad::data
