/* The C API (phinfer.h, libphinfer.so) from a C11 program: golden greedy ids and text of the shared
 * models, streaming and stopping through the callback, stop strings, rewinding a generator, the chat
 * template, a conversion option, threads, and the error paths (codes and per-thread messages).
 * Usage: c_api_test SHARED_DIR TMP_DIR (SHARED_DIR: the project's ../shared, read only). */
#include <phinfer/phinfer.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

static int failures = 0;

#define CHECK(cond, ...)                                                         \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                              \
      fputc('\n', stderr);                                                       \
      ++failures;                                                                \
    }                                                                            \
  } while (0)

/* A call that must succeed; on failure it prints the status and message and returns 0. */
static int ok_at(phinfer_status status, const char* call, int line) {
  if (status == PHINFER_OK) return 1;
  fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, line, call, phinfer_status_name(status), phinfer_last_error());
  ++failures;
  return 0;
}
#define OK(call) ok_at((call), #call, __LINE__)

/* A call that must fail with `expected` and a message containing `needle`. */
static void expect_error_at(phinfer_status status, phinfer_status expected, const char* needle, const char* call,
                            int line) {
  if (status != expected) {
    fprintf(stderr, "%s:%d: %s -> %s, expected %s (message: %s)\n", __FILE__, line, call, phinfer_status_name(status),
            phinfer_status_name(expected), phinfer_last_error());
    ++failures;
  } else if (!strstr(phinfer_last_error(), needle)) {
    fprintf(stderr, "%s:%d: %s: message \"%s\" does not contain \"%s\"\n", __FILE__, line, call, phinfer_last_error(),
            needle);
    ++failures;
  }
}
#define EXPECT_ERROR(call, expected, needle) expect_error_at((call), (expected), (needle), #call, __LINE__)

static char shared_dir[4096];
static char tmp_dir[4096];

static const char* path_in(char* buffer, size_t size, const char* dir, const char* name) {
  snprintf(buffer, size, "%s/%s", dir, name);
  return buffer;
}

static json_t* load_golden(const char* model) {
  char path[4200];
  snprintf(path, sizeof path, "%s/models/%s/golden.json", shared_dir, model);
  json_error_t error;
  json_t* golden = json_load_file(path, 0, &error);
  if (!golden) {
    fprintf(stderr, "cannot read the golden %s: %s (line %d)\n", path, error.text, error.line);
    exit(2);
  }
  return golden;
}

/* A JSON array of ids as a malloc'd int32_t array. */
static int32_t* json_ids(const json_t* array, size_t* count) {
  *count = json_array_size(array);
  int32_t* ids = malloc((*count + 1) * sizeof(int32_t));
  if (!ids) exit(2);
  for (size_t i = 0; i < *count; ++i) ids[i] = (int32_t)json_integer_value(json_array_get(array, i));
  return ids;
}

static int same_ids(const int32_t* a, const int32_t* b, size_t count) {
  return count == 0 || memcmp(a, b, count * sizeof(int32_t)) == 0;
}

static void print_ids(const char* label, const int32_t* ids, size_t count) {
  fprintf(stderr, "  %s:", label);
  for (size_t i = 0; i < count; ++i) fprintf(stderr, " %d", (int)ids[i]);
  fputc('\n', stderr);
}

static phinfer_model* load_model(const char* name, const phinfer_model_options* options) {
  char path[4200];
  snprintf(path, sizeof path, "%s/models/%s", shared_dir, name);
  phinfer_model* model = NULL;
  if (!OK(phinfer_model_load(path, options, &model))) return NULL;
  return model;
}

/* Greedy params for comparing with a golden: exactly `count` new tokens. */
static phinfer_gen_params* greedy_params(int64_t count) {
  phinfer_gen_params* params = NULL;
  if (!OK(phinfer_gen_params_create(&params))) exit(2);
  OK(phinfer_gen_params_set_max_new_tokens(params, count));
  OK(phinfer_gen_params_set_ignore_eos(params, 1));
  return params;
}

