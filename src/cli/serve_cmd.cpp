// phinfer serve: the OpenAI-compatible HTTP server (src/server) over one or more models.
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "phinfer/error.h"
#include "server/server.h"

namespace phinfer::cli {
namespace {

struct ServeArgs {
  ModelArgs model;  // the shared loading options; model paths come from `models`
  std::vector<std::string> models, aliases;
  server::ServerOptions server;
};

// A model's id: its --alias, else its folder or file name (without the extension of a file).
std::string model_id(const std::string& path) {
  std::filesystem::path p(path);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "dir/" -> "dir"
  return std::filesystem::is_directory(p) ? p.filename().string() : p.stem().string();
}

int run_serve(ServeArgs& a) {
  if (!a.aliases.empty() && a.aliases.size() != a.models.size())
    throw Error("give one --alias per -m/--model (found " + std::to_string(a.aliases.size()) + " aliases for " +
                std::to_string(a.models.size()) + " models)");
  if (a.server.parallel < 1) throw Error("--parallel must be >= 1");
  if (a.server.timeout_s < 1) throw Error("--timeout must be >= 1 second");
  server::block_stop_signals();
  std::vector<server::ServedModel> served;
  for (size_t i = 0; i < a.models.size(); ++i) {
    ModelArgs args = a.model;
    args.model = a.models[i];
    const std::string id = a.aliases.empty() ? model_id(a.models[i]) : a.aliases[i];
    for (const auto& s : served)
      if (s.id == id) throw Error("two models are named '" + id + "': give each an --alias");
    std::fprintf(stderr, "loading %s as '%s'\n", a.models[i].c_str(), id.c_str());
    served.push_back({id, load_pipeline(args)});
  }
  return server::serve(std::move(served), a.server);
}

}  // namespace

Command add_serve(CLI::App& root) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* app = root.add_subcommand("serve", "Serve models over an OpenAI-compatible HTTP API (and a chat page at /)");
  app->footer(
      "Endpoints: POST /v1/chat/completions, /v1/completions, /v1/responses; GET /v1/models, /health, /metrics, /.\n"
      "Point any OpenAI client at http://HOST:PORT/v1 with the model id of `GET /v1/models`.\n"
      "SIGTERM or Ctrl-C lets requests in flight finish (up to --drain-timeout), then stops.");
  add_model_options(app, args->model);
  // serve takes several models: -m is repeatable here (the shared options hold one path).
  app->remove_option(app->get_option("--model"));
  app->add_option("-m,--model", args->models, "Hugging Face checkpoint folder or phinfer model file (repeatable)")
      ->required();
  app->add_option("--alias", args->aliases, "The id clients use for each -m, in order (default: its folder or file name)");
  auto& s = args->server;
  app->add_option("--host", s.host, "Address to listen on (only this machine by default)")->capture_default_str();
  app->add_option("--port", s.port, "Port (0: any free port, printed at startup)")->capture_default_str();
  app->add_option("--api-key", s.api_key, "Require 'Authorization: Bearer KEY' on every API call");
  add_speculative_options(app, s.draft_tokens, args->model.pipeline.draft_model);
  app->add_option("--parallel", s.parallel, "Requests decoding at once per model (more wait in the queue)")->capture_default_str();
  app->add_option("--ctx-size", s.ctx_size, "Most tokens of prompt + answer (0: the model's context)")->capture_default_str();
  app->add_option("--max-tokens", s.limits.max_tokens, "Most tokens one answer may ask for (also the default)")
      ->capture_default_str();
  app->add_option("--max-queue", s.max_queued, "Requests in flight before new ones get 503")->capture_default_str();
  app->add_option("--max-body", s.max_body_bytes, "Largest request body in bytes")->capture_default_str();
  app->add_option("--max-messages", s.limits.max_messages, "Most messages in one request")->capture_default_str();
  app->add_option("--http-threads", s.http_threads, "Connections served at once")->capture_default_str();
  app->add_option("--timeout", s.timeout_s, "Seconds a client may stall a read or write")->capture_default_str();
  app->add_option("--drain-timeout", s.drain_s, "Seconds requests in flight may finish after SIGTERM")->capture_default_str();
  return {app, [args] { return run_serve(*args); }};
}

}  // namespace phinfer::cli
