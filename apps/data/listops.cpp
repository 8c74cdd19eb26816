// ListOps symbols: tree rendering, tokenizer and the stack-machine evaluator (specs/lra.md §3.1, §4.2, §4.3).
#include "apps/data/listops.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

#include "apps/data/listops_internal.h"
#include "engine/error.h"

namespace mixgrad::data {
namespace {

const char* const kOperatorNames[] = {"[MIN", "[MAX", "[MED", "[SM"};

bool is_digit_token(int32_t t) { return t >= kListOpsDigit0 && t < kListOpsDigit0 + 10; }
bool is_operator_token(int32_t t) { return t >= kListOpsMin && t <= kListOpsSm; }

std::string symbol_name(int32_t t) {
  if (is_digit_token(t)) return std::string(1, static_cast<char>('0' + t - kListOpsDigit0));
  if (is_operator_token(t)) return kOperatorNames[t - kListOpsMin];
  if (t == kListOpsClose) return "]";
  return "<id " + std::to_string(t) + ">";
}

// Visits `tree` in order, checking its shape: on_node(node, is_root) for every node, child_done() after each
// complete non-root subtree, close() after an operator's last child (before that child's parent hears of it).
template <class OnNode, class OnChildDone, class OnClose>
void walk_tree(const ListOpsTree& tree, OnNode&& on_node, OnChildDone&& child_done, OnClose&& close) {
  if (tree.empty()) throw Error("listops tree: no nodes, expected at least one");
  std::vector<int32_t> remaining;  // children still to come, per open operator
  for (size_t i = 0; i < tree.size(); ++i) {
    const ListOpsNode& node = tree[i];
    const bool digit = is_digit_token(node.token), op = is_operator_token(node.token);
    if ((!digit && !op) || (digit && node.arity != 0) || (op && node.arity < 1))
      throw Error("listops tree: node " + std::to_string(i) + " has token " + std::to_string(node.token) +
                  " and arity " + std::to_string(node.arity) +
                  ", expected a digit 1..10 with arity 0 or an operator 11..14 with arity >= 1");
    if (i > 0 && remaining.empty())
      throw Error("listops tree: node " + std::to_string(i) + " follows a complete tree, expected a single root");
    on_node(node, i == 0);
    if (op) {
      remaining.push_back(node.arity);
      continue;
    }
    while (!remaining.empty()) {
      child_done();
      if (--remaining.back() > 0) break;
      remaining.pop_back();
      close();
    }
  }
  if (!remaining.empty())
    throw Error("listops tree: ends with " + std::to_string(remaining.size()) +
                " operator(s) still missing children (the innermost needs " + std::to_string(remaining.back()) +
                " more)");
}

// A token of the official tokenization (after `]` -> X and paren deletion) as a project id, or -1.
int32_t token_id(std::string_view tok) {
  if (tok.size() == 1 && tok[0] >= '0' && tok[0] <= '9') return kListOpsDigit0 + (tok[0] - '0');
  if (tok == "X") return kListOpsClose;
  for (int32_t k = 0; k < 4; ++k)
    if (tok == kOperatorNames[k]) return kListOpsMin + k;
  return -1;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// The error text for evaluate_listops.
std::invalid_argument eval_error(const std::string& what) { return std::invalid_argument("evaluate_listops: " + what); }

struct Frame {
  int32_t op;
  size_t opened_at;
  std::vector<int32_t> args;
};

}  // namespace

int32_t apply_listops_operator(int32_t op, std::vector<int32_t>& args) {
  switch (op) {
    case kListOpsMin:
      return *std::min_element(args.begin(), args.end());
    case kListOpsMax:
      return *std::max_element(args.begin(), args.end());
    case kListOpsSm:
      return static_cast<int32_t>(std::accumulate(args.begin(), args.end(), int64_t{0}) % 10);
    case kListOpsMed: {
      std::sort(args.begin(), args.end());
      const size_t n = args.size();
      // np.median of an even count is the mean of the middle pair; int() truncates it (values are >= 0).
      return n % 2 == 1 ? args[n / 2] : (args[n / 2 - 1] + args[n / 2]) / 2;
    }
    default:
      throw Error("listops: token " + std::to_string(op) + " is not an operator (11..14)");
  }
}

std::vector<int32_t> listops_tree_tokens(const ListOpsTree& tree) {
  std::vector<int32_t> out;
  walk_tree(
      tree, [&](const ListOpsNode& n, bool) { out.push_back(n.token); }, [] {}, [&] { out.push_back(kListOpsClose); });
  return out;
}

std::string listops_text(const ListOpsTree& tree) {
  std::string out;
  auto on_node = [&](const ListOpsNode& n, bool root) {
    if (!root) out += ' ';
    if (is_digit_token(n.token)) {
      out += symbol_name(n.token);
      return;
    }
    for (int32_t k = 0; k <= n.arity; ++k) out += "( ";  // one pair per child plus the closing pair
    out += symbol_name(n.token);
  };
  walk_tree(
      tree, on_node, [&] { out += " )"; }, [&] { out += " ] )"; });
  return out;
}

bool tokenize_listops_into(std::string_view source, std::vector<int32_t>& out, std::string& unknown) {
  out.clear();
  std::string tok;
  for (size_t i = 0; i <= source.size(); ++i) {
    const char c = i < source.size() ? source[i] : ' ';
    if (c == '(' || c == ')') continue;  // deleted before the split, so they never separate tokens
    if (!is_space(c)) {
      tok += c == ']' ? 'X' : c;
      continue;
    }
    if (tok.empty()) continue;
    const int32_t id = token_id(tok);
    if (id < 0) {
      unknown = tok;
      return false;
    }
    out.push_back(id);
    tok.clear();
  }
  return true;
}

std::vector<int32_t> tokenize_listops(std::string_view source) {
  std::vector<int32_t> out;
  std::string unknown;
  if (!tokenize_listops_into(source, out, unknown))
    throw Error("tokenize_listops: unknown token \"" + unknown +
                "\", expected a digit 0..9, [MIN, [MAX, [MED, [SM, ] or X");
  return out;
}

int32_t evaluate_listops(std::span<const int32_t> tokens) {
  std::vector<Frame> stack;
  int32_t result = -1;
  auto deliver = [&](int32_t v, size_t at) {
    if (!stack.empty()) {
      stack.back().args.push_back(v);
    } else if (result >= 0) {
      throw eval_error("a second top-level value at position " + std::to_string(at) + ", expected one expression");
    } else {
      result = v;
    }
  };
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    if (is_digit_token(t)) {
      deliver(t - kListOpsDigit0, i);
    } else if (is_operator_token(t)) {
      if (stack.empty() && result >= 0)
        throw eval_error("operator " + symbol_name(t) + " at position " + std::to_string(i) +
                         " follows a complete expression, expected one expression");
      stack.push_back(Frame{t, i, {}});
    } else if (t == kListOpsClose) {
      if (stack.empty()) throw eval_error("] at position " + std::to_string(i) + " closes no open operator");
      Frame f = std::move(stack.back());
      stack.pop_back();
      if (f.args.empty())
        throw eval_error("operator " + symbol_name(f.op) + " opened at position " + std::to_string(f.opened_at) +
                         " is closed at position " + std::to_string(i) + " without arguments");
      deliver(apply_listops_operator(f.op, f.args), i);
    } else {
      throw eval_error("token id " + std::to_string(t) + " at position " + std::to_string(i) +
                       " is not a ListOps symbol, expected 1..15 (0 is padding: pass only the first `length` ids)");
    }
  }
  if (!stack.empty())
    throw eval_error(std::to_string(stack.size()) + " operator(s) never closed (the innermost, " +
                     symbol_name(stack.back().op) + " at position " + std::to_string(stack.back().opened_at) + ")");
  if (result < 0) throw eval_error("no value in " + std::to_string(tokens.size()) + " tokens, expected one expression");
  return result;
}

}  // namespace mixgrad::data
