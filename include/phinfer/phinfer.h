#ifndef PHINFER_PHINFER_H
#define PHINFER_PHINFER_H
/* The C API of phinfer (libphinfer.so, C11): load a Phi-3-family model, tokenize, format chats and
 * generate, from C or any language with a C FFI. Shaped like onnxruntime-genai's C API (OgaModel,
 * OgaTokenizer, OgaGeneratorParams, OgaGenerator). The ABI is stable within one SONAME (libphinfer.so.0).
 *
 * Conventions
 * - Functions return a phinfer_status: PHINFER_OK (0) or an error code; results come back through
 *   out-pointers, which are left unchanged on failure. After a failure phinfer_last_error() gives a
 *   message naming the argument, file or field, what was expected and what was found.
 * - The message is per thread (thread-local): it belongs to the last call that failed on the calling
 *   thread and stays until the next failure there (a successful call does not clear it).
 * - Handles are opaque, created by *_create / phinfer_model_load and freed by the matching *_destroy
 *   (destroying NULL does nothing). A tokenizer, token stream or generator keeps its model alive, so
 *   handles may be destroyed in any order.
 * - New arrays and strings (encode, decode, chat formatting) are allocated by the library and freed
 *   by the caller with phinfer_free(). Pointers a getter returns (phinfer_result_*,
 *   phinfer_generator_get_*, phinfer_token_stream_*) are borrowed from the handle: valid until the
 *   handle is next changed or destroyed. Text is UTF-8, NUL-terminated, its length (without the NUL)
 *   given too; token ids are int32_t.
 * - No C++ exception crosses this API: every failure, out of memory included, is a status code.
 *
 * Threading contract
 * - phinfer_model, phinfer_tokenizer: every function may be called from any thread at any time.
 *   Compute on one model (phinfer_generate*, generators' append / generate_next_token / rewind) runs
 *   one call at a time; a second caller waits. Tokenizer calls never wait for compute.
 * - phinfer_generator, phinfer_token_stream, phinfer_result: used by one thread at a time (several
 *   generators of one model may live on different threads; their compute interleaves call by call).
 * - phinfer_model_options, phinfer_gen_params: set them up on one thread; once set, any number of
 *   threads may pass them to calls at the same time, as long as nobody changes them meanwhile. Calls
 *   copy what they need: changing or destroying them afterwards affects nothing already created.
 * - The streaming callback runs on the thread that called phinfer_generate*, inside that call. It may
 *   use the tokenizer, but must not start compute on the same model (that call would wait forever).
 */
#include <stddef.h>
#include <stdint.h>

#include "phinfer/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum phinfer_status {
  PHINFER_OK = 0,
  PHINFER_ERROR_INVALID_ARGUMENT = 1, /* a NULL pointer, a value out of range, an unknown option */
  PHINFER_ERROR_NOT_FOUND = 2,        /* the model path does not exist; a token not in the vocabulary */
  PHINFER_ERROR_INVALID_STATE = 3,    /* a generator asked to choose a token with nothing appended, or done */
  PHINFER_ERROR_OUT_OF_MEMORY = 4,
  PHINFER_ERROR_FAILED = 5,           /* the library refused the input (bad model file, bad token id,
                                         prompt longer than the context, ...): see phinfer_last_error() */
  PHINFER_ERROR_INTERNAL = 6          /* an unexpected failure inside the library (a bug) */
} phinfer_status;

typedef struct phinfer_model_options phinfer_model_options;
typedef struct phinfer_model phinfer_model;
typedef struct phinfer_tokenizer phinfer_tokenizer;
typedef struct phinfer_token_stream phinfer_token_stream;
typedef struct phinfer_gen_params phinfer_gen_params;
typedef struct phinfer_generator phinfer_generator;
typedef struct phinfer_result phinfer_result;

/* --- Library ------------------------------------------------------------------------------------ */

PHINFER_API const char* phinfer_version(void);                  /* "MAJOR.MINOR.PATCH" */
PHINFER_API const char* phinfer_status_name(phinfer_status status);  /* "PHINFER_ERROR_NOT_FOUND", ... */
PHINFER_API const char* phinfer_last_error(void);               /* "" when nothing failed on this thread */
PHINFER_API void phinfer_free(void* memory);                    /* arrays and strings the library allocated */

