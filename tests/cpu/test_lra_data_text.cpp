// LRA text and pixel data: the ListOps generator, tokenizer, evaluator and TSV files; the IMDb tree and AAN TSV
// readers; CIFAR-10 as grey-level sequences.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "apps/data/cifar_gray.h"
#include "apps/data/listops.h"
#include "apps/data/lra_text.h"
#include "tests/common/temp_files.h"

namespace fs = std::filesystem;
using namespace mixgrad::data;
using Catch::Contains;

namespace {

// This file's scratch directories: <temp>/mixgrad_test_lra_text_<pid>_<n>.
struct TempDir : mixgrad::testing::TempDir {
  TempDir() : mixgrad::testing::TempDir("mixgrad_test_lra_text_") {}
};
using mixgrad::testing::read_bytes;

void write_text(const fs::path& p, const std::string& text) {
  mixgrad::testing::write_bytes(p, std::vector<uint8_t>(text.begin(), text.end()));
}

std::vector<int32_t> ids(std::initializer_list<int32_t> v) { return v; }

// Small enough to generate in a few milliseconds, large enough for nested trees.
ListOpsConfig small_config(uint64_t seed) {
  ListOpsConfig cfg;
  cfg.min_length = 20;
  cfg.max_length = 120;
  cfg.train = 300;
  cfg.val = 40;
  cfg.test = 40;
  cfg.seed = seed;
  return cfg;
}

std::vector<ListOpsExample> all_examples(const ListOpsSplits& s) {
  std::vector<ListOpsExample> all = s.train;
  all.insert(all.end(), s.val.begin(), s.val.end());
  all.insert(all.end(), s.test.begin(), s.test.end());
  return all;
}

}  // namespace

// ------------------------------------------------------------------------------------------------ ListOps symbols

TEST_CASE("ListOps: rendering of hand-built trees", "[data][listops]") {
  CHECK(listops_text({{kListOpsMax, 2}, {3, 0}, {10, 0}}) == "( ( ( [MAX 2 ) 9 ) ] )");  // §3.1's example
  CHECK(listops_text({{8, 0}}) == "7");
  // [MIN [MAX 2 9 ] 3 ]: the first child is a whole subtree inside the innermost pair.
  const ListOpsTree nested = {{kListOpsMin, 2}, {kListOpsMax, 2}, {3, 0}, {10, 0}, {4, 0}};
  CHECK(listops_text(nested) == "( ( ( [MIN ( ( ( [MAX 2 ) 9 ) ] ) ) 3 ) ] )");
  CHECK(tokenize_listops(listops_text(nested)) == ids({11, 12, 3, 10, 15, 4, 15}));
  CHECK(listops_text({{kListOpsSm, 3}, {1, 0}, {kListOpsMed, 1}, {6, 0}, {2, 0}}) ==
        "( ( ( ( [SM 0 ) ( ( [MED 5 ) ] ) ) 1 ) ] )");

  REQUIRE_THROWS_WITH(listops_text({}), Contains("no nodes"));
  REQUIRE_THROWS_WITH(listops_text({{kListOpsMax, 2}, {3, 0}}), Contains("still missing children"));
  REQUIRE_THROWS_WITH(listops_text({{3, 0}, {4, 0}}), Contains("node 1 follows a complete tree"));
  REQUIRE_THROWS_WITH(listops_text({{kListOpsMax, 0}}), Contains("node 0 has token 12 and arity 0"));
  REQUIRE_THROWS_WITH(listops_text({{3, 1}, {4, 0}}), Contains("node 0 has token 3 and arity 1"));
  REQUIRE_THROWS_WITH(listops_text({{kListOpsClose, 0}}), Contains("token 15"));
}

