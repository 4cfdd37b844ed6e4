#pragma once
// `phinfer serve`: an OpenAI-compatible HTTP server over one generation Engine per model.
// cpp-httplib answers each connection on a worker of its thread pool; a request becomes engine
// requests (one per choice), and one thread per model drives its engine's steps (continuous
// batching: requests join and leave the running batch at every step). Token callbacks run on that
// thread and only queue events; the HTTP worker turns them into JSON or server-sent events.
#include <signal.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "phinfer/engine.h"
#include "phinfer/pipeline.h"
#include "server/openai_api.h"

namespace phinfer::server {

struct ServedModel {
  std::string id;        // the `model` field that picks it
  Pipeline pipeline;
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;              // empty: no authentication
  int parallel = 16;                // requests decoding at once per model
  int64_t ctx_size = 0;             // 0: the model's context
  int http_threads = 96;            // connections served at once
  size_t max_body_bytes = 4 << 20;
  size_t max_queued = 256;          // requests in flight per server; more get 503
  int timeout_s = 60;               // socket read/write timeout
  int drain_s = 10;                 // SIGTERM: how long in-flight requests may finish
  int draft_tokens = 0;             // speculative decoding for every request (the draft model, else prompt lookup); 0: off
  ApiLimits limits;
};

// SIGTERM and SIGINT are taken by the server's own thread (sigwait); every other thread must block
// them, and threads inherit the mask of their creator: call this before anything starts threads
// (loading a model starts its thread pool). Returns the blocked set.
sigset_t block_stop_signals();

// Serves until SIGTERM or SIGINT; returns the process exit code. Prints the address it listens on
// ("listening on http://HOST:PORT") to stderr once it accepts connections (port 0: a free one).
int serve(std::vector<ServedModel> models, const ServerOptions& options);

}  // namespace phinfer::server