/* --- Model ---------------------------------------------------------------------------------------- */

/* Load options; defaults: threads 0 (one per physical core), device "cpu", kv_cache "f32", sliding
 * window "auto", no conversion. Values are checked when the model is loaded. */
PHINFER_API phinfer_status phinfer_model_options_create(phinfer_model_options** out);
PHINFER_API void phinfer_model_options_destroy(phinfer_model_options* options);
PHINFER_API phinfer_status phinfer_model_options_set_threads(phinfer_model_options* options, int threads);
PHINFER_API phinfer_status phinfer_model_options_set_device(phinfer_model_options* options, const char* device);
/* KV cache precision: "f32" (exact), "f16" (half the memory) or "q8" (int8, about a quarter). */
PHINFER_API phinfer_status phinfer_model_options_set_kv_cache(phinfer_model_options* options, const char* dtype);
/* "auto" (as config.json), "off", or a number of keys. */
PHINFER_API phinfer_status phinfer_model_options_set_sliding_window(phinfer_model_options* options, const char* window);
/* Converts a Hugging Face folder at load into this weight format (fp32, fp16, bf16, int8, int4), cached
 * under the cache folder (which must be set too); later loads reuse the cached model file. */
PHINFER_API phinfer_status phinfer_model_options_set_weight_format(phinfer_model_options* options, const char* format);
PHINFER_API phinfer_status phinfer_model_options_set_cache_dir(phinfer_model_options* options, const char* dir);
/* Quantization of that conversion: weights per group (-1: per output channel; int4 default 128), and
 * symmetric (scale only) instead of the default asymmetric (scale and minimum). */
PHINFER_API phinfer_status phinfer_model_options_set_group_size(phinfer_model_options* options, int group_size);
PHINFER_API phinfer_status phinfer_model_options_set_symmetric(phinfer_model_options* options, int symmetric);

/* path: a Hugging Face checkpoint folder or a phinfer model file (.phi). options may be NULL. */
PHINFER_API phinfer_status phinfer_model_load(const char* path, const phinfer_model_options* options,
                                              phinfer_model** out);
PHINFER_API void phinfer_model_destroy(phinfer_model* model);
PHINFER_API phinfer_status phinfer_model_vocab_size(const phinfer_model* model, int64_t* out);
PHINFER_API phinfer_status phinfer_model_context_length(const phinfer_model* model, int64_t* out);

/* --- Tokenizer ------------------------------------------------------------------------------------ */

typedef struct phinfer_chat_message {
  const char* role;     /* "system", "user", "assistant", "tool" */
  const char* content;
} phinfer_chat_message;

/* The model's tokenizer (tokenizer.json of the folder, or the one inside the model file). */
PHINFER_API phinfer_status phinfer_tokenizer_create(phinfer_model* model, phinfer_tokenizer** out);
PHINFER_API void phinfer_tokenizer_destroy(phinfer_tokenizer* tokenizer);
/* add_special_tokens: what the tokenizer's post-processor adds (e.g. <s>), as Hugging Face encode(). */
PHINFER_API phinfer_status phinfer_tokenizer_encode(const phinfer_tokenizer* tokenizer, const char* text,
                                                    int add_special_tokens, int32_t** out_ids, size_t* out_count);
PHINFER_API phinfer_status phinfer_tokenizer_decode(const phinfer_tokenizer* tokenizer, const int32_t* ids,
                                                    size_t count, int skip_special_tokens, char** out_text,
                                                    size_t* out_length);
/* The model's chat template (tokenizer_config.json's chat_template) applied to the messages, as
 * transformers' apply_chat_template(tokenize=False); add_generation_prompt opens the assistant's turn. */
PHINFER_API phinfer_status phinfer_tokenizer_apply_chat_template(const phinfer_tokenizer* tokenizer,
                                                                 const phinfer_chat_message* messages, size_t count,
                                                                 int add_generation_prompt, char** out_text,
                                                                 size_t* out_length);
/* The same, tokenized (the template writes the special tokens; nothing is added): a chat prompt. */
PHINFER_API phinfer_status phinfer_tokenizer_encode_chat(const phinfer_tokenizer* tokenizer,
                                                         const phinfer_chat_message* messages, size_t count,
                                                         int add_generation_prompt, int32_t** out_ids,
                                                         size_t* out_count);
