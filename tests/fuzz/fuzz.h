#pragma once
// Fuzz harnesses for every parser, shared by the bounded CI run (tests/fuzz_test.cpp) and the
// standalone time-bounded driver (tools/fuzz, `phinfer_fuzz`). See tests/FUZZING.md.
//
// A harness makes inputs (structure-aware mutations of valid seeds) and runs one through its parser.
// Every input must give a valid result (run() returns, after checking what it got) or a
// phinfer::Error; anything else is a finding: another exception type, a broken invariant
// (Violation), a crash or sanitizer report, or an input running past its time limit.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace phinfer::fuzz {

using Rng = std::mt19937_64;

// One input: one or more named files (a tokenizer is tokenizer.json plus tokenizer_config.json).
// Saved as a folder of these files when it fails, so the repro is the files themselves.
struct File {
  std::string name;
  std::string bytes;
};
using Input = std::vector<File>;
// The file of `input` named `name` (inputs are looked up by name: a replayed folder has no order).
const std::string& file(const Input& input, std::string_view name);

// An accepted input whose result breaks what the parser promises (a view outside the buffer, a
// config whose fields disagree, a load that changed state although it threw).
struct Violation : std::logic_error {
  using std::logic_error::logic_error;
};
inline void require(bool ok, const std::string& what) {
  if (!ok) throw Violation(what);
}

struct Context {
  std::filesystem::path shared_dir;   // ../shared: real tokenizer files, configs, small models
  std::filesystem::path scratch_dir;  // private to this process, for inputs a parser reads from disk
  // false (CI): harnesses do not make inputs that hit the known, not yet fixed bugs listed in
  // tests/FUZZING.md, so the suite stays green until they are fixed; phinfer_fuzz --known-bugs sets it.
  bool with_known_bugs = false;
};

class Harness {
 public:
  virtual ~Harness() = default;
  virtual Input generate(Rng& rng) = 0;
  // Parses `input`; returns when accepted (after checking the result), throws phinfer::Error when
  // rejected. Anything else it lets escape is a finding.
  virtual void run(const Input& input) = 0;
};

struct Target {
  std::string name;
  std::string description;
  std::function<std::unique_ptr<Harness>(const Context&)> make;
  uint64_t ci_inputs;  // inputs of the bounded CI run (about a second in Release), times PHINFER_FUZZ_SCALE
};
// Every target; adding a parser is one entry in fuzz.cpp.
const std::vector<Target>& targets();
const Target* find_target(std::string_view name);

struct Limits {
  uint64_t max_inputs = UINT64_MAX;
  double max_seconds = 1e300;
  double per_input_seconds = 10;  // a longer input counts as a hang: its files are saved, the process aborts
};

struct Stats;
using Progress = std::function<void(const Stats&)>;  // called about every 10 s of a long run

struct Failure {
  uint64_t index = 0;
  std::string what;
  std::filesystem::path saved;  // the folder holding the input's files
};

struct Stats {
  uint64_t inputs = 0, accepted = 0, rejected = 0;
  double seconds = 0;
  std::optional<Failure> failure;  // the first finding; the run stops there
};

// Runs inputs seed, seed+1, ... (input i comes from Rng(mix(seed, i)), so one input is reproducible
// by its seed and index). Failing inputs, crashes and hangs save the input under `crash_dir`.
Stats run(const Target& target, Harness& harness, uint64_t seed, const Limits& limits,
          const std::filesystem::path& crash_dir, const Progress& progress = {});

// Runs the files of a saved input folder once (after a fix, or under a debugger).
void replay(Harness& harness, const std::filesystem::path& folder);

// PHINFER_FUZZ_SCALE (default 1): multiplies the CI inputs (for sanitizer builds or a longer run by hand).
uint64_t fuzz_scale();

}  // namespace phinfer::fuzz
