// ListOps helpers shared by listops.cpp, listops_generate.cpp and listops_tsv.cpp; not part of the data API.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "apps/data/listops.h"

namespace mixgrad::data {

// MIN / MAX / MED / SM of `args` (non-empty; MED sorts it in place).
int32_t apply_listops_operator(int32_t op, std::vector<int32_t>& args);

// The tree's token ids (pre-order, a close after each operator's children); throws on a malformed tree.
std::vector<int32_t> listops_tree_tokens(const ListOpsTree& tree);

// tokenize_listops into `out`; on an unknown token returns false with the token (after `]` -> X) in `unknown`.
bool tokenize_listops_into(std::string_view source, std::vector<int32_t>& out, std::string& unknown);

}  // namespace mixgrad::data
