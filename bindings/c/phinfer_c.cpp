// The C API (include/phinfer/phinfer.h) over the public C++ API: every function converts its
// arguments, calls Pipeline / Tokenizer / Generator, and turns every exception into a status code
// and a thread-local message. No logic of the library is repeated here.
#include "phinfer/phinfer.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "phinfer/engine.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"

#ifndef PHINFER_VERSION
#error "PHINFER_VERSION must be defined by the build (the project version)"
#endif

// The handles. A tokenizer, token stream or generator holds the model's Pipeline, so handles may be
// destroyed in any order.
struct phinfer_model_options {
  phinfer::PipelineOptions pipeline;
  std::optional<std::string> weight_format;
  std::optional<int> group_size;
  std::optional<bool> symmetric;
  std::string cache_dir;
};

struct phinfer_model {
  std::shared_ptr<const phinfer::Pipeline> pipeline;
};

struct phinfer_tokenizer {
  std::shared_ptr<const phinfer::Pipeline> pipeline;
  const phinfer::Tokenizer* tokenizer;
};

struct phinfer_token_stream {
  std::shared_ptr<const phinfer::Pipeline> pipeline;
  phinfer::Tokenizer::StreamDecoder decoder;
  std::string piece;  // the text handed out last
};

struct phinfer_gen_params {
  phinfer::GenerationConfig config;
};

struct phinfer_generator {
  std::shared_ptr<const phinfer::Pipeline> pipeline;
  phinfer::Generator generator;
  std::optional<int32_t> next_token;  // chosen by the last generate_next_token
};

struct phinfer_result {
  phinfer::GenerationResult result;
};

// A failure this layer detects itself (NULL argument, wrong state), with its status. In a named
// namespace: GCC exports the typeinfo of a thrown type from an anonymous one despite -fvisibility=hidden.
namespace phinfer::capi {
struct ApiError {
  phinfer_status status;
  std::string message;
};
}  // namespace phinfer::capi

namespace {

using phinfer::capi::ApiError;

thread_local std::string t_last_error;

void set_last_error(const char* function, const char* message) noexcept {
  try {
    t_last_error.assign(function).append(": ").append(message);
  } catch (...) {
    t_last_error.clear();  // no memory for the message: the status still says what happened
  }
}

// Runs `body` (returning void), turning every exception into a status and the thread's message.
template <class Body>
phinfer_status guarded(const char* function, Body&& body) noexcept {
  try {
    body();
    return PHINFER_OK;
  } catch (const ApiError& e) {
    set_last_error(function, e.message.c_str());
    return e.status;
  } catch (const std::bad_alloc&) {
    set_last_error(function, "out of memory");
    return PHINFER_ERROR_OUT_OF_MEMORY;
  } catch (const phinfer::Error& e) {
    set_last_error(function, e.what());
    return PHINFER_ERROR_FAILED;
  } catch (const std::exception& e) {
    set_last_error(function, e.what());
    return PHINFER_ERROR_INTERNAL;
  } catch (...) {
    set_last_error(function, "unknown exception");
    return PHINFER_ERROR_INTERNAL;
  }
}

template <class T>
T& require(T* pointer, const char* name) {
  if (!pointer) throw ApiError{PHINFER_ERROR_INVALID_ARGUMENT, std::string(name) + " is NULL"};
  return *pointer;
}

const char* require_text(const char* text, const char* name) {
  return &require(text, name);
}

// An array argument: NULL is allowed only for an empty one.
template <class T>
std::span<const T> require_array(const T* data, size_t count, const char* name) {
  if (!data && count > 0)
    throw ApiError{PHINFER_ERROR_INVALID_ARGUMENT, std::string(name) + " is NULL but its count is " + std::to_string(count)};
  return {data, count};
}

// A copy the caller frees with phinfer_free (malloc'd, so never an empty allocation).
template <class T>
T* malloc_copy(const T* data, size_t count, size_t extra = 0) {
  void* memory = std::malloc((count + extra) * sizeof(T) + 1);
  if (!memory) throw std::bad_alloc();
  if (count) std::memcpy(memory, data, count * sizeof(T));
  return static_cast<T*>(memory);
}

void return_ids(const std::vector<int32_t>& ids, int32_t** out_ids, size_t* out_count) {
  *out_ids = malloc_copy(ids.data(), ids.size());
  *out_count = ids.size();
}

void return_text(const std::string& text, char** out_text, size_t* out_length) {
  char* copy = malloc_copy(text.data(), text.size(), 1);
  copy[text.size()] = '\0';
  *out_text = copy;
  if (out_length) *out_length = text.size();
}

std::vector<phinfer::ChatMessage> chat_messages(const phinfer_chat_message* messages, size_t count) {
  std::vector<phinfer::ChatMessage> out;
  out.reserve(count);
  for (const phinfer_chat_message& m : require_array(messages, count, "messages")) {
    const std::string index = "messages[" + std::to_string(out.size()) + "]";
    phinfer::ChatMessage message;
    message.role = require_text(m.role, (index + ".role").c_str());
    message.content = require_text(m.content, (index + ".content").c_str());
    out.push_back(std::move(message));
  }
  return out;
}

const phinfer::GenerationConfig& config_of(const phinfer_gen_params* params) {
  static const phinfer::GenerationConfig defaults;
  return params ? params->config : defaults;
}

phinfer_status generate(const char* function, phinfer_model* model, const std::vector<int32_t>* ids,
                        const char* prompt, const phinfer_gen_params* params, phinfer_stream_callback callback,
                        void* user_data, phinfer_result** out) {
  return guarded(function, [&] {
    const phinfer::Pipeline& pipeline = *require(model, "model").pipeline;
    require(out, "out");
    std::string piece;  // NUL-terminated copy of each streamed piece
    phinfer::Streamer streamer;
    if (callback)
      streamer = [&](std::string_view text) {
        piece.assign(text);
        return callback(piece.c_str(), piece.size(), user_data) == 0;
      };
    auto result = std::make_unique<phinfer_result>();
    result->result = ids ? pipeline.generate(*ids, config_of(params), streamer)
                         : pipeline.generate(std::string_view(prompt), config_of(params), streamer);
    *out = result.release();
  });
}

}  // namespace

