// nn::register_mixer: a mixer added at run time is listed, resolved, built and used by the models like the table's;
// every malformed or clashing registration is refused with an error naming the problem, and changes nothing.
// (examples/custom_layer, run by cpu:package_example, registers a mixer of its own from outside the tree.)
#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/mixgrad.h"
#include "models/vit.h"
#include "nn/mixer.h"
#include "tests/common/check.h"
#include "tests/common/mixer_harness.h"

using namespace mixgrad;
using Catch::Contains;

namespace {

// The name of the alias's one option (fmt, not operator+: GCC 12 warns falsely there, -Wrestrict).
std::string note_of(const std::string& mixer) { return fmt::format("{}_note", mixer); }

// The softmax mixer under another name with one (unused) option: whatever the table-driven tests of later files in
// the same process do with every registered mixer, it passes as softmax does.
nn::MixerInfo alias_of_softmax(const std::string& name) {
  // Built whole: assigning string literals to the fields trips GCC 12's false -Wrestrict.
  const nn::MixerOptionSpec note{
      note_of(name), nn::MixerOptionSpec::Type::choice, "a", "test option (unused)", {"a", "b"}};
  return {name, "softmax attention registered at run time (test)", {note}, nn::mixer_info("softmax").factory};
}

bool listed(const std::string& name) {
  const std::vector<std::string> names = nn::mixer_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

TEST_CASE("register_mixer: a run-time mixer is listed, resolved, built and used by the ViT", "[mixers]") {
  const std::string name = "test_softmax_alias";
  REQUIRE(!listed(name));
  const nn::MixerInfo& softmax = nn::mixer_info("softmax");
  const size_t before = nn::mixer_names().size();
  nn::register_mixer(alias_of_softmax(name));
  CHECK(nn::mixer_names().size() == before + 1);
  CHECK(nn::mixer_names().back() == name);
  CHECK(nn::mixer_registry().back().name == name);
  CHECK(softmax.name == "softmax");  // references from mixer_info survive the registry growing
  CHECK(nn::mixer_info(name).summary == "softmax attention registered at run time (test)");

  const nn::MixerOptions defaults = nn::resolve_mixer_options(name, {});
  CHECK(defaults.mixer() == name);
  CHECK(defaults.text(note_of(name)) == "a");
  CHECK(nn::resolve_mixer_options(name, {{note_of(name), "b"}}).text(note_of(name)) == "b");
  CHECK_THROWS_WITH(nn::resolve_mixer_options(name, {{note_of(name), "c"}}), Contains("one of a, b"));
  CHECK_THROWS_WITH(nn::resolve_mixer_options("softmax", {{note_of(name), "a"}}),
                    Contains(fmt::format("belongs to mixer {}", name)));

  // Built by its factory: the same module as softmax from the same seed.
  const Tensor x = randn({2, testing::kMixerTestTokens, testing::kMixerTestDim});
  manual_seed(11);
  auto a = nn::make_mixer(name, testing::mixer_test_context(name));
  manual_seed(11);
  auto s = nn::make_mixer("softmax", testing::mixer_test_context("softmax"));
  a->eval();
  s->eval();
  REQUIRE_CLOSE(testing::bit_equal(a->forward(x), s->forward(x)));

  // A model picks it by name, options recorded in its metadata.
  models::ViTConfig c = testing::tiny_vit_with(name, "avg");
  c.mixer_options = {{note_of(name), "b"}};
  models::VisionTransformer vit(c);
  CHECK(vit.forward(randn({2, 3, 8, 8})).shape() == Shape{2, 10});
  CHECK(c.to_metadata().at(note_of(name)) == "b");
  autograd::clear_tape();
}

TEST_CASE("register_mixer: malformed or clashing registrations are refused and change nothing", "[mixers]") {
  const std::vector<std::string> names = nn::mixer_names();
  const auto refused = [&](const nn::MixerInfo& info, const std::string& why) {
    INFO("mixer \"" << info.name << "\"");
    CHECK_THROWS_WITH(nn::register_mixer(info),
                      Contains(fmt::format("register_mixer \"{}\"", info.name)) && Contains(why));
    CHECK(nn::mixer_names() == names);
  };
  refused(alias_of_softmax("softmax"), "already registered");
  refused(alias_of_softmax(""), "must be non-empty");
  refused(alias_of_softmax("two words"), "letters, digits, '_' and '-'");
  nn::MixerInfo no_factory = alias_of_softmax("rejected_a");
  no_factory.factory = nullptr;
  refused(no_factory, "no factory");
  nn::MixerInfo no_summary = alias_of_softmax("rejected_b");
  no_summary.summary.clear();
  refused(no_summary, "summary is empty");
  nn::MixerInfo no_help = alias_of_softmax("rejected_c");
  no_help.options[0].help.clear();
  refused(no_help, "option 0 needs a name and a help text");
  nn::MixerInfo twice = alias_of_softmax("rejected_d");
  twice.options.push_back(twice.options[0]);
  refused(twice, "option rejected_d_note is declared twice");
  nn::MixerInfo taken = alias_of_softmax("rejected_e");
  taken.options[0].name = "csp_k";
  refused(taken, "option csp_k is already declared by mixer csp");
  nn::MixerInfo bad_default = alias_of_softmax("rejected_f");
  bad_default.options[0].default_value = std::string("c");
  refused(bad_default, "the default of option rejected_f_note fails its declaration");
  nn::MixerInfo out_of_range = alias_of_softmax("rejected_g");
  out_of_range.options[0] = {"rejected_g_width", nn::MixerOptionSpec::Type::integer, "0", "width", {}, 1, 8};
  refused(out_of_range, "out of range");
}