/* Generates up to `count` tokens with a generator; returns how many it made. */
static size_t generate_with(phinfer_generator* generator, int32_t* out, size_t count) {
  size_t made = 0;
  while (made < count && !phinfer_generator_is_done(generator)) {
    if (!OK(phinfer_generator_generate_next_token(generator, &out[made]))) break;
    ++made;
  }
  return made;
}

/* --- Library and error paths ------------------------------------------------------------------ */

static int record_error(void* unused) {
  (void)unused;
  phinfer_model* model = NULL;
  EXPECT_ERROR(phinfer_model_load(NULL, NULL, &model), PHINFER_ERROR_INVALID_ARGUMENT, "path is NULL");
  return 0;
}

static void test_library_and_errors(void) {
  const char* version = phinfer_version();
  int major = -1, minor = -1, patch = -1;
  CHECK(sscanf(version, "%d.%d.%d", &major, &minor, &patch) == 3, "version \"%s\"", version);
  CHECK(strcmp(phinfer_status_name(PHINFER_ERROR_NOT_FOUND), "PHINFER_ERROR_NOT_FOUND") == 0, "status name");
  CHECK(strcmp(phinfer_last_error(), "") == 0, "no error yet, found \"%s\"", phinfer_last_error());

  /* A missing model: its own code, a message naming the path, the out-pointer untouched. */
  char missing[4200];
  path_in(missing, sizeof missing, tmp_dir, "no-such-model-folder");
  phinfer_model* model = NULL;
  EXPECT_ERROR(phinfer_model_load(missing, NULL, &model), PHINFER_ERROR_NOT_FOUND, missing);
  CHECK(model == NULL, "the out-pointer was written on failure");
  CHECK(strstr(phinfer_last_error(), "phinfer_model_load") != NULL, "message names the function: %s", phinfer_last_error());

  /* The message is per thread: another thread's failure leaves this thread's message as it was. */
  thrd_t thread;
  CHECK(thrd_create(&thread, record_error, NULL) == thrd_success, "thrd_create");
  thrd_join(thread, NULL);
  CHECK(strstr(phinfer_last_error(), missing) != NULL, "this thread's message changed: %s", phinfer_last_error());

  /* A file that is not a model: the library's message names it. */
  char readme[4200];
  path_in(readme, sizeof readme, shared_dir, "models/README.md");
  EXPECT_ERROR(phinfer_model_load(readme, NULL, &model), PHINFER_ERROR_FAILED, readme);

  /* NULL arguments. */
  EXPECT_ERROR(phinfer_model_load(readme, NULL, NULL), PHINFER_ERROR_INVALID_ARGUMENT, "out is NULL");
  EXPECT_ERROR(phinfer_model_vocab_size(NULL, NULL), PHINFER_ERROR_INVALID_ARGUMENT, "model is NULL");
  EXPECT_ERROR(phinfer_tokenizer_create(NULL, NULL), PHINFER_ERROR_INVALID_ARGUMENT, "model is NULL");
  EXPECT_ERROR(phinfer_gen_params_set_temperature(NULL, 0.5), PHINFER_ERROR_INVALID_ARGUMENT, "params is NULL");
  EXPECT_ERROR(phinfer_generate(NULL, NULL, 0, NULL, NULL, NULL, NULL), PHINFER_ERROR_INVALID_ARGUMENT, "model is NULL");
  EXPECT_ERROR(phinfer_generator_append_tokens(NULL, NULL, 0), PHINFER_ERROR_INVALID_ARGUMENT, "generator is NULL");
  EXPECT_ERROR(phinfer_gen_params_create(NULL), PHINFER_ERROR_INVALID_ARGUMENT, "out is NULL");
  EXPECT_ERROR(phinfer_model_options_create(NULL), PHINFER_ERROR_INVALID_ARGUMENT, "out is NULL");
  CHECK(phinfer_generator_is_done(NULL) == 1, "a NULL generator is done");
  phinfer_model_destroy(NULL);
  phinfer_tokenizer_destroy(NULL);
  phinfer_generator_destroy(NULL);
  phinfer_result_destroy(NULL);
  phinfer_free(NULL);

  /* Options the library refuses, each with a message naming the value. */
  phinfer_model_options* options = NULL;
  if (!OK(phinfer_model_options_create(&options))) return;
  char stories[4200];
  path_in(stories, sizeof stories, shared_dir, "models/stories260K-phi3");
  OK(phinfer_model_options_set_kv_cache(options, "f8"));
  EXPECT_ERROR(phinfer_model_load(stories, options, &model), PHINFER_ERROR_FAILED, "f8");
  OK(phinfer_model_options_set_kv_cache(options, "f32"));
  OK(phinfer_model_options_set_group_size(options, 32));
  EXPECT_ERROR(phinfer_model_load(stories, options, &model), PHINFER_ERROR_INVALID_ARGUMENT, "weight format");
  OK(phinfer_model_options_set_weight_format(options, "int3"));
  EXPECT_ERROR(phinfer_model_load(stories, options, &model), PHINFER_ERROR_INVALID_ARGUMENT, "cache folder");
  OK(phinfer_model_options_set_cache_dir(options, tmp_dir));
  EXPECT_ERROR(phinfer_model_load(stories, options, &model), PHINFER_ERROR_FAILED, "int3");
  CHECK(model == NULL, "the out-pointer was written on failure");
  phinfer_model_options_destroy(options);
}