extern "C" {

// --- Library --------------------------------------------------------------------------------------

const char* phinfer_version(void) { return PHINFER_VERSION; }

const char* phinfer_status_name(phinfer_status status) {
  switch (status) {
    case PHINFER_OK: return "PHINFER_OK";
    case PHINFER_ERROR_INVALID_ARGUMENT: return "PHINFER_ERROR_INVALID_ARGUMENT";
    case PHINFER_ERROR_NOT_FOUND: return "PHINFER_ERROR_NOT_FOUND";
    case PHINFER_ERROR_INVALID_STATE: return "PHINFER_ERROR_INVALID_STATE";
    case PHINFER_ERROR_OUT_OF_MEMORY: return "PHINFER_ERROR_OUT_OF_MEMORY";
    case PHINFER_ERROR_FAILED: return "PHINFER_ERROR_FAILED";
    case PHINFER_ERROR_INTERNAL: return "PHINFER_ERROR_INTERNAL";
  }
  return "unknown phinfer_status";
}

const char* phinfer_last_error(void) { return t_last_error.c_str(); }

void phinfer_free(void* memory) { std::free(memory); }

// --- Model ----------------------------------------------------------------------------------------

phinfer_status phinfer_model_options_create(phinfer_model_options** out) {
  return guarded(__func__, [&] {
    phinfer_model_options*& slot = require(out, "out");  // checked before anything is allocated
    slot = new phinfer_model_options();
  });
}

void phinfer_model_options_destroy(phinfer_model_options* options) { delete options; }

phinfer_status phinfer_model_options_set_threads(phinfer_model_options* options, int threads) {
  return guarded(__func__, [&] { require(options, "options").pipeline.threads = threads; });
}

phinfer_status phinfer_model_options_set_device(phinfer_model_options* options, const char* device) {
  return guarded(__func__, [&] { require(options, "options").pipeline.device = require_text(device, "device"); });
}

phinfer_status phinfer_model_options_set_kv_cache(phinfer_model_options* options, const char* dtype) {
  return guarded(__func__, [&] { require(options, "options").pipeline.kv_cache_dtype = require_text(dtype, "dtype"); });
}

phinfer_status phinfer_model_options_set_sliding_window(phinfer_model_options* options, const char* window) {
  return guarded(__func__, [&] { require(options, "options").pipeline.sliding_window = require_text(window, "window"); });
}

phinfer_status phinfer_model_options_set_weight_format(phinfer_model_options* options, const char* format) {
  return guarded(__func__, [&] { require(options, "options").weight_format = require_text(format, "format"); });
}

phinfer_status phinfer_model_options_set_cache_dir(phinfer_model_options* options, const char* dir) {
  return guarded(__func__, [&] { require(options, "options").cache_dir = require_text(dir, "dir"); });
}

phinfer_status phinfer_model_options_set_group_size(phinfer_model_options* options, int group_size) {
  return guarded(__func__, [&] { require(options, "options").group_size = group_size; });
}

phinfer_status phinfer_model_options_set_symmetric(phinfer_model_options* options, int symmetric) {
  return guarded(__func__, [&] { require(options, "options").symmetric = symmetric != 0; });
}

phinfer_status phinfer_model_load(const char* path, const phinfer_model_options* options, phinfer_model** out) {
  return guarded(__func__, [&] {
    const std::filesystem::path model_path = require_text(path, "path");
    require(out, "out");
    phinfer::PipelineOptions pipeline_options;
    if (options) {
      pipeline_options = options->pipeline;
      if (options->weight_format) {
        if (options->cache_dir.empty())
          throw ApiError{PHINFER_ERROR_INVALID_ARGUMENT,
                         "converting to weight format '" + *options->weight_format +
                             "' needs a cache folder for the converted model (phinfer_model_options_set_cache_dir)"};
        phinfer::ConvertOptions convert;
        convert.weight_format = *options->weight_format;
        convert.group_size = options->group_size;
        convert.symmetric = options->symmetric.value_or(false);
        convert.threads = options->pipeline.threads;
        pipeline_options.convert = convert;
        pipeline_options.cache_dir = options->cache_dir;
      } else if (options->group_size || options->symmetric) {
        throw ApiError{PHINFER_ERROR_INVALID_ARGUMENT,
                       "the group size and symmetric options apply to a conversion: set a weight format too"};
      }
    }
    std::error_code ec;
    if (!std::filesystem::exists(model_path, ec))
      throw ApiError{PHINFER_ERROR_NOT_FOUND, model_path.string() + ": no such file or folder"};
    auto model = std::make_unique<phinfer_model>();
    model->pipeline = std::make_shared<const phinfer::Pipeline>(phinfer::Pipeline::load(model_path, pipeline_options));
    *out = model.release();
  });
}

void phinfer_model_destroy(phinfer_model* model) { delete model; }

phinfer_status phinfer_model_vocab_size(const phinfer_model* model, int64_t* out) {
  return guarded(__func__, [&] {
    const int64_t vocab = require(model, "model").pipeline->config().vocab_size;
    require(out, "out") = vocab;
  });
}

phinfer_status phinfer_model_context_length(const phinfer_model* model, int64_t* out) {
  return guarded(__func__, [&] {
    const int64_t context = require(model, "model").pipeline->config().max_position_embeddings;
    require(out, "out") = context;
  });
}

// --- Tokenizer ------------------------------------------------------------------------------------

phinfer_status phinfer_tokenizer_create(phinfer_model* model, phinfer_tokenizer** out) {
  return guarded(__func__, [&] {
    const auto& pipeline = require(model, "model").pipeline;
    require(out, "out");
    const phinfer::Tokenizer& tokenizer = pipeline->tokenizer();  // throws when the model has none
    *out = new phinfer_tokenizer{pipeline, &tokenizer};
  });
}

void phinfer_tokenizer_destroy(phinfer_tokenizer* tokenizer) { delete tokenizer; }

phinfer_status phinfer_tokenizer_encode(const phinfer_tokenizer* tokenizer, const char* text, int add_special_tokens,
                                        int32_t** out_ids, size_t* out_count) {
  return guarded(__func__, [&] {
    const phinfer::Tokenizer& tok = *require(tokenizer, "tokenizer").tokenizer;
    const char* input = require_text(text, "text");
    require(out_ids, "out_ids");
    require(out_count, "out_count");
    return_ids(tok.encode(input, add_special_tokens != 0), out_ids, out_count);
  });
}

phinfer_status phinfer_tokenizer_decode(const phinfer_tokenizer* tokenizer, const int32_t* ids, size_t count,
                                        int skip_special_tokens, char** out_text, size_t* out_length) {
  return guarded(__func__, [&] {
    const phinfer::Tokenizer& tok = *require(tokenizer, "tokenizer").tokenizer;
    const auto input = require_array(ids, count, "ids");
    require(out_text, "out_text");
    return_text(tok.decode(std::vector<int32_t>(input.begin(), input.end()), skip_special_tokens != 0), out_text,
                out_length);
  });
}

phinfer_status phinfer_tokenizer_apply_chat_template(const phinfer_tokenizer* tokenizer,
                                                     const phinfer_chat_message* messages, size_t count,
                                                     int add_generation_prompt, char** out_text, size_t* out_length) {
  return guarded(__func__, [&] {
    const phinfer::Pipeline& pipeline = *require(tokenizer, "tokenizer").pipeline;
    const auto chat = chat_messages(messages, count);
    require(out_text, "out_text");
    return_text(pipeline.render_chat(chat, add_generation_prompt != 0), out_text, out_length);
  });
}

phinfer_status phinfer_tokenizer_encode_chat(const phinfer_tokenizer* tokenizer, const phinfer_chat_message* messages,
                                             size_t count, int add_generation_prompt, int32_t** out_ids,
                                             size_t* out_count) {
  return guarded(__func__, [&] {
    const phinfer::Pipeline& pipeline = *require(tokenizer, "tokenizer").pipeline;
    const auto chat = chat_messages(messages, count);
    require(out_ids, "out_ids");
    require(out_count, "out_count");
    return_ids(pipeline.encode_chat(chat, add_generation_prompt != 0), out_ids, out_count);
  });
}

phinfer_status phinfer_tokenizer_token_to_id(const phinfer_tokenizer* tokenizer, const char* token, int32_t* out_id) {
  return guarded(__func__, [&] {
    const phinfer::Tokenizer& tok = *require(tokenizer, "tokenizer").tokenizer;
    const char* name = require_text(token, "token");
    require(out_id, "out_id");
    const auto id = tok.token_to_id(name);
    if (!id) throw ApiError{PHINFER_ERROR_NOT_FOUND, "'" + std::string(name) + "' is not in the vocabulary"};
    *out_id = *id;
  });
}

phinfer_status phinfer_token_stream_create(const phinfer_tokenizer* tokenizer, int skip_special_tokens,
                                           phinfer_token_stream** out) {
  return guarded(__func__, [&] {
    const phinfer_tokenizer& tok = require(tokenizer, "tokenizer");
    require(out, "out");
    *out = new phinfer_token_stream{tok.pipeline, phinfer::Tokenizer::StreamDecoder(*tok.tokenizer, skip_special_tokens != 0),
                                    std::string()};
  });
}

void phinfer_token_stream_destroy(phinfer_token_stream* stream) { delete stream; }

phinfer_status phinfer_token_stream_push(phinfer_token_stream* stream, int32_t id, const char** out_text,
                                         size_t* out_length) {
  return guarded(__func__, [&] {
    phinfer_token_stream& s = require(stream, "stream");
    require(out_text, "out_text");
    s.piece = s.decoder.push(id);
    *out_text = s.piece.c_str();
    if (out_length) *out_length = s.piece.size();
  });
}

phinfer_status phinfer_token_stream_flush(phinfer_token_stream* stream, const char** out_text, size_t* out_length) {
  return guarded(__func__, [&] {
    phinfer_token_stream& s = require(stream, "stream");
    require(out_text, "out_text");
    s.piece = s.decoder.flush();
    *out_text = s.piece.c_str();
    if (out_length) *out_length = s.piece.size();
  });
}

// --- Generation parameters ------------------------------------------------------------------------

phinfer_status phinfer_gen_params_create(phinfer_gen_params** out) {
  return guarded(__func__, [&] {
    phinfer_gen_params*& slot = require(out, "out");
    slot = new phinfer_gen_params();
  });
}

void phinfer_gen_params_destroy(phinfer_gen_params* params) { delete params; }

#define PHINFER_GEN_PARAMS_SETTER(NAME, TYPE, ASSIGN)                                              \
  phinfer_status phinfer_gen_params_set_##NAME(phinfer_gen_params* params, TYPE value) {          \
    return guarded(__func__, [&] { require(params, "params").config.ASSIGN; });                   \
  }