TEST_CASE("ListOps: tokenizer maps the official tokenization to the fixed ids", "[data][listops]") {
  CHECK(tokenize_listops("( ( ( [MAX 2 ) 9 ) ] )") == ids({12, 3, 10, 15}));
  CHECK(tokenize_listops("[MIN 0 [SM 1 2 X [MED 8 9 ]") == ids({11, 1, 14, 2, 3, 15, 13, 9, 10, 15}));
  CHECK(tokenize_listops("  [MAX\t4  5 ]\r\n") == ids({12, 5, 6, 15}));  // any whitespace separates
  CHECK(tokenize_listops("[MA(X 1) 2 ]") == ids({12, 2, 3, 15}));        // parens are deleted before the split
  CHECK(tokenize_listops("( )").empty());
  REQUIRE_THROWS_WITH(tokenize_listops("[MAX 2 [FOO 3 ] ]"), Contains("unknown token \"[FOO\""));
  REQUIRE_THROWS_WITH(tokenize_listops("[MAX 12 ]"), Contains("unknown token \"12\""));
  REQUIRE_THROWS_WITH(tokenize_listops("[MAX 1 ]]"), Contains("unknown token \"XX\""));
}

TEST_CASE("ListOps: evaluator on hand examples", "[data][listops]") {
  auto eval = [](const std::string& s) { return evaluate_listops(tokenize_listops(s)); };
  CHECK(eval("[MED 3 6 ]") == 4);  // np.median 4.5 -> int 4
  CHECK(eval("[MED 1 9 2 ]") == 2);
  CHECK(eval("[MED 4 1 9 2 ]") == 3);  // (2 + 4) / 2
  CHECK(eval("[MED 7 7 ]") == 7);
  CHECK(eval("[MIN 4 2 7 ]") == 2);
  CHECK(eval("[MAX 4 2 7 ]") == 7);
  CHECK(eval("[SM 5 7 9 ]") == 1);  // 21 mod 10
  CHECK(eval("[SM 0 0 ]") == 0);
  CHECK(eval("6") == 6);
  CHECK(eval("[MAX 2 9 [MIN 4 7 ] 0 ]") == 9);
  CHECK(eval("[SM [MAX 3 8 ] [MED 1 2 ] 5 ]") == 4);  // 8 + 1 + 5 = 14
  CHECK(eval("[MIN [MAX [SM 9 9 ] 3 ] [MED 9 8 7 ] ]") == 8);
  CHECK(eval("( ( ( [MAX 2 ) 9 ) ] )") == 9);
}

TEST_CASE("ListOps: evaluator rejects malformed sequences", "[data][listops][errors]") {
  CHECK_THROWS_WITH(evaluate_listops({}), Contains("no value in 0 tokens"));
  CHECK_THROWS_WITH(evaluate_listops(ids({15})), Contains("] at position 0 closes no open operator"));
  CHECK_THROWS_WITH(evaluate_listops(ids({11, 15})),
                    Contains("[MIN opened at position 0 is closed at position 1 without arguments"));
  CHECK_THROWS_WITH(evaluate_listops(ids({12, 3, 11, 4})),
                    Contains("2 operator(s) never closed") && Contains("[MIN at position 2"));
  CHECK_THROWS_WITH(evaluate_listops(ids({3, 4})), Contains("a second top-level value at position 1"));
  CHECK_THROWS_WITH(evaluate_listops(ids({3, 11, 4, 15})),
                    Contains("[MIN at position 1 follows a complete expression"));
  CHECK_THROWS_WITH(evaluate_listops(ids({12, 3, 4, 15, 0})),
                    Contains("token id 0 at position 4") && Contains("0 is padding"));
  CHECK_THROWS_WITH(evaluate_listops(ids({12, 16, 15})), Contains("token id 16 at position 1"));
}

// ---------------------------------------------------------------------------------------------- ListOps generator