/* --- stories260K: golden greedy ids and text ----------------------------------------------------- */

typedef struct stream_capture {
  char text[8192];
  size_t length;
  int calls;
  int stop_after;  /* return nonzero on this call (0: never) */
} stream_capture;

static int capture_text(const char* text, size_t length, void* user_data) {
  stream_capture* capture = user_data;
  if (text[length] != '\0') ++failures, fprintf(stderr, "streamed text is not NUL-terminated\n");
  if (capture->length + length < sizeof capture->text) {
    memcpy(capture->text + capture->length, text, length);
    capture->length += length;
    capture->text[capture->length] = '\0';
  }
  ++capture->calls;
  return capture->stop_after > 0 && capture->calls >= capture->stop_after;
}

static void check_result(phinfer_result* result, const int32_t* ids, size_t count, const char* text,
                         const char* reason, const char* label) {
  const int32_t* out_ids = NULL;
  size_t out_count = 0;
  const char* out_text = NULL;
  const char* out_reason = NULL;
  EXPECT_ERROR(phinfer_result_output_ids(result, &out_ids, NULL), PHINFER_ERROR_INVALID_ARGUMENT, "out_count is NULL");
  CHECK(out_ids == NULL, "out_ids was written by a call that failed");
  if (!OK(phinfer_result_output_ids(result, &out_ids, &out_count)) || !OK(phinfer_result_text(result, &out_text, NULL)) ||
      !OK(phinfer_result_finish_reason(result, &out_reason)))
    return;
  CHECK(out_count == count && same_ids(out_ids, ids, count), "%s: output ids differ from the golden", label);
  if (out_count != count || !same_ids(out_ids, ids, count)) print_ids("found", out_ids, out_count);
  if (text) CHECK(strcmp(out_text, text) == 0, "%s: text \"%s\", expected \"%s\"", label, out_text, text);
  CHECK(strcmp(out_reason, reason) == 0, "%s: finish reason %s, expected %s", label, out_reason, reason);
}

/* One greedy phinfer_generate of exactly n_greedy tokens, compared with the golden ids (and text). */
static void expect_golden_generation(phinfer_model* model, const int32_t* prompt_ids, size_t n_prompt,
                                     const int32_t* greedy_ids, size_t n_greedy, const char* text, const char* label) {
  phinfer_gen_params* params = greedy_params((int64_t)n_greedy);
  phinfer_result* result = NULL;
  if (OK(phinfer_generate(model, prompt_ids, n_prompt, params, NULL, NULL, &result))) {
    check_result(result, greedy_ids, n_greedy, text, "length", label);
    phinfer_result_destroy(result);
  }
  phinfer_gen_params_destroy(params);
}