PHINFER_GEN_PARAMS_SETTER(max_new_tokens, int64_t, max_new_tokens = value)
PHINFER_GEN_PARAMS_SETTER(do_sample, int, do_sample = value != 0)
PHINFER_GEN_PARAMS_SETTER(temperature, double, temperature = value)
PHINFER_GEN_PARAMS_SETTER(top_k, int64_t, top_k = value)
PHINFER_GEN_PARAMS_SETTER(top_p, double, top_p = value)
PHINFER_GEN_PARAMS_SETTER(min_p, double, min_p = value)
PHINFER_GEN_PARAMS_SETTER(repetition_penalty, double, repetition_penalty = value)
PHINFER_GEN_PARAMS_SETTER(presence_penalty, double, presence_penalty = value)
PHINFER_GEN_PARAMS_SETTER(frequency_penalty, double, frequency_penalty = value)
PHINFER_GEN_PARAMS_SETTER(seed, uint64_t, seed = value)
PHINFER_GEN_PARAMS_SETTER(skip_special_tokens, int, skip_special_tokens = value != 0)
PHINFER_GEN_PARAMS_SETTER(ignore_eos, int, ignore_eos = value != 0)
#undef PHINFER_GEN_PARAMS_SETTER

phinfer_status phinfer_gen_params_add_stop_string(phinfer_gen_params* params, const char* stop) {
  return guarded(__func__, [&] {
    phinfer_gen_params& p = require(params, "params");
    p.config.stop_strings.emplace_back(require_text(stop, "stop"));
  });
}

