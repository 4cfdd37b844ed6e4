// phinfer perplexity / compare: quality of a (quantized) model on a text file.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "phinfer/error.h"
#include "phinfer/evaluate.h"

namespace phinfer::cli {
namespace {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the text file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct EvalArgs {
  ModelArgs model;
  std::string reference, file;
  EvalOptions eval;
  bool json = false;
};

int run_perplexity(EvalArgs& a) {
  Pipeline pipe = load_pipeline(a.model);
  const auto ids = pipe.tokenizer().encode(read_text_file(a.file), true);
  const PerplexityResult r = perplexity(pipe, ids, a.eval);
  if (a.json) {
    print_json({{"perplexity", r.perplexity}, {"mean_nll", r.mean_nll}, {"tokens", r.tokens}});
  } else {
    std::printf("perplexity %.4f over %lld predictions (context %lld)\n", r.perplexity, static_cast<long long>(r.tokens),
                static_cast<long long>(a.eval.context));
  }
  return 0;
}

int run_compare(EvalArgs& a) {
  Pipeline pipe = load_pipeline(a.model);
  ModelArgs ref_args = a.model;  // same threads and window; the reference is loaded as given,
  ref_args.model = a.reference;  // with the exact (f32) KV cache
  ref_args.weight_format.reset();
  ref_args.pipeline.kv_cache_dtype = "f32";
  Pipeline ref = load_pipeline(ref_args);
  const auto ids = ref.tokenizer().encode(read_text_file(a.file), true);
  const CompareResult r = compare(pipe, ref, ids, a.eval);
  if (a.json) {
    print_json({{"mean_kl", r.mean_kl},
                {"max_kl", r.max_kl},
                {"top1_agreement", r.top1_agreement},
                {"perplexity", r.model.perplexity},
                {"reference_perplexity", r.reference.perplexity},
                {"tokens", r.model.tokens}});
  } else {
    std::printf("positions            %lld\n", static_cast<long long>(r.model.tokens));
    std::printf("mean KL divergence   %.6f nats (max %.4f)\n", r.mean_kl, r.max_kl);
    std::printf("top-1 agreement      %.2f%%\n", 100.0 * r.top1_agreement);
    std::printf("perplexity           %.4f (reference %.4f)\n", r.model.perplexity, r.reference.perplexity);
  }
  return 0;
}

}  // namespace

Command add_perplexity(CLI::App& root) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* app = root.add_subcommand("perplexity", "Perplexity of a model on a text file");
  add_model_options(app, a->model);
  app->add_option("-f,--file", a->file, "Text file")->required();
  app->add_option("--context", a->eval.context, "Tokens per scored window")->capture_default_str();
  app->add_flag("--json", a->json, "Print one JSON object");
  return {app, [a] { return run_perplexity(*a); }};
}

Command add_compare(CLI::App& root) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* app = root.add_subcommand("compare", "Compare a model with a reference on a text: KL divergence, top-1 agreement");
  add_model_options(app, a->model);
  app->add_option("--ref", a->reference, "Reference model (folder or model file)")->required();
  app->add_option("-f,--file", a->file, "Text file")->required();
  app->add_option("--context", a->eval.context, "Tokens per scored window")->capture_default_str();
  app->add_flag("--json", a->json, "Print one JSON object");
  return {app, [a] { return run_compare(*a); }};
}

}  // namespace phinfer::cli