TEST_CASE("ListOps generator: bounds, labels, dedup, determinism", "[data][listops]") {
  const ListOpsConfig cfg = small_config(7);
  const ListOpsSplits a = generate_listops(cfg);
  REQUIRE(a.train.size() == 300);
  REQUIRE(a.val.size() == 40);
  REQUIRE(a.test.size() == 40);
  const ListOpsStats& st = a.stats;
  CHECK(st.draws == 380 + st.too_short + st.too_long + st.duplicates);
  CHECK(st.too_short > 0);
  CHECK(st.too_long > 0);

  std::set<std::string> sources;
  std::set<int32_t> labels;
  int64_t min_len = 1 << 30, max_len = 0, nested = 0;
  for (const ListOpsExample& ex : all_examples(a)) {
    const std::vector<int32_t> t = tokenize_listops(ex.source);
    const auto len = static_cast<int64_t>(t.size());
    min_len = std::min(min_len, len);
    max_len = std::max(max_len, len);
    CHECK(evaluate_listops(t) == ex.label);
    sources.insert(ex.source);
    labels.insert(ex.label);
    nested += std::any_of(t.begin() + 1, t.end(), [](int32_t id) { return id >= kListOpsMin && id <= kListOpsSm; });
  }
  CHECK(min_len > cfg.min_length);  // strict bounds: 21..119
  CHECK(max_len < cfg.max_length);
  CHECK(sources.size() == 380);  // no two equal sources
  CHECK(labels.size() == 10);    // every class occurs
  CHECK(nested > 0);             // some trees have operators below the root

  const std::vector<ListOpsExample> first = all_examples(a), again = all_examples(generate_listops(cfg));
  REQUIRE(again.size() == 380);
  bool same = true;
  for (size_t i = 0; i < 380; ++i)
    same = same && again[i].source == first[i].source && again[i].label == first[i].label;
  CHECK(same);
  const ListOpsSplits other = generate_listops(small_config(8));
  CHECK(other.train.front().source != a.train.front().source);
}

TEST_CASE("ListOps generator: impossible configurations fail clearly", "[data][listops][errors]") {
  ListOpsConfig cfg = small_config(1);
  SECTION("empty length interval") {
    cfg.min_length = 50;
    cfg.max_length = 51;
    REQUIRE_THROWS_WITH(generate_listops(cfg), Contains("no length L with min_length 50 < L < max_length 51"));
  }
  SECTION("bounds beyond what depth and arity allow") {
    cfg = ListOpsConfig{};
    cfg.max_depth = 2;
    REQUIRE_THROWS_WITH(generate_listops(cfg),
                        Contains("allow trees of at most 12 tokens") && Contains("min_length 500"));
  }
  SECTION("value_p") {
    cfg.value_p = 1.0;
    REQUIRE_THROWS_WITH(generate_listops(cfg), Contains("value_p 1.0") && Contains("expected 0 < value_p < 1"));
  }
  SECTION("max_args and max_depth") {
    cfg.max_args = 1;
    REQUIRE_THROWS_WITH(generate_listops(cfg), Contains("max_args 1, expected >= 2"));
    cfg.max_args = 10;
    cfg.max_depth = 0;
    REQUIRE_THROWS_WITH(generate_listops(cfg), Contains("max_depth 0, expected 1..100"));
  }
  SECTION("no samples asked for") {
    cfg.train = cfg.val = cfg.test = 0;
    REQUIRE_THROWS_WITH(generate_listops(cfg), Contains("at least one sample"));
  }
  SECTION("distinct trees used up") {
    // Only length 4 lies strictly between 3 and 5: [OP a b ], 4 × 10 × 10 = 400 trees, fewer than asked for.
    cfg.min_length = 3;
    cfg.max_length = 5;
    cfg.train = 1000;
    cfg.max_rejections = 200000;
    REQUIRE_THROWS_WITH(generate_listops(cfg),
                        Contains("no new sample in 200000 draws in a row") && Contains("400 of 1080 accepted"));
  }
}

// ------------------------------------------------------------------------------------------------- ListOps files