phinfer_status phinfer_gen_params_add_stop_token_id(phinfer_gen_params* params, int32_t id) {
  return guarded(__func__, [&] { require(params, "params").config.extra_eos_token_ids.push_back(id); });
}

// --- One-call generation --------------------------------------------------------------------------

phinfer_status phinfer_generate(phinfer_model* model, const int32_t* prompt_ids, size_t prompt_count,
                                const phinfer_gen_params* params, phinfer_stream_callback callback, void* user_data,
                                phinfer_result** out) {
  std::vector<int32_t> ids;
  const phinfer_status copied = guarded(__func__, [&] {
    const auto prompt = require_array(prompt_ids, prompt_count, "prompt_ids");
    ids.assign(prompt.begin(), prompt.end());
  });
  if (copied != PHINFER_OK) return copied;
  return generate(__func__, model, &ids, nullptr, params, callback, user_data, out);
}

phinfer_status phinfer_generate_text(phinfer_model* model, const char* prompt, const phinfer_gen_params* params,
                                     phinfer_stream_callback callback, void* user_data, phinfer_result** out) {
  if (!prompt) return guarded(__func__, [&] { require_text(prompt, "prompt"); });
  return generate(__func__, model, nullptr, prompt, params, callback, user_data, out);
}

void phinfer_result_destroy(phinfer_result* result) { delete result; }

