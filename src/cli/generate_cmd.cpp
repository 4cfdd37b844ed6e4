// phinfer generate: prompt (text, chat or ids) -> streamed text, or one JSON object with --json.
#include <cstdio>
#include <optional>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"

namespace phinfer::cli {
namespace {

struct GenerateArgs {
  ModelArgs model;
  std::optional<std::string> prompt, prompt_ids, system;
  bool chat = false, json = false, do_sample = false, full_text = false;
  GenerationConfig gen;
  GrammarArgs grammar;
};

int run_generate(GenerateArgs& a) {
  if (a.prompt.has_value() == a.prompt_ids.has_value()) throw Error("give exactly one of -p/--prompt and --prompt-ids");
  if (a.chat && a.prompt_ids) throw Error("--chat formats a text prompt; it cannot be combined with --prompt-ids");
  if (a.system && !a.chat) throw Error("--system needs --chat");
  GenerationConfig gen = a.gen;
  apply_grammar_options(a.grammar, gen);  // before loading: a bad grammar file fails fast
  Pipeline pipe = load_pipeline(a.model);
  gen.do_sample = a.do_sample;
  gen.return_full_text = a.full_text;

  auto stream_to_stdout = [](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  Streamer streamer;
  if (!a.json) streamer = stream_to_stdout;

  GenerationResult r;
  if (a.prompt_ids) {
    r = pipe.generate(parse_id_list(*a.prompt_ids, "--prompt-ids"), gen, streamer);
  } else if (a.chat) {
    std::vector<ChatMessage> messages;
    if (a.system) messages.push_back({"system", *a.system});
    messages.push_back({"user", *a.prompt});
    r = pipe.generate(pipe.encode_chat(messages), gen, streamer);
  } else {
    r = pipe.generate(*a.prompt, gen, streamer);
  }

  if (a.json) {
    print_json({{"prompt_ids", r.prompt_ids},
                {"output_ids", r.output_ids},
                {"text", r.text},
                {"finish_reason", r.finish_reason},
                {"stats",
                 {{"prompt_tokens", r.stats.prompt_tokens},
                  {"generated_tokens", r.stats.generated_tokens},
                  {"ttft_ms", r.stats.ttft_ms},
                  {"decode_tokens_per_s", r.stats.decode_tokens_per_s},
                  {"draft_tokens", r.stats.draft_tokens},
                  {"accepted_draft_tokens", r.stats.accepted_draft_tokens}}}});
  } else {
    std::printf("\n");
    std::fflush(stdout);  // the text's last line before the stats on stderr
    std::fprintf(stderr, "[%lld prompt tokens, %lld generated, first token %.1f ms, %.2f tokens/s, stop: %s]\n",
                 static_cast<long long>(r.stats.prompt_tokens), static_cast<long long>(r.stats.generated_tokens),
                 r.stats.ttft_ms, r.stats.decode_tokens_per_s, r.finish_reason.c_str());
    if (r.stats.draft_tokens > 0)
      std::fprintf(stderr, "[speculative: %lld of %lld draft tokens accepted]\n",
                   static_cast<long long>(r.stats.accepted_draft_tokens), static_cast<long long>(r.stats.draft_tokens));
  }
  return 0;
}

}  // namespace

Command add_generate(CLI::App& root) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* app = root.add_subcommand("generate", "Generate text from a prompt, streamed to stdout");
  app->footer(
      "Sampling follows Hugging Face: the repetition penalty applies first (also when greedy); with --do-sample the\n"
      "logits are divided by --temperature, cut to the --top-k best, then to the smallest set reaching --top-p,\n"
      "then tokens below --min-p x p(best) are dropped, and one token is drawn with --seed.\n"
      "Generation stops at the model's eos ids and <|end|>, at a --stop string, or after --max-new-tokens.");
  add_model_options(app, args->model);
  app->add_option("-p,--prompt", args->prompt, "Prompt text");
  app->add_option("--prompt-ids", args->prompt_ids, "Prompt as token ids, e.g. 1,2,3");
  app->add_flag("--chat", args->chat, "Format the prompt as a user message with the model's chat template");
  app->add_option("--system", args->system, "System message (with --chat)");
  add_generation_options(app, args->gen, args->do_sample);
  add_speculative_options(app, args->gen.draft_tokens, args->model.pipeline.draft_model);
  add_grammar_options(app, args->grammar);
  app->add_flag("--full-text", args->full_text, "Include the prompt in the returned text (return_full_text)");
  app->add_flag("--json", args->json, "Print one JSON object at the end instead of streaming");
  return {app, [args] { return run_generate(*args); }};
}

}  // namespace phinfer::cli