static void test_stories_prompt(phinfer_model* model, phinfer_tokenizer* tokenizer, const json_t* golden) {
  const char* prompt = json_string_value(json_object_get(golden, "prompt"));
  const char* greedy_text = json_string_value(json_object_get(golden, "greedy_text"));
  size_t n_prompt = 0, n_greedy = 0;
  int32_t* prompt_ids = json_ids(json_object_get(golden, "prompt_ids"), &n_prompt);
  int32_t* greedy_ids = json_ids(json_object_get(golden, "greedy_ids"), &n_greedy);
  fprintf(stderr, "stories260K, prompt \"%s\"\n", prompt);

  /* Tokenizer: the golden prompt ids, and the golden text back from the golden ids. */
  int32_t* ids = NULL;
  size_t count = 0;
  if (OK(phinfer_tokenizer_encode(tokenizer, prompt, 1, &ids, &count))) {
    CHECK(count == n_prompt && same_ids(ids, prompt_ids, count), "encode(\"%s\") differs from the golden", prompt);
    phinfer_free(ids);
  }
  char* text = NULL;
  size_t length = 0;
  if (OK(phinfer_tokenizer_decode(tokenizer, greedy_ids, n_greedy, 1, &text, &length))) {
    CHECK(strcmp(text, greedy_text) == 0 && length == strlen(greedy_text), "decode: \"%s\"", text);
    phinfer_free(text);
  }
  phinfer_token_stream* stream = NULL;
  if (OK(phinfer_token_stream_create(tokenizer, 1, &stream))) {
    stream_capture pieces = {{0}, 0, 0, 0};
    for (size_t i = 0; i < n_greedy; ++i) {
      const char* piece = NULL;
      size_t piece_length = 0;
      if (OK(phinfer_token_stream_push(stream, greedy_ids[i], &piece, &piece_length)))
        capture_text(piece, piece_length, &pieces);
    }
    const char* rest = NULL;
    size_t rest_length = 0;
    if (OK(phinfer_token_stream_flush(stream, &rest, &rest_length))) capture_text(rest, rest_length, &pieces);
    CHECK(strcmp(pieces.text, greedy_text) == 0, "token stream: \"%s\"", pieces.text);
    phinfer_token_stream_destroy(stream);
  }

  /* Generator: greedy ids, logits, the whole sequence, then rewinds that regenerate the same ids. */
  phinfer_gen_params* params = greedy_params((int64_t)n_greedy);
  phinfer_generator* generator = NULL;
  int32_t* made = malloc((n_greedy + 1) * sizeof(int32_t));
  if (!made) exit(2);
  if (OK(phinfer_generator_create(model, params, &generator))) {
    int32_t next = -1;
    EXPECT_ERROR(phinfer_generator_generate_next_token(generator, &next), PHINFER_ERROR_INVALID_STATE, "append tokens first");
    EXPECT_ERROR(phinfer_generator_get_next_token(generator, &next), PHINFER_ERROR_INVALID_STATE, "no token");
    OK(phinfer_generator_append_tokens(generator, prompt_ids, n_prompt));
    const float* logits = NULL;
    size_t vocab = 0;
    if (OK(phinfer_generator_get_logits(generator, &logits, &vocab))) {
      const json_t* expected = json_object_get(golden, "last_prompt_logits");
      CHECK(vocab == json_array_size(expected), "%zu logits", vocab);
      double worst = 0;
      for (size_t i = 0; i < vocab && i < json_array_size(expected); ++i)
        worst = fmax(worst, fabs(logits[i] - json_number_value(json_array_get(expected, i))));
      CHECK(worst < 1e-3, "last prompt logits %.3g away from the golden", worst);
    }
    size_t n = generate_with(generator, made, n_greedy);
    CHECK(n == n_greedy && same_ids(made, greedy_ids, n), "generator: greedy ids differ from the golden");
    CHECK(phinfer_generator_is_done(generator), "done after max_new_tokens");
    EXPECT_ERROR(phinfer_generator_generate_next_token(generator, NULL), PHINFER_ERROR_INVALID_STATE, "done");
    if (OK(phinfer_generator_get_next_token(generator, &next)))
      CHECK(next == greedy_ids[n_greedy - 1], "next token %d", (int)next);
    const int32_t* sequence = NULL;
    size_t length_all = 0;
    if (OK(phinfer_generator_get_tokens(generator, &sequence, &length_all)))
      CHECK(length_all == n_prompt + n_greedy && same_ids(sequence, prompt_ids, n_prompt) &&
                same_ids(sequence + n_prompt, greedy_ids, n_greedy),
            "the sequence is not prompt + generated ids");

    /* Back to the prompt: the same ids again. */
    if (OK(phinfer_generator_rewind_to(generator, n_prompt))) {
      CHECK(!phinfer_generator_is_done(generator), "not done after a rewind");
      memset(made, 0, n_greedy * sizeof(int32_t));
      n = generate_with(generator, made, n_greedy);
      CHECK(n == n_greedy && same_ids(made, greedy_ids, n), "after rewinding to the prompt: ids differ");
    }
    /* Into the generated part: the continuation of the golden. */
    if (OK(phinfer_generator_rewind_to(generator, n_prompt + 10))) {
      n = generate_with(generator, made, 20);
      CHECK(n == 20 && same_ids(made, greedy_ids + 10, n), "after rewinding to prompt + 10: ids differ");
      if (OK(phinfer_generator_get_tokens(generator, &sequence, &length_all)))
        CHECK(length_all == n_prompt + 30, "%zu tokens after the rewind", length_all);
    }
    /* To nothing: a new prompt works as on a fresh generator. */
    if (OK(phinfer_generator_rewind_to(generator, 0))) {
      EXPECT_ERROR(phinfer_generator_get_logits(generator, &logits, &vocab), PHINFER_ERROR_INVALID_STATE, "no logits");
      OK(phinfer_generator_append_tokens(generator, prompt_ids, n_prompt));
      n = generate_with(generator, made, 5);
      CHECK(n == 5 && same_ids(made, greedy_ids, n), "after rewinding to 0: ids differ");
    }
    phinfer_generator_destroy(generator);
  }

  /* One call, streamed: the golden ids, and the streamed pieces make the golden text. */
  stream_capture capture = {{0}, 0, 0, 0};
  phinfer_result* result = NULL;
  if (OK(phinfer_generate_text(model, prompt, params, capture_text, &capture, &result))) {
    check_result(result, greedy_ids, n_greedy, greedy_text, "length", "generate_text");
    CHECK(strcmp(capture.text, greedy_text) == 0, "streamed \"%s\"", capture.text);
    phinfer_generation_stats stats;
    if (OK(phinfer_result_stats(result, &stats)))
      CHECK(stats.prompt_tokens == (int64_t)n_prompt && stats.generated_tokens == (int64_t)n_greedy,
            "stats: %lld prompt, %lld generated", (long long)stats.prompt_tokens, (long long)stats.generated_tokens);
    phinfer_result_destroy(result);
  }
  /* The callback stops it on its third piece: a prefix of the golden, "stopped". */
  stream_capture stopper = {{0}, 0, 0, 3};
  if (OK(phinfer_generate(model, prompt_ids, n_prompt, params, capture_text, &stopper, &result))) {
    const int32_t* out_ids = NULL;
    size_t out_count = 0;
    const char* reason = NULL;
    OK(phinfer_result_output_ids(result, &out_ids, &out_count));
    OK(phinfer_result_finish_reason(result, &reason));
    CHECK(stopper.calls == 3, "the callback ran %d times after asking to stop", stopper.calls);
    CHECK(out_count >= 3 && out_count < n_greedy && same_ids(out_ids, greedy_ids, out_count),
          "stopped: %zu ids, not a prefix of the golden", out_count);
    CHECK(strcmp(reason, "stopped") == 0, "finish reason %s", reason);
    phinfer_result_destroy(result);
  }
  phinfer_gen_params_destroy(params);
  free(made);
  free(prompt_ids);
  free(greedy_ids);
}