phinfer_status phinfer_result_output_ids(const phinfer_result* result, const int32_t** out_ids, size_t* out_count) {
  return guarded(__func__, [&] {
    const auto& ids = require(result, "result").result.output_ids;
    require(out_ids, "out_ids");
    require(out_count, "out_count") = ids.size();
    *out_ids = ids.data();
  });
}

phinfer_status phinfer_result_text(const phinfer_result* result, const char** out_text, size_t* out_length) {
  return guarded(__func__, [&] {
    const std::string& text = require(result, "result").result.text;
    require(out_text, "out_text") = text.c_str();
    if (out_length) *out_length = text.size();
  });
}

phinfer_status phinfer_result_finish_reason(const phinfer_result* result, const char** out_reason) {
  return guarded(__func__, [&] {
    const std::string& reason = require(result, "result").result.finish_reason;
    require(out_reason, "out_reason") = reason.c_str();
  });
}

phinfer_status phinfer_result_stats(const phinfer_result* result, phinfer_generation_stats* out) {
  return guarded(__func__, [&] {
    const phinfer::GenerationStats& s = require(result, "result").result.stats;
    require(out, "out") = phinfer_generation_stats{s.prompt_tokens, s.generated_tokens, s.ttft_ms, s.decode_tokens_per_s};
  });
}