TEST_CASE("ListOps TSV: generated files are release-format, reproducible, and read back exactly", "[data][listops]") {
  TempDir dir;
  const ListOpsConfig cfg = small_config(11);
  const ListOpsStats stats = write_listops_tsv(dir / "a", cfg);
  write_listops_tsv(dir / "b", cfg);
  write_listops_tsv(dir / "c", small_config(12));
  const ListOpsSplits mem = generate_listops(cfg);
  CHECK(stats.draws == mem.stats.draws);

  const std::vector<std::pair<std::string, const std::vector<ListOpsExample>*>> files = {
      {"basic_train.tsv", &mem.train}, {"basic_val.tsv", &mem.val}, {"basic_test.tsv", &mem.test}};
  for (const auto& [name, examples] : files) {
    INFO(name);
    const std::vector<uint8_t> bytes = read_bytes(dir / "a" / name);
    CHECK(bytes == read_bytes(dir / "b" / name));
    CHECK(bytes != read_bytes(dir / "c" / name));
    std::string expected = "Source\tTarget\r\n";
    for (const ListOpsExample& ex : *examples) expected += ex.source + "\t" + std::to_string(ex.label) + "\r\n";
    CHECK(std::string(bytes.begin(), bytes.end()) == expected);
    CHECK_FALSE(fs::exists(dir / "a" / (name + ".partial")));

    ReadReport report;
    int64_t cut = 0;
    const SequenceSet set = read_listops_tsv(dir / "a" / name, 2000, &report, &cut);
    CHECK(set.num_classes == 10);
    CHECK(set.vocab_size == 16);
    CHECK(report.records == static_cast<int64_t>(examples->size()));
    CHECK(report.skipped == 0);
    CHECK(cut == 0);
    REQUIRE(set.size() == static_cast<int64_t>(examples->size()));
    for (size_t i = 0; i < examples->size(); ++i) {
      const std::vector<int32_t> want = tokenize_listops((*examples)[i].source);
      const auto got = set.sample(static_cast<int64_t>(i));
      CHECK(std::vector<int32_t>(got.begin(), got.end()) == want);
      CHECK(set.labels[i] == (*examples)[i].label);
      CHECK(evaluate_listops(got) == set.labels[i]);
    }
  }
}

TEST_CASE("ListOps TSV reader: line ends, bad rows, truncation", "[data][listops]") {
  TempDir dir;
  const std::vector<std::string> rows = {"( ( [MAX 2 ) 9 ) ] )\t9",  // line 2: good
                                         "[MIN 3 4 ]\t3\textra",     // 3: three fields
                                         "[MIN 3 4 ]",               // 4: one field
                                         "[MIN 3 4 ]\t10",           // 5: label out of range
                                         "[MIN 3 4 ]\tx",            // 6: not a number
                                         "[MIN 3 4 ]\t",             // 7: empty label
                                         "[MIN 3 [FOO 4 ] ]\t3",     // 8: unknown token
                                         "( )\t3",                   // 9: empty source
                                         "[SM 5 7 9 ]\t1",           // 10: good, 5 tokens
                                         "",                         // 11: blank line: one field
                                         "[MED 3 6 ]\t4"};           // 12: good
  for (const std::string eol : {"\n", "\r\n"}) {
    INFO("line end " << (eol == "\n" ? "LF" : "CRLF"));
    std::string text = "Source\tTarget" + eol;
    for (const std::string& r : rows) text += r + eol;
    write_text(dir / "rows.tsv", text);
    ReadReport report;
    int64_t cut = 0;
    const SequenceSet set = read_listops_tsv(dir / "rows.tsv", 4, &report, &cut);
    REQUIRE(set.size() == 3);
    CHECK(set.labels == std::vector<int64_t>{9, 1, 4});
    CHECK(std::vector<int32_t>(set.sample(0).begin(), set.sample(0).end()) == ids({12, 3, 10, 15}));
    CHECK(std::vector<int32_t>(set.sample(1).begin(), set.sample(1).end()) == ids({14, 6, 8, 10}));  // cut to 4
    CHECK(cut == 1);
    CHECK(report.records == 11);
    CHECK(report.skipped == 8);
    REQUIRE(report.problems.size() == 8);
    CHECK_THAT(report.problems[0], Contains("rows.tsv:3: 3 tab-separated field(s), expected 2"));
    CHECK_THAT(report.problems[1], Contains("rows.tsv:4: 1 tab-separated field(s)"));
    CHECK_THAT(report.problems[2], Contains("rows.tsv:5: label \"10\" is not an integer 0..9"));
    CHECK_THAT(report.problems[3], Contains(":6: label \"x\""));
    CHECK_THAT(report.problems[4], Contains(":7: label \"\""));
    CHECK_THAT(report.problems[5], Contains(":8: unknown token \"[FOO\""));
    CHECK_THAT(report.problems[6], Contains(":9: empty source"));
    CHECK_THAT(report.problems[7], Contains(":11: 1 tab-separated field(s)"));
  }
  SECTION("without a report the first bad row is an error") {
    REQUIRE_THROWS_WITH(read_listops_tsv(dir / "rows.tsv", 100, nullptr),
                        Contains("rows.tsv:3: 3 tab-separated field(s)") && Contains("without a ReadReport"));
  }
  SECTION("a file without a final line end") {
    write_text(dir / "last.tsv", "Source\tTarget\n[MAX 1 2 ]\t2");
    ReadReport report;
    CHECK(read_listops_tsv(dir / "last.tsv", 100, &report).labels == std::vector<int64_t>{2});
  }
}