static void test_stories(void) {
  phinfer_model* model = load_model("stories260K-phi3", NULL);
  if (!model) return;
  phinfer_tokenizer* tokenizer = NULL;
  if (!OK(phinfer_tokenizer_create(model, &tokenizer))) return;
  int64_t vocab = 0, context = 0;
  OK(phinfer_model_vocab_size(model, &vocab));
  OK(phinfer_model_context_length(model, &context));
  CHECK(vocab == 512 && context == 512, "vocab %lld, context %lld", (long long)vocab, (long long)context);

  json_t* golden = load_golden("stories260K-phi3");
  const json_t* prompts = json_object_get(golden, "prompts");
  CHECK(json_array_size(prompts) >= 3, "the golden has %zu prompts", json_array_size(prompts));
  for (size_t i = 0; i < json_array_size(prompts); ++i) test_stories_prompt(model, tokenizer, json_array_get(prompts, i));

  const json_t* second = json_array_get(prompts, 1);
  const char* prompt = json_string_value(json_object_get(second, "prompt"));
  const char* greedy_text = json_string_value(json_object_get(second, "greedy_text"));
  size_t n_greedy = 0;
  int32_t* greedy_ids = json_ids(json_object_get(second, "greedy_ids"), &n_greedy);

  /* A stop string: the text ends before it, "stop". */
  phinfer_gen_params* params = greedy_params((int64_t)n_greedy);
  const char* stop = "little girl";
  OK(phinfer_gen_params_add_stop_string(params, stop));
  phinfer_result* result = NULL;
  if (OK(phinfer_generate_text(model, prompt, params, NULL, NULL, &result))) {
    const char* text = NULL;
    const char* reason = NULL;
    OK(phinfer_result_text(result, &text, NULL));
    OK(phinfer_result_finish_reason(result, &reason));
    const char* at = strstr(greedy_text, stop);
    CHECK(at && strlen(text) == (size_t)(at - greedy_text) && strncmp(text, greedy_text, strlen(text)) == 0,
          "stop string: \"%s\"", text);
    CHECK(strcmp(reason, "stop") == 0, "finish reason %s", reason);
    phinfer_result_destroy(result);
  }
  /* ... which a generator, working on ids, refuses. */
  phinfer_generator* generator = NULL;
  EXPECT_ERROR(phinfer_generator_create(model, params, &generator), PHINFER_ERROR_INVALID_ARGUMENT, "stop strings");
  phinfer_gen_params_destroy(params);

  /* Sampling: the same seed gives the same ids. */
  params = greedy_params(32);
  OK(phinfer_gen_params_set_do_sample(params, 1));
  OK(phinfer_gen_params_set_temperature(params, 0.9));
  OK(phinfer_gen_params_set_seed(params, 1234));
  phinfer_result* first = NULL;
  phinfer_result* second_run = NULL;
  if (OK(phinfer_generate_text(model, prompt, params, NULL, NULL, &first)) &&
      OK(phinfer_generate_text(model, prompt, params, NULL, NULL, &second_run))) {
    const int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    OK(phinfer_result_output_ids(first, &a, &na));
    OK(phinfer_result_output_ids(second_run, &b, &nb));
    CHECK(na == 32 && na == nb && same_ids(a, b, na), "the same seed gave different ids");
  }
  phinfer_result_destroy(first);
  phinfer_result_destroy(second_run);
  /* Values the library refuses when the generation starts. */
  OK(phinfer_gen_params_set_temperature(params, -1));
  EXPECT_ERROR(phinfer_generate_text(model, prompt, params, NULL, NULL, &result), PHINFER_ERROR_FAILED, "temperature");
  phinfer_gen_params_destroy(params);

  /* Ids and text the library refuses, with messages naming them. */
  const int32_t outside[2] = {1, 100000};
  EXPECT_ERROR(phinfer_generate(model, outside, 2, NULL, NULL, NULL, &result), PHINFER_ERROR_FAILED, "100000");
  EXPECT_ERROR(phinfer_generate(model, NULL, 2, NULL, NULL, NULL, &result), PHINFER_ERROR_INVALID_ARGUMENT, "prompt_ids is NULL");
  if (OK(phinfer_generator_create(model, NULL, &generator))) {
    EXPECT_ERROR(phinfer_generator_append_tokens(generator, outside, 2), PHINFER_ERROR_FAILED, "100000");
    phinfer_generator_destroy(generator);
  }
  char* text = NULL;
  EXPECT_ERROR(phinfer_tokenizer_decode(tokenizer, outside, 2, 0, &text, NULL), PHINFER_ERROR_FAILED, "100000");
  int32_t* ids = NULL;
  size_t count = 0;
  EXPECT_ERROR(phinfer_tokenizer_encode(tokenizer, NULL, 1, &ids, &count), PHINFER_ERROR_INVALID_ARGUMENT, "text is NULL");
  int32_t id = -1;
  EXPECT_ERROR(phinfer_tokenizer_token_to_id(tokenizer, "<|no such token|>", &id), PHINFER_ERROR_NOT_FOUND, "<|no such token|>");
  if (OK(phinfer_tokenizer_token_to_id(tokenizer, "<s>", &id))) CHECK(id == 1, "<s> is %d", (int)id);
  phinfer_chat_message no_template[1] = {{"user", "hi"}};
  EXPECT_ERROR(phinfer_tokenizer_apply_chat_template(tokenizer, no_template, 1, 1, &text, NULL), PHINFER_ERROR_FAILED,
               "chat_template");

  /* Handles keep their model: the tokenizer works after the model handle is gone. */
  phinfer_model_destroy(model);
  if (OK(phinfer_tokenizer_decode(tokenizer, greedy_ids, n_greedy, 1, &text, NULL))) {
    CHECK(strcmp(text, greedy_text) == 0, "decode after the model handle was destroyed");
    phinfer_free(text);
  }
  phinfer_tokenizer_destroy(tokenizer);
  free(greedy_ids);
  json_decref(golden);
}