// --- Generator ------------------------------------------------------------------------------------

phinfer_status phinfer_generator_create(phinfer_model* model, const phinfer_gen_params* params,
                                        phinfer_generator** out) {
  return guarded(__func__, [&] {
    const auto& pipeline = require(model, "model").pipeline;
    require(out, "out");
    const phinfer::GenerationConfig& config = config_of(params);
    if (!config.stop_strings.empty())
      throw ApiError{PHINFER_ERROR_INVALID_ARGUMENT,
                     "a generator works on token ids and cannot match stop strings; use stop token ids, or "
                     "phinfer_generate for text"};
    *out = new phinfer_generator{pipeline, phinfer::Generator(*pipeline, config), std::nullopt};
  });
}

void phinfer_generator_destroy(phinfer_generator* generator) { delete generator; }

phinfer_status phinfer_generator_append_tokens(phinfer_generator* generator, const int32_t* ids, size_t count) {
  return guarded(__func__, [&] {
    phinfer_generator& g = require(generator, "generator");
    g.generator.append_tokens(require_array(ids, count, "ids"));
    g.next_token.reset();
  });
}

phinfer_status phinfer_generator_generate_next_token(phinfer_generator* generator, int32_t* out_id) {
  return guarded(__func__, [&] {
    phinfer_generator& g = require(generator, "generator");
    if (g.generator.is_done())
      throw ApiError{PHINFER_ERROR_INVALID_STATE, "the generation is done (a stop id, max_new_tokens or a full context)"};
    if (g.generator.logits().empty())
      throw ApiError{PHINFER_ERROR_INVALID_STATE, "append tokens first: there are no logits to choose from"};
    const int32_t id = g.generator.generate_next_token();
    g.next_token = id;
    if (out_id) *out_id = id;
  });
}

phinfer_status phinfer_generator_get_next_token(const phinfer_generator* generator, int32_t* out_id) {
  return guarded(__func__, [&] {
    const phinfer_generator& g = require(generator, "generator");
    require(out_id, "out_id");
    if (!g.next_token)
      throw ApiError{PHINFER_ERROR_INVALID_STATE, "no token was generated since the last append or rewind"};
    *out_id = *g.next_token;
  });
}

int phinfer_generator_is_done(const phinfer_generator* generator) {
  int done = 1;
  guarded(__func__, [&] { done = require(generator, "generator").generator.is_done() ? 1 : 0; });
  return done;
}

phinfer_status phinfer_generator_get_logits(const phinfer_generator* generator, const float** out_logits,
                                            size_t* out_count) {
  return guarded(__func__, [&] {
    const std::span<const float> logits = require(generator, "generator").generator.logits();
    require(out_logits, "out_logits");
    require(out_count, "out_count");
    if (logits.empty())
      throw ApiError{PHINFER_ERROR_INVALID_STATE, "no logits: nothing was appended since the last rewind, or the generation is done"};
    *out_logits = logits.data();
    *out_count = logits.size();
  });
}

phinfer_status phinfer_generator_get_tokens(const phinfer_generator* generator, const int32_t** out_ids,
                                            size_t* out_count) {
  return guarded(__func__, [&] {
    const std::vector<int32_t>& tokens = require(generator, "generator").generator.tokens();
    require(out_ids, "out_ids");
    require(out_count, "out_count") = tokens.size();
    *out_ids = tokens.data();
  });
}

phinfer_status phinfer_generator_rewind_to(phinfer_generator* generator, size_t length) {
  return guarded(__func__, [&] {
    phinfer_generator& g = require(generator, "generator");
    const std::vector<int32_t>& tokens = g.generator.tokens();
    if (length >= tokens.size()) return;
    g.next_token.reset();
    if (length == 0) {
      g.generator.rewind_to(0);
      return;
    }
    // The C++ Generator drops the logits on rewind; running the new last token again brings them back.
    const int32_t last = tokens[length - 1];
    g.generator.rewind_to(length - 1);
    g.generator.append_tokens(std::span<const int32_t>(&last, 1));
  });
}

}  // extern "C"