TEST_CASE("ListOps TSV reader: file-level errors", "[data][listops][errors]") {
  TempDir dir;
  ReadReport report;
  REQUIRE_THROWS_WITH(read_listops_tsv(dir / "none.tsv", 100, &report),
                      Contains("none.tsv") && Contains("cannot open file"));
  write_text(dir / "empty.tsv", "");
  REQUIRE_THROWS_WITH(read_listops_tsv(dir / "empty.tsv", 100, &report), Contains("empty.tsv: file is empty"));
  write_text(dir / "header.tsv", "Source\tTarget\r\n");
  REQUIRE_THROWS_WITH(read_listops_tsv(dir / "header.tsv", 100, &report), Contains("header.tsv: only the header line"));
  write_text(dir / "noheader.tsv", "[MAX 1 2 ]\t2\n");
  REQUIRE_THROWS_WITH(read_listops_tsv(dir / "noheader.tsv", 100, &report),
                      Contains("line 1 is \"[MAX 1 2 ]\t2\", expected the header"));
  write_text(dir / "bad.tsv", "Source\tTarget\n[MAX 1 2 ]\t12\n[MAX 1 2 ]\n");
  REQUIRE_THROWS_WITH(read_listops_tsv(dir / "bad.tsv", 100, &report),
                      Contains("no usable samples: 2 record(s), 2 skipped") && Contains("bad.tsv:2: label \"12\""));
  REQUIRE_THROWS_WITH(read_listops_tsv(dir / "bad.tsv", 0, &report), Contains("max_len 0, expected >= 1"));
}

// ------------------------------------------------------------------------------------------------------------ IMDb

namespace {

// aclImdb/{train,test}/{neg,pos}: train has 10 reviews per class, named so that byte order differs from numeric
// order; review k of a class is "<class> review <k>".
fs::path make_imdb_tree(const fs::path& parent) {
  const fs::path root = parent / "aclImdb";
  for (const std::string split : {"train", "test"})
    for (const std::string cls : {"neg", "pos"}) {
      fs::create_directories(root / split / cls);
      const int n = split == "train" ? 10 : 2;
      for (int k = n - 1; k >= 0; --k)  // created in reverse, so directory order is not what the reader relies on
        write_text(root / split / cls / (std::to_string(k * 3) + "_" + std::to_string(k % 10 + 1) + ".txt"),
                   cls + " review " + std::to_string(k * 3));
    }
  fs::create_directories(root / "train" / "unsup");
  write_text(root / "train" / "unsup" / "0_0.txt", "unlabelled");
  return root;
}

std::string decode(std::span<const int32_t> t) {
  std::string s;
  for (int32_t v : t) s += static_cast<char>(v - 1);
  return s;
}

}  // namespace