/* The id of a vocabulary entry or added token ("<|end|>"); PHINFER_ERROR_NOT_FOUND when there is none. */
PHINFER_API phinfer_status phinfer_tokenizer_token_to_id(const phinfer_tokenizer* tokenizer, const char* token,
                                                         int32_t* out_id);

/* Streaming detokenizer: push ids one at a time and get the text that became final (never half a
 * UTF-8 character); the pieces plus flush() concatenate to decode() of all the ids. */
PHINFER_API phinfer_status phinfer_token_stream_create(const phinfer_tokenizer* tokenizer, int skip_special_tokens,
                                                       phinfer_token_stream** out);
PHINFER_API void phinfer_token_stream_destroy(phinfer_token_stream* stream);
PHINFER_API phinfer_status phinfer_token_stream_push(phinfer_token_stream* stream, int32_t id, const char** out_text,
                                                     size_t* out_length);
/* Whatever is held back (incomplete bytes become U+FFFD); the stream then starts a new sequence. */
PHINFER_API phinfer_status phinfer_token_stream_flush(phinfer_token_stream* stream, const char** out_text,
                                                      size_t* out_length);

/* --- Generation parameters -------------------------------------------------------------------------- */

/* Hugging Face's defaults: max_new_tokens 256, greedy, temperature 1, top_k 50, top_p 1, min_p 0,
 * repetition/presence/frequency penalties off, seed 0, special tokens skipped in the text. Values are
 * checked when a generation starts. Generation always stops at the model's eos ids and <|end|>. */
PHINFER_API phinfer_status phinfer_gen_params_create(phinfer_gen_params** out);
PHINFER_API void phinfer_gen_params_destroy(phinfer_gen_params* params);
PHINFER_API phinfer_status phinfer_gen_params_set_max_new_tokens(phinfer_gen_params* params, int64_t max_new_tokens);
PHINFER_API phinfer_status phinfer_gen_params_set_do_sample(phinfer_gen_params* params, int do_sample);
PHINFER_API phinfer_status phinfer_gen_params_set_temperature(phinfer_gen_params* params, double temperature);
PHINFER_API phinfer_status phinfer_gen_params_set_top_k(phinfer_gen_params* params, int64_t top_k);  /* 0: off */
PHINFER_API phinfer_status phinfer_gen_params_set_top_p(phinfer_gen_params* params, double top_p);   /* 1: off */
PHINFER_API phinfer_status phinfer_gen_params_set_min_p(phinfer_gen_params* params, double min_p);   /* 0: off */
PHINFER_API phinfer_status phinfer_gen_params_set_repetition_penalty(phinfer_gen_params* params, double penalty);
PHINFER_API phinfer_status phinfer_gen_params_set_presence_penalty(phinfer_gen_params* params, double penalty);
PHINFER_API phinfer_status phinfer_gen_params_set_frequency_penalty(phinfer_gen_params* params, double penalty);
/* The same seed gives the same sampled text. */
PHINFER_API phinfer_status phinfer_gen_params_set_seed(phinfer_gen_params* params, uint64_t seed);
PHINFER_API phinfer_status phinfer_gen_params_set_skip_special_tokens(phinfer_gen_params* params, int skip);
/* Generate max_new_tokens whatever comes (benchmarks). */
PHINFER_API phinfer_status phinfer_gen_params_set_ignore_eos(phinfer_gen_params* params, int ignore_eos);
/* Stop when the generated text contains this (matched across tokens; neither streamed nor returned).
 * Text generation only (phinfer_generate*): a generator works on token ids and refuses them. */
PHINFER_API phinfer_status phinfer_gen_params_add_stop_string(phinfer_gen_params* params, const char* stop);
/* One more id that stops generation (it is kept as the last output id). */
PHINFER_API phinfer_status phinfer_gen_params_add_stop_token_id(phinfer_gen_params* params, int32_t id);

/* --- One-call generation -------------------------------------------------------------------------- */

/* Receives the text as soon as it is final (a UTF-8 piece, not NUL-terminated; may hold several
 * tokens' text, or come late when a stop string might start there). Return 0 to go on, nonzero to
 * stop (finish reason "stopped"). */