/* A Hugging Face folder converted at load (fp32, cached in TMP_DIR) and run from the model file. */
static void test_conversion(void) {
  phinfer_model_options* options = NULL;
  if (!OK(phinfer_model_options_create(&options))) return;
  OK(phinfer_model_options_set_weight_format(options, "fp32"));
  OK(phinfer_model_options_set_cache_dir(options, tmp_dir));
  OK(phinfer_model_options_set_threads(options, 2));
  phinfer_model* model = load_model("stories260K-phi3", options);
  phinfer_model_options_destroy(options);
  if (!model) return;
  json_t* golden = load_golden("stories260K-phi3");
  const json_t* prompt = json_array_get(json_object_get(golden, "prompts"), 2);
  size_t n_prompt = 0, n_greedy = 0;
  int32_t* prompt_ids = json_ids(json_object_get(prompt, "prompt_ids"), &n_prompt);
  int32_t* greedy_ids = json_ids(json_object_get(prompt, "greedy_ids"), &n_greedy);
  expect_golden_generation(model, prompt_ids, n_prompt, greedy_ids, n_greedy,
                           json_string_value(json_object_get(prompt, "greedy_text")), "fp32 model file");
  free(prompt_ids);
  free(greedy_ids);
  json_decref(golden);
  phinfer_model_destroy(model);
}