TEST_CASE("IMDb tree: sorted files, labels, byte ids", "[data][imdb]") {
  TempDir dir;
  const fs::path root = make_imdb_tree(dir.path);
  ReadReport report;
  int64_t cut = 0;
  const SequenceSet train = read_imdb_tree(dir.path, "train", 100, &report, &cut);  // parent of aclImdb
  REQUIRE(train.size() == 20);
  CHECK(train.num_classes == 2);
  CHECK(train.vocab_size == 257);
  CHECK(report.records == 20);
  CHECK(report.skipped == 0);
  CHECK(cut == 0);
  // Byte order of the names 0_1, 12_5, 15_6, 18_7, 21_8, 24_9, 27_10, 3_2, 6_3, 9_4.
  const std::vector<int> order = {0, 12, 15, 18, 21, 24, 27, 3, 6, 9};
  for (size_t i = 0; i < 10; ++i) {
    CHECK(decode(train.sample(static_cast<int64_t>(i))) == "neg review " + std::to_string(order[i]));
    CHECK(decode(train.sample(static_cast<int64_t>(i + 10))) == "pos review " + std::to_string(order[i]));
    CHECK(train.labels[i] == 0);
    CHECK(train.labels[i + 10] == 1);
  }
  CHECK(train.sample(0)[0] == 'n' + 1);

  const SequenceSet test = read_imdb_tree(root, "test", 4, &report, &cut);  // the aclImdb folder itself
  REQUIRE(test.size() == 4);
  CHECK(cut == 4);
  CHECK(std::vector<int32_t>(test.sample(3).begin(), test.sample(3).end()) ==
        ids({'p' + 1, 'o' + 1, 's' + 1, ' ' + 1}));
  CHECK(test.labels == std::vector<int64_t>{0, 0, 1, 1});
}

TEST_CASE("IMDb tree: raw bytes, skipped files, folder errors", "[data][imdb][errors]") {
  TempDir dir;
  const fs::path root = make_imdb_tree(dir.path);
  const fs::path neg = root / "train" / "neg";
  mixgrad::testing::write_bytes(neg / "00_1.txt", {0x00, 0xff, '<', 'b', 'r', ' ', '/', '>'});
  write_text(neg / "01_1.txt", "");                       // empty: skipped
  fs::create_symlink(dir / "nowhere", neg / "02_1.txt");  // unreadable: skipped
  write_text(neg / "notes.md", "not a review");           // not *.txt: ignored
  fs::create_directories(neg / "sub.txt");                // a folder: ignored
  ReadReport report;
  const SequenceSet train = read_imdb_tree(root, "train", 100, &report);
  REQUIRE(train.size() == 21);
  CHECK(std::vector<int32_t>(train.sample(0).begin(), train.sample(0).end()) ==
        ids({1, 256, '<' + 1, 'b' + 1, 'r' + 1, ' ' + 1, '/' + 1, '>' + 1}));
  CHECK(report.records == 23);
  CHECK(report.skipped == 2);
  REQUIRE(report.problems.size() == 2);
  CHECK_THAT(report.problems[0], Contains("neg/01_1.txt: empty file"));
  CHECK_THAT(report.problems[1], Contains("neg/02_1.txt:") && Contains("cannot open file"));
  REQUIRE_THROWS_WITH(read_imdb_tree(root, "train", 100, nullptr), Contains("01_1.txt: empty file"));

  REQUIRE_THROWS_WITH(read_imdb_tree(root, "unsup", 100, &report), Contains("split \"unsup\""));
  REQUIRE_THROWS_WITH(read_imdb_tree(root, "train", 0, &report), Contains("max_len 0"));
  REQUIRE_THROWS_WITH(read_imdb_tree(dir / "none", "train", 100, &report),
                      Contains("IMDb split folder not found") && Contains("none/aclImdb/train"));
  fs::remove_all(root / "test" / "pos");
  REQUIRE_THROWS_WITH(read_imdb_tree(root, "test", 100, &report),
                      Contains("IMDb class folder not found") && Contains("test/pos"));
  fs::create_directories(root / "test" / "pos");
  write_text(root / "test" / "pos" / "readme", "x");
  REQUIRE_THROWS_WITH(read_imdb_tree(root, "test", 100, &report), Contains("has no *.txt review files"));
  write_text(root / "test" / "pos" / "1_1.txt", "");
  REQUIRE_THROWS_WITH(read_imdb_tree(root, "test", 100, &report),
                      Contains("no usable samples: 1 record(s), 1 skipped") && Contains("1_1.txt: empty file"));
}

