// Generates greedily with the C++ API of an installed libphinfer.so and prints the ids and the text;
// then shows that a phinfer::Error thrown inside the library is caught here by its type.
// Usage: consumer_cpp MODEL PROMPT MAX_NEW_TOKENS
#include <phinfer/error.h>
#include <phinfer/pipeline.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s MODEL PROMPT MAX_NEW_TOKENS\n", argv[0]);
    return 2;
  }
  try {
    const phinfer::Pipeline pipeline = phinfer::Pipeline::load(argv[1]);
    phinfer::GenerationConfig config;
    config.max_new_tokens = std::stoll(argv[3]);
    const phinfer::GenerationResult result = pipeline.generate(std::string(argv[2]), config);
    std::printf("ids:");
    for (int32_t id : result.output_ids) std::printf(" %d", id);
    std::printf("\ntext: %s\n", result.text.c_str());
  } catch (const phinfer::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  try {
    phinfer::Pipeline::load(std::string(argv[1]) + "/no-such-model");
    std::printf("error: none\n");
  } catch (const phinfer::Error& e) {
    std::printf("error: caught phinfer::Error\n");
  }
  return 0;
}
