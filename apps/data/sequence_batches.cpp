// SequenceBatches: copy each sample's tokens into a zero-initialised [B, L] buffer and record its length.
#include "apps/data/sequence_batches.h"

#include <algorithm>
#include <span>
#include <stdexcept>
#include <string>

#include "engine/error.h"

namespace mixgrad::data {

SequenceBatches::SequenceBatches(const SequenceSet& set, SequencePadding padding) : set_(set), padding_(padding) {
  if (padding_.multiple < 1 || padding_.fixed_length < 0)
    throw Error("SequenceBatches: padding multiple " + std::to_string(padding_.multiple) +
                " must be >= 1 and fixed length " + std::to_string(padding_.fixed_length) + " >= 0");
  if (padding_.fixed_length > 0 && padding_.fixed_length % padding_.multiple != 0)
    throw Error("SequenceBatches: fixed length " + std::to_string(padding_.fixed_length) + " is not a multiple of " +
                std::to_string(padding_.multiple));
  for (int64_t i = 0; i < set.size(); ++i) {
    if (set.length(i) < 1 || (set.paired() && set.length2(i) < 1))
      throw Error("SequenceBatches: sample " + std::to_string(i) + " is empty");
    const int64_t longest = std::max(set.length(i), set.paired() ? set.length2(i) : 0);
    if (padding_.fixed_length > 0 && longest > padding_.fixed_length)
      throw Error("SequenceBatches: sample " + std::to_string(i) + " has " + std::to_string(longest) +
                  " tokens, more than the fixed length " + std::to_string(padding_.fixed_length));
  }
}

int64_t SequenceBatches::padded_length(int64_t longest) const {
  if (padding_.fixed_length > 0) return padding_.fixed_length;
  return (longest + padding_.multiple - 1) / padding_.multiple * padding_.multiple;
}

namespace {
// Copies the samples `get(index)` into tokens [B, L] (zeros after each sample) and lengths [B]; returns L.
template <class Get>
int64_t pack(const SequenceBatches& ds, const std::vector<int64_t>& indices, Get get, std::vector<int32_t>& tokens,
             std::vector<int32_t>& lengths) {
  int64_t longest = 1;
  for (int64_t i : indices) longest = std::max<int64_t>(longest, int64_t(get(i).size()));
  const int64_t len = ds.padded_length(longest);
  tokens.assign(indices.size() * size_t(len), 0);
  lengths.resize(indices.size());
  for (size_t r = 0; r < indices.size(); ++r) {
    const std::span<const int32_t> s = get(indices[r]);
    std::copy(s.begin(), s.end(), tokens.begin() + int64_t(r) * len);
    lengths[r] = int32_t(s.size());
  }
  return len;
}
}  // namespace

void SequenceBatches::fill(Batch& batch, const std::vector<int64_t>& indices, const BatchRequest&) const {
  batch.seq_len = pack(
      *this, indices, [&](int64_t i) { return set_.sample(i); }, batch.tokens, batch.lengths);
  if (set_.paired())
    batch.seq_len2 = pack(
        *this, indices, [&](int64_t i) { return set_.sample2(i); }, batch.tokens2, batch.lengths2);
}

}  // namespace mixgrad::data