TEST_CASE("IMDb validation split holds out the last 10 % of each class", "[data][imdb][split]") {
  TempDir dir;
  make_imdb_tree(dir.path);
  ReadReport report;
  const SequenceSet train = read_imdb_tree(dir.path, "train", 100, &report);
  const TrainValSplit split = imdb_validation_split(train);
  CHECK(split.val == std::vector<int64_t>{9, 19});  // the last sorted file of neg and of pos
  CHECK(split.train.size() == 18);
  CHECK(split.train.front() == 0);
  CHECK(split.train.back() == 18);

  SequenceSet big;  // the real sizes: 12,500 per class -> 1,250 held out each
  big.num_classes = 2;
  for (int i = 0; i < 25000; ++i) big.add(ids({1}), i < 12500 ? 0 : 1);
  const TrainValSplit s = imdb_validation_split(big);
  REQUIRE(s.val.size() == 2500);
  CHECK(s.val.front() == 11250);
  CHECK(s.val[1249] == 12499);
  CHECK(s.val[1250] == 23750);
  CHECK(s.train.size() == 22500);

  SequenceSet tiny;
  tiny.num_classes = 2;
  tiny.add(ids({1}), 0);
  tiny.add(ids({1}), 1);
  tiny.add(ids({1}), 1);
  REQUIRE_THROWS_WITH(imdb_validation_split(tiny), Contains("class 0 has 1 sample(s), expected at least 2"));
  REQUIRE_THROWS_WITH(imdb_validation_split(big, 1.0), Contains("fraction 1.0"));
}

// ------------------------------------------------------------------------------------------------------------- AAN

TEST_CASE("AAN TSV: pairs, labels, bad rows, line ends", "[data][aan]") {
  TempDir dir;
  const std::vector<std::string> rows = {"1\tp1\tp2\tabc\t\"quoted\" text",  // line 1: good, quotes literal
                                         "0.0\tp3\tp4\tx\tyz",               // 2: good
                                         "1.0\tp5\tp6\tlonger text\tq",      // 3: good, text1 cut
                                         "2\tp7\tp8\ta\tb",                  // 4: label out of range
                                         "0.5\tp7\tp8\ta\tb",                // 5: not an integer value
                                         "yes\tp7\tp8\ta\tb",                // 6: not a number
                                         "1\tp7\tp8\ta",                     // 7: four fields
                                         "1\tp7\tp8\ta\tb\tc",               // 8: six fields
                                         "0\tp7\tp8\t\tb",                   // 9: empty text1
                                         "0\tp9\tp10\tk\tl"};                // 10: good
  for (const std::string eol : {"\n", "\r\n"}) {
    INFO("line end " << (eol == "\n" ? "LF" : "CRLF"));
    std::string text;
    for (const std::string& r : rows) text += r + eol;
    write_text(dir / "new_aan_pairs.train.tsv", text);
    ReadReport report;
    int64_t cut = 0;
    const SequenceSet set = read_aan_tsv(dir / "new_aan_pairs.train.tsv", 8, &report, &cut);
    REQUIRE(set.size() == 4);
    REQUIRE(set.paired());
    CHECK(set.num_classes == 2);
    CHECK(set.vocab_size == 257);
    CHECK(set.labels == std::vector<int64_t>{1, 0, 1, 0});
    CHECK(decode(set.sample(0)) == "abc");
    CHECK(decode(set.sample2(0)) == "\"quoted\"");  // cut to 8 bytes
    CHECK(set.sample2(0)[0] == '"' + 1);
    CHECK(decode(set.sample(2)) == "longer t");
    CHECK(decode(set.sample2(3)) == "l");
    CHECK(cut == 2);
    CHECK(report.records == 10);
    CHECK(report.skipped == 6);
    REQUIRE(report.problems.size() == 6);
    CHECK_THAT(report.problems[0], Contains("new_aan_pairs.train.tsv:4: label \"2\" is not 0 or 1"));
    CHECK_THAT(report.problems[1], Contains(":5: label \"0.5\""));
    CHECK_THAT(report.problems[2], Contains(":6: label \"yes\""));
    CHECK_THAT(report.problems[3], Contains(":7: 4 tab-separated field(s), expected 5"));
    CHECK_THAT(report.problems[4], Contains(":8: 6 tab-separated field(s)"));
    CHECK_THAT(report.problems[5], Contains(":9: empty text1"));
  }
  REQUIRE_THROWS_WITH(read_aan_tsv(dir / "new_aan_pairs.train.tsv", 8, nullptr),
                      Contains("new_aan_pairs.train.tsv:4: label \"2\""));
}

