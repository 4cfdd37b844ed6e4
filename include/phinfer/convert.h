#pragma once
// Hugging Face checkpoint folder -> one phinfer model file, with the weight formats of
// optimum-cli / NNCF: fp32, fp16, bf16, int8, int4 (group size, sym/asym, mixed-precision ratio
// with a backup precision, data-free choice by each layer's quantization error).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "phinfer/export.h"


namespace phinfer {

struct PHINFER_API ConvertOptions {
  std::string weight_format = "int4";     // fp32 | fp16 | bf16 | int8 | int4, or "source": each tensor as
                                          // the source stores it (a GGUF file's types repacked into
                                          // the kernels' layouts, see model/weights.h GgufWeights)
  std::optional<int> group_size;          // int4: default 128; int8: default -1 (per channel); -1 = per channel
  bool symmetric = false;                 // NNCF's default is asymmetric
  double ratio = 1.0;                     // int4 only: share of the layers' weights kept in int4
  std::string backup_precision = "int8";  // int8 | fp16: the rest of the layers when ratio < 1
  std::string embedding_format = "auto";  // auto | fp32 | fp16 | bf16 | int8 | int4
  std::string lm_head_format = "auto";    // auto: int8 for int4 models, else the weight format
  bool plain_rounding = false;            // min/max rounding instead of the error-minimizing search
  int threads = 0;
  std::function<void(double fraction, const std::string& tensor)> progress;
  std::function<void(const std::string& line)> report;  // the summary table, line by line

  void validate() const;                                  // throws phinfer::Error
  std::string key() const;                                // canonical text of the options (cache key)
};

struct TensorChoice {
  std::string name;
  std::string format;   // a weight format name: fp32 | fp16 | bf16 | int8 | int4
  int group_size = -1;
  bool symmetric = true;
  int64_t rows = 0, cols = 0;
  double rel_rmse = 0;  // reconstruction error of the stored weights (0 for float formats)
  uint64_t bytes = 0;
};

struct ConvertSummary {
  std::vector<TensorChoice> tensors;
  uint64_t file_bytes = 0;
  double bits_per_weight = 0;  // over the 2-D weights
};

// Converts `hf_dir` (a Hugging Face folder, or a GGUF file whose tensors are dequantized exactly
// before they are stored in the chosen format) into the model file `out` (written to a per-process out.partial.PID, renamed when complete).
PHINFER_API ConvertSummary convert(const std::filesystem::path& hf_dir, const std::filesystem::path& out, const ConvertOptions& options);

// The cached model file for (hf_dir, options) under cache_dir, converting it first if missing. The
// key hashes the options and each source file's name, size, modification time, first and last MiB.
PHINFER_API std::filesystem::path cached_conversion(const std::filesystem::path& hf_dir, const ConvertOptions& options,
                                        const std::filesystem::path& cache_dir, bool* converted = nullptr);

}  // namespace phinfer