/* The chat template: phi4-tiny-synth's golden chat prompt (text and ids) from its messages, and its greedy ids. */
static void test_chat(void) {
  phinfer_model* model = load_model("phi4-tiny-synth", NULL);
  if (!model) return;
  json_t* golden = load_golden("phi4-tiny-synth");
  const json_t* chat = NULL;
  const json_t* cases = json_object_get(golden, "cases");
  for (size_t i = 0; i < json_array_size(cases); ++i)
    if (strcmp(json_string_value(json_object_get(json_array_get(cases, i), "name")), "chat") == 0)
      chat = json_array_get(cases, i);
  CHECK(chat != NULL, "no chat case in phi4-tiny-synth's golden");
  phinfer_tokenizer* tokenizer = NULL;
  if (chat && OK(phinfer_tokenizer_create(model, &tokenizer))) {
    const json_t* messages_json = json_object_get(chat, "messages");
    phinfer_chat_message messages[8];
    const size_t n_messages = json_array_size(messages_json);
    CHECK(n_messages > 0 && n_messages <= 8, "%zu messages", n_messages);
    for (size_t i = 0; i < n_messages && i < 8; ++i) {
      messages[i].role = json_string_value(json_object_get(json_array_get(messages_json, i), "role"));
      messages[i].content = json_string_value(json_object_get(json_array_get(messages_json, i), "content"));
    }
    size_t n_prompt = 0, n_greedy = 0;
    int32_t* prompt_ids = json_ids(json_object_get(chat, "prompt_ids"), &n_prompt);
    int32_t* greedy_ids = json_ids(json_object_get(chat, "greedy_ids"), &n_greedy);
    char* text = NULL;
    if (OK(phinfer_tokenizer_apply_chat_template(tokenizer, messages, n_messages, 1, &text, NULL))) {
      CHECK(strcmp(text, json_string_value(json_object_get(chat, "prompt_text"))) == 0, "chat text \"%s\"", text);
      phinfer_free(text);
    }
    int32_t* ids = NULL;
    size_t count = 0;
    if (OK(phinfer_tokenizer_encode_chat(tokenizer, messages, n_messages, 1, &ids, &count))) {
      CHECK(count == n_prompt && same_ids(ids, prompt_ids, count), "encode_chat differs from the golden prompt ids");
      expect_golden_generation(model, ids, count, greedy_ids, n_greedy, NULL, "phi4-tiny-synth chat");
      phinfer_free(ids);
    }
    messages[1].content = NULL;
    EXPECT_ERROR(phinfer_tokenizer_encode_chat(tokenizer, messages, n_messages, 1, &ids, &count),
                 PHINFER_ERROR_INVALID_ARGUMENT, "messages[1].content is NULL");
    free(prompt_ids);
    free(greedy_ids);
    phinfer_tokenizer_destroy(tokenizer);
  }
  json_decref(golden);
  phinfer_model_destroy(model);
}