TEST_CASE("AAN TSV: file-level errors", "[data][aan][errors]") {
  TempDir dir;
  ReadReport report;
  REQUIRE_THROWS_WITH(read_aan_tsv(dir / "none.tsv", 10, &report), Contains("none.tsv") && Contains("cannot open"));
  write_text(dir / "empty.tsv", "");
  REQUIRE_THROWS_WITH(read_aan_tsv(dir / "empty.tsv", 10, &report), Contains("empty.tsv: file is empty"));
  write_text(dir / "bad.tsv", "label\tid1\tid2\ttext1\ttext2\r\n\r\n");  // a header is not a row: bad label
  REQUIRE_THROWS_WITH(read_aan_tsv(dir / "bad.tsv", 10, &report),
                      Contains("no usable samples: 2 record(s), 2 skipped") && Contains("label \"label\""));
  REQUIRE_THROWS_WITH(read_aan_tsv(dir / "bad.tsv", -1, &report), Contains("max_len -1"));
}

// ------------------------------------------------------------------------------------------------ CIFAR grey levels

TEST_CASE("CIFAR-10 grey-level sequences", "[data][cifar]") {
  TempDir dir;
  std::vector<uint8_t> batch;
  const uint8_t rgb[][3] = {{255, 255, 255}, {255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 20, 30}, {1, 1, 0}};
  for (int image = 0; image < 2; ++image) {
    batch.push_back(static_cast<uint8_t>(image == 0 ? 7 : 2));
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p)
        batch.push_back(p < 6 ? rgb[p][c] : static_cast<uint8_t>((p * 7 + c + image) % 256));
  }
  mixgrad::testing::write_bytes(dir / "test_batch.bin", batch);
  const SequenceSet set = load_cifar10_gray(dir.path, /*train=*/false);
  REQUIRE(set.size() == 2);
  CHECK(set.num_classes == 10);
  CHECK(set.vocab_size == 256);
  CHECK(set.labels == std::vector<int64_t>{7, 2});
  REQUIRE(set.length(0) == 1024);
  REQUIRE(set.length(1) == 1024);
  // (299 R + 587 G + 114 B + 500) / 1000: white, pure R, G, B, a mix, and one where the rounding term matters.
  CHECK(std::vector<int32_t>(set.sample(0).begin(), set.sample(0).begin() + 6) == ids({255, 76, 150, 29, 18, 1}));
  const int p = 1000;  // a pixel of the row-major pattern, (p*7 + c + image) % 256 per channel
  const auto r = static_cast<uint8_t>((p * 7 + 1) % 256), g = static_cast<uint8_t>((p * 7 + 2) % 256),
             b = static_cast<uint8_t>((p * 7 + 3) % 256);
  CHECK(set.sample(1)[p] == (299 * r + 587 * g + 114 * b + 500) / 1000);
  CHECK(gray_level(r, g, b) == set.sample(1)[p]);

  ImageDataset mono;
  mono.channels = 1;
  REQUIRE_THROWS_WITH(gray_sequences(mono), Contains("1 channel(s), expected 3"));
}
