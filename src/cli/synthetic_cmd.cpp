// phinfer make-synthetic: a random-weight checkpoint in the exact Hugging Face layout of a Phi-3 /
// Phi-4-mini model, for demos and benchmarks.
#include <cstdio>

#include "cli/commands.h"
#include "phinfer/error.h"
#include "synthetic/synthetic.h"

namespace phinfer::cli {
namespace {

struct SyntheticArgs {
  std::string preset = "tiny", out, dtype = "bf16";
  uint64_t seed = 0;
};

std::string preset_help() {
  std::string h = "Model shape:";
  for (const auto& p : synthetic::presets()) h += "\n  " + p.name + ": " + p.description;
  return h;
}

int run_make_synthetic(const SyntheticArgs& a) {
  synthetic::Options o;
  o.preset = a.preset;
  o.out = a.out;
  o.seed = a.seed;
  o.dtype = synthetic::parse_dtype(a.dtype);
  const ModelConfig config = synthetic::preset_config(a.preset);  // an unknown preset fails here, before any file
  int last = -1;
  o.progress = [&last](double fraction) {
    int pct = static_cast<int>(fraction * 100);
    if (pct == last) return;
    last = pct;
    std::fprintf(stderr, "\rwriting %s: %3d%%", "weights", pct);
    if (pct >= 100) std::fprintf(stderr, "\n");
  };
  synthetic::write_checkpoint(o);
  const double params = static_cast<double>(synthetic::parameter_count(config));
  std::printf("wrote %s checkpoint (%s, seed %llu, %.2f%s parameters) to %s\n", a.preset.c_str(), a.dtype.c_str(),
              static_cast<unsigned long long>(a.seed), params >= 1e9 ? params / 1e9 : params / 1e6,
              params >= 1e9 ? "B" : "M", a.out.c_str());
  return 0;
}

}  // namespace

Command add_make_synthetic(CLI::App& root) {
  auto a = std::make_shared<SyntheticArgs>();
  CLI::App* app = root.add_subcommand("make-synthetic",
                                      "Write a random-weight checkpoint in the Hugging Face Phi-3 / Phi-4-mini layout");
  app->add_option("--preset", a->preset, preset_help())->capture_default_str();
  app->add_option("--out", a->out, "Output folder")->required();
  app->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  app->add_option("--dtype", a->dtype, "f32, f16 or bf16")->capture_default_str();
  return {app, [a] { return run_make_synthetic(*a); }};
}

}  // namespace phinfer::cli
