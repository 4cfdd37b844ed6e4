// The bounded fuzz run of every parser (harnesses in tests/fuzz/, see tests/FUZZING.md): a fixed
// seed, a fixed number of inputs per target (times PHINFER_FUZZ_SCALE; scripts/sanitize.sh runs
// them at a larger scale under AddressSanitizer and UBSan). Every input must give a valid result or
// a phinfer::Error; a failing input is saved under build/fuzz-findings/ for `phinfer_fuzz --replay`.
#include <gtest/gtest.h>

#include <cstdio>

#include "fuzz/fuzz.h"
#include "test_util.h"

namespace phinfer::fuzz {
namespace {

constexpr uint64_t kSeed = 20261204;

class Fuzz : public ::testing::TestWithParam<std::string> {};

TEST_P(Fuzz, EveryInputGivesAResultOrAnError) {
  const Target* target = find_target(GetParam());
  ASSERT_NE(target, nullptr);
  // Every bug of tests/FUZZING.md's list is fixed: CI makes the inputs that once hit them too.
  const Context ctx{test::shared_dir(), test::temp_dir("fuzz_" + target->name), /*with_known_bugs=*/true};
  const auto harness = target->make(ctx);
  Limits limits;
  limits.max_inputs = target->ci_inputs * fuzz_scale();
  limits.per_input_seconds = 60;  // generous: sanitizer builds and a shared machine
  const auto findings = std::filesystem::path(PHINFER_TEST_TMP).parent_path() / "fuzz-findings";
  const Stats s = run(*target, *harness, kSeed, limits, findings);
  std::printf("[ fuzz     ] %s: seed %llu, %llu inputs (%llu accepted, %llu rejected) in %.2f s, %.0f inputs/s\n",
              target->name.c_str(), static_cast<unsigned long long>(kSeed), static_cast<unsigned long long>(s.inputs),
              static_cast<unsigned long long>(s.accepted), static_cast<unsigned long long>(s.rejected), s.seconds,
              s.seconds > 0 ? static_cast<double>(s.inputs) / s.seconds : 0.0);
  ASSERT_FALSE(s.failure) << "input " << s.failure->index << ": " << s.failure->what << "\n  saved in "
                          << s.failure->saved << "\n  replay: phinfer_fuzz --target " << target->name
                          << " --replay " << s.failure->saved;
  EXPECT_EQ(s.inputs, limits.max_inputs);
  // Both outcomes must be common, or the mutations are not reaching past the first check.
  EXPECT_GE(s.accepted * 50, s.inputs) << "fewer than 2% of the inputs were accepted";
  EXPECT_GE(s.rejected * 50, s.inputs) << "fewer than 2% of the inputs were rejected";
}

std::vector<std::string> target_names() {
  std::vector<std::string> names;
  for (const Target& t : targets()) names.push_back(t.name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(Parsers, Fuzz, ::testing::ValuesIn(target_names()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace phinfer::fuzz
