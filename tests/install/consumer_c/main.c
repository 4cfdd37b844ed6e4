/* Generates greedily with the C API of an installed libphinfer.so, streaming the text, and prints
 * the ids, the streamed text and the library's version.
 * Usage: consumer_c MODEL PROMPT MAX_NEW_TOKENS */
#include <phinfer/phinfer.h>

#include <stdio.h>
#include <stdlib.h>

static int print_piece(const char* text, size_t length, void* user_data) {
  (void)user_data;
  fwrite(text, 1, length, stdout);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MODEL PROMPT MAX_NEW_TOKENS\n", argv[0]);
    return 2;
  }
  phinfer_model* model = NULL;
  phinfer_gen_params* params = NULL;
  phinfer_result* result = NULL;
  const int32_t* ids = NULL;
  size_t count = 0;
  int status = 1;
  if (phinfer_model_load(argv[1], NULL, &model) == PHINFER_OK && phinfer_gen_params_create(&params) == PHINFER_OK &&
      phinfer_gen_params_set_max_new_tokens(params, strtoll(argv[3], NULL, 10)) == PHINFER_OK) {
    printf("text: ");
    if (phinfer_generate_text(model, argv[2], params, print_piece, NULL, &result) == PHINFER_OK &&
        phinfer_result_output_ids(result, &ids, &count) == PHINFER_OK) {
      printf("\nids:");
      for (size_t i = 0; i < count; ++i) printf(" %d", (int)ids[i]);
      printf("\nversion: %s\n", phinfer_version());
      status = 0;
    }
  }
  if (status) fprintf(stderr, "error: %s\n", phinfer_last_error());
  phinfer_result_destroy(result);
  phinfer_gen_params_destroy(params);
  phinfer_model_destroy(model);
  return status;
}