/* Two threads generating on one model (the compute runs one call at a time): both get the golden. */
typedef struct thread_job {
  phinfer_model* model;
  const int32_t* prompt_ids;
  size_t n_prompt;
  const int32_t* greedy_ids;
  size_t n_greedy;
  int matched;
} thread_job;

static int run_job(void* argument) {
  thread_job* job = argument;
  phinfer_gen_params* params = greedy_params((int64_t)job->n_greedy);
  phinfer_generator* generator = NULL;
  int32_t made[64];
  if (job->n_greedy <= 64 && OK(phinfer_generator_create(job->model, params, &generator)) &&
      OK(phinfer_generator_append_tokens(generator, job->prompt_ids, job->n_prompt)))
    job->matched = generate_with(generator, made, job->n_greedy) == job->n_greedy &&
                   same_ids(made, job->greedy_ids, job->n_greedy);
  phinfer_generator_destroy(generator);
  phinfer_gen_params_destroy(params);
  return 0;
}

static void test_threads(void) {
  phinfer_model* model = load_model("phi3-tiny-mha", NULL);
  if (!model) return;
  json_t* golden = load_golden("phi3-tiny-mha");
  const json_t* chat = json_array_get(json_object_get(golden, "cases"), 0);
  size_t n_prompt = 0, n_greedy = 0;
  int32_t* prompt_ids = json_ids(json_object_get(chat, "prompt_ids"), &n_prompt);
  int32_t* greedy_ids = json_ids(json_object_get(chat, "greedy_ids"), &n_greedy);
  thread_job jobs[2] = {{model, prompt_ids, n_prompt, greedy_ids, n_greedy, 0},
                        {model, prompt_ids, n_prompt, greedy_ids, n_greedy, 0}};
  thrd_t threads[2];
  for (int i = 0; i < 2; ++i) CHECK(thrd_create(&threads[i], run_job, &jobs[i]) == thrd_success, "thrd_create");
  for (int i = 0; i < 2; ++i) {
    thrd_join(threads[i], NULL);
    CHECK(jobs[i].matched, "thread %d: phi3-tiny-mha chat greedy ids differ from the golden", i);
  }
  free(prompt_ids);
  free(greedy_ids);
  json_decref(golden);
  phinfer_model_destroy(model);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s SHARED_DIR TMP_DIR\n", argv[0]);
    return 2;
  }
  snprintf(shared_dir, sizeof shared_dir, "%s", argv[1]);
  snprintf(tmp_dir, sizeof tmp_dir, "%s", argv[2]);
  char readme[4200];
  FILE* probe = fopen(path_in(readme, sizeof readme, shared_dir, "models/README.md"), "r");
  if (!probe) {
    fprintf(stderr, "the shared test data is missing: %s\n", readme);
    return 2;
  }
  fclose(probe);

  test_library_and_errors();
  test_stories();
  test_conversion();
  test_chat();
  test_threads();
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  fprintf(stderr, "all C API checks passed\n");
  return 0;
}
