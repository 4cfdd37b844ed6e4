#pragma once
// Weight matrices as the kernels see them: [rows, cols] in one storage format, read in place
// from the memory-mapped file (no repacking at load).
//   F32 / F16 / BF16: row-major.
//   Int8 / Int4: the tiled, packed layout documented in kernels/quant.h (group_size, symmetric).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "format/dtype.h"
#include "kernels/thread_pool.h"

namespace phinfer::kernels {

enum class WeightFormat { F32, F16, BF16, Int8, Int4 };

// The one table of weight formats: every layer (the converter's options, the model file's tensor
// entries, the loader, messages) names a format by `name`. A new format is one entry here plus
// its kernels.
struct FormatInfo {
  WeightFormat format;
  const char* name;         // "fp32", "fp16", "bf16", "int8", "int4"
  int bits;                 // stored bits per weight, before scales
  bool quantized;           // packed Int8/Int4 layout with groups and scales (quant.h)
  const char* legacy_tag;   // the tag model files of format version 1 used ("q4"); read only
};
std::span<const FormatInfo> weight_formats();
const FormatInfo& format_info(WeightFormat f);
// By name, or by the legacy tag of older model files; null when unknown.
const FormatInfo* find_format_by_name(std::string_view name);
// "fp32, fp16, bf16, int8, int4": for error messages.
std::string format_names();

inline bool is_quantized(WeightFormat f) { return format_info(f).quantized; }

struct WeightMatrix {
  WeightFormat format = WeightFormat::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  const std::byte* data = nullptr;
  // Int8 / Int4 only: columns per quantization group (-1: one group per row, i.e. per output
  // channel), and whether a group has a scale only (symmetric) or a scale and a minimum.
  int group_size = -1;
  bool symmetric = true;

  size_t bytes() const;
  // Row r as fp32 (exact for every float format; the dequantized values for Int8 / Int4).
  void row_to_f32(int64_t r, float* out) const;
  // Columns [c0, c0+n) of row r as fp32.
  void row_span_to_f32(int64_t r, int64_t c0, int64_t n, float* out) const;
};

// y[t, r] = sum_c W[r, c] * x[t, c] for t in [0, n_tokens): x is [n_tokens, cols], y is
// [n_tokens, rows] with row stride y_stride (>= rows).
//   F32/F16/BF16: fp32 fused multiply-add in 16 lanes per (row, token) over the columns in order,
//     then a fixed pairwise reduction: bit-identical on every ISA path.
//   Int8/Int4: activations quantized to int8 on the fly and integer dot products; see quant.h for
//     the numerics (also bit-identical on every ISA path).
// The instruction set is chosen at run time (kernels/isa.h).
void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, ThreadPool& pool);

// Index of the first NaN or infinity in x[0, n), or -1. An integer test of the exponent bits
// that vectorizes: cheap enough to run on every layer's output.
int64_t first_non_finite(const float* x, int64_t n);

// Dot product with fp32 fused multiply-add in 16 independent lanes and a fixed pairwise
// reduction (the same result on every ISA).
float dot(const float* a, const float* b, int64_t n);
// y += a * x (fused multiply-add per element).
void axpy(float a, const float* x, float* y, int64_t n);
// x[i] = exp(x[i] - shift), vectorized: within 2 ulp of exp, exp(-86) for anything below -86
// (see exp_approx in kernels_impl.h); the same bits on every ISA path.
void exp_minus(float* x, int64_t n, float shift);
// out[i] = SiLU(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i], with exp as exp_minus.
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
// out[r] = dot(q, k + r * n, n) for r < rows (one dispatch for a block of attention keys).
void dot_rows(const float* q, const float* k, int64_t rows, int64_t n, float* out);
// y += p[r] * v[r * n ...] for r < rows, in order: the same result as `rows` axpy calls.
void axpy_rows(const float* p, const float* v, int64_t rows, int64_t n, float* y);
// dot_rows and axpy_rows over rows stored as IEEE half (f16), or as int8 codes with one fp32 scale
// per row (q8: value = scales[r] * code): the same bits as converting the rows to fp32 and calling
// the fp32 versions (the AVX-512 path converts in registers). rows <= kMaxConvertedRows unless
// the path converts in registers.
constexpr int64_t kMaxConvertedRows = 64;
void dot_rows(const float* q, const uint16_t* k_f16, int64_t rows, int64_t n, float* out);
void axpy_rows(const float* p, const uint16_t* v_f16, int64_t rows, int64_t n, float* y);
void dot_rows(const float* q, const int8_t* k_q8, const float* scales, int64_t rows, int64_t n, float* out);
void axpy_rows(const float* p, const int8_t* v_q8, const float* scales, int64_t rows, int64_t n, float* y);
// Several queries over the same rows (the query rows of one kv head that see the same keys):
// out[i][r] = dot(q[i], k + r * n, n) and y[i] += sum_r p[i][r] * v[r * n ...] for i < nq, each
// bit for bit what the one-query call gives; each key or value row is read once for all nq queries
// instead of nq times. 1 <= nq <= kMaxQueryRows.
constexpr int kMaxQueryRows = 4;
void dot_rows(const float* const* q, int nq, const float* k, int64_t rows, int64_t n, float* const* out);
void axpy_rows(const float* const* p, int nq, const float* v, int64_t rows, int64_t n, float* const* y);
void dot_rows(const float* const* q, int nq, const uint16_t* k_f16, int64_t rows, int64_t n, float* const* out);
void axpy_rows(const float* const* p, int nq, const uint16_t* v_f16, int64_t rows, int64_t n, float* const* y);
void dot_rows(const float* const* q, int nq, const int8_t* k_q8, const float* scales, int64_t rows, int64_t n,
              float* const* out);
void axpy_rows(const float* const* p, int nq, const int8_t* v_q8, const float* scales, int64_t rows, int64_t n,
               float* const* y);

}  // namespace phinfer::kernels