typedef int (*phinfer_stream_callback)(const char* text, size_t length, void* user_data);

/* Generates from prompt ids. params and callback may be NULL (defaults; no streaming). */
PHINFER_API phinfer_status phinfer_generate(phinfer_model* model, const int32_t* prompt_ids, size_t prompt_count,
                                            const phinfer_gen_params* params, phinfer_stream_callback callback,
                                            void* user_data, phinfer_result** out);
/* The same from text, encoded with the tokenizer's special tokens (as phinfer_tokenizer_encode with
 * add_special_tokens 1). For a chat, use phinfer_tokenizer_encode_chat and phinfer_generate. */
PHINFER_API phinfer_status phinfer_generate_text(phinfer_model* model, const char* prompt,
                                                 const phinfer_gen_params* params, phinfer_stream_callback callback,
                                                 void* user_data, phinfer_result** out);

typedef struct phinfer_generation_stats {
  int64_t prompt_tokens;
  int64_t generated_tokens;
  double ttft_ms;              /* prompt processing and the first token */
  double decode_tokens_per_s;  /* tokens after the first over their time */
} phinfer_generation_stats;

PHINFER_API void phinfer_result_destroy(phinfer_result* result);
/* The generated ids, including the eos id that stopped the generation. */
PHINFER_API phinfer_status phinfer_result_output_ids(const phinfer_result* result, const int32_t** out_ids,
                                                     size_t* out_count);
PHINFER_API phinfer_status phinfer_result_text(const phinfer_result* result, const char** out_text,
                                               size_t* out_length);
/* "eos", "stop" (a stop string), "length" (max_new_tokens or the context), "stopped" (the callback). */
PHINFER_API phinfer_status phinfer_result_finish_reason(const phinfer_result* result, const char** out_reason);
PHINFER_API phinfer_status phinfer_result_stats(const phinfer_result* result, phinfer_generation_stats* out);

/* --- Generator: one token stream driven by the caller ---------------------------------------------- */

/* params may be NULL (defaults). Sampling settings, max_new_tokens and stop ids apply. */
PHINFER_API phinfer_status phinfer_generator_create(phinfer_model* model, const phinfer_gen_params* params,
                                                    phinfer_generator** out);
PHINFER_API void phinfer_generator_destroy(phinfer_generator* generator);
/* Runs the tokens through the model; the logits of the last one become available. */
PHINFER_API phinfer_status phinfer_generator_append_tokens(phinfer_generator* generator, const int32_t* ids,
                                                           size_t count);
/* Chooses the next token from the current logits (greedy or sampled as the params say) and appends it.
 * out_id may be NULL. PHINFER_ERROR_INVALID_STATE when nothing was appended or the generator is done. */
PHINFER_API phinfer_status phinfer_generator_generate_next_token(phinfer_generator* generator, int32_t* out_id);
/* The token the last generate_next_token chose; PHINFER_ERROR_INVALID_STATE when none was chosen
 * since the generator was created or last rewound. */
PHINFER_API phinfer_status phinfer_generator_get_next_token(const phinfer_generator* generator, int32_t* out_id);
/* 1 after a stop id, max_new_tokens generated tokens or a full context (and for a NULL generator), else 0. */
PHINFER_API int phinfer_generator_is_done(const phinfer_generator* generator);
/* Logits of the last token ([vocab_size] floats); PHINFER_ERROR_INVALID_STATE when there are none. */
PHINFER_API phinfer_status phinfer_generator_get_logits(const phinfer_generator* generator, const float** out_logits,
                                                        size_t* out_count);
/* The whole sequence: appended tokens and generated ones, in order. */
PHINFER_API phinfer_status phinfer_generator_get_tokens(const phinfer_generator* generator, const int32_t** out_ids,
                                                        size_t* out_count);
/* Keeps the first `length` tokens and forgets the rest (length beyond the sequence changes nothing).
 * The logits of the new last token are recomputed (that token runs through the model again), so
 * generate_next_token may follow at once: greedy decoding then repeats exactly what it generated before.
 * The max_new_tokens count restarts. length 0 empties the generator. */
PHINFER_API phinfer_status phinfer_generator_rewind_to(phinfer_generator* generator, size_t length);

#ifdef __cplusplus
}
#endif

#endif /* PHINFER_PHINFER_H */
