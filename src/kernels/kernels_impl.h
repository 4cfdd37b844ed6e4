#pragma once
// Internal interface between the dispatcher (matrix.cpp) and the per-ISA kernel files
// (kernels_scalar.cpp, kernels_avx2.cpp, kernels_avxvnni.cpp, kernels_avx512.cpp).
#include <cstddef>
#include <cstdint>

#include "kernels/isa.h"
#include "kernels/matrix.h"
#include "kernels/quant.h"

// Compile the functions between PHINFER_TARGET_BEGIN("isa,list") and PHINFER_TARGET_END for that
// target (function by function, so the binary still runs anywhere). Include every standard header
// before the region, so that no inline library code is emitted with the wider instruction set.
#define PHINFER_PRAGMA(x) _Pragma(#x)
#if defined(__clang__)
#define PHINFER_TARGET_BEGIN(t) PHINFER_PRAGMA(clang attribute push(__attribute__((target(t))), apply_to = function))
#define PHINFER_TARGET_END PHINFER_PRAGMA(clang attribute pop)
#else
#define PHINFER_TARGET_BEGIN(t) PHINFER_PRAGMA(GCC push_options) PHINFER_PRAGMA(GCC target(t))
#define PHINFER_TARGET_END PHINFER_PRAGMA(GCC pop_options)
#endif

// Complete unrolling of the short constant-trip loops of the micro-kernels, so that accumulator
// arrays live in registers at -O2 as well as -O3.
#define PHINFER_UNROLL _Pragma("GCC unroll 32")

namespace phinfer::kernels::detail {

inline constexpr int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// An activation block whose largest magnitude is below this quantizes to zeros: 127 / amax must be
// finite (a subnormal amax made it infinity, and 0 * infinity a NaN with no int32 conversion), and
// such a block contributes nothing a float result could hold anyway.
inline constexpr float kMinBlockAmax = 1e-30f;

// Quantized activations for one matmul call. Tokens are grouped in panels of `panel` tokens
// (the last may be short); a panel with np tokens holds, at fixed offsets:
//   q:    interleaved (row_bytes == 0): int8 [padded_cols / 4][np][4] (4 consecutive columns of
//         each token side by side, so a kernel broadcasts token i's 4 bytes for sub-chunk k from
//         q + 4 (k np + i));
//         token-major (row_bytes > 0, the AMX tiles' rows): int8 [panel][row_bytes], token i's
//         codes at q + i row_bytes, zero from padded_cols to row_bytes and in the rows past np
//   dx:   float [n_blocks][np]   activation scale of block j, token i
//   corr: int32 [n_blocks][np]   -z * sum(q) of the block (0 for asymmetric weights)
//   dxs:  float [n_blocks][np]   dx * float(sum(q)) (asymmetric weights)
// Padding columns of a block are zero.
struct ActLayout {
  int64_t n_tokens = 0, panel = 1, n_panels = 0;
  int64_t padded_cols = 0, n_blocks = 0;
  int64_t row_bytes = 0;  // token-major rows; 0: interleaved
  int64_t q_bytes = 0, info_bytes = 0, panel_stride = 0;
  size_t total_bytes = 0;

  static ActLayout of(const QuantLayout& L, int64_t n_tokens, int64_t panel, int64_t row_bytes = 0) {
    ActLayout a;
    a.n_tokens = n_tokens;
    a.panel = panel;
    a.n_panels = (n_tokens + panel - 1) / panel;
    a.padded_cols = L.padded_cols;
    a.n_blocks = L.n_blocks;
    a.row_bytes = row_bytes;
    a.q_bytes = row_bytes > 0 ? panel * row_bytes : round_up(panel * L.padded_cols, 64);
    a.info_bytes = round_up(L.n_blocks * panel * 4, 64);
    a.panel_stride = a.q_bytes + 3 * a.info_bytes;
    a.total_bytes = static_cast<size_t>(a.panel_stride * a.n_panels);
    return a;
  }
  int64_t panel_tokens(int64_t p) const { return p + 1 < n_panels ? panel : n_tokens - p * panel; }
};

struct ActPanel {
  const int8_t* q;
  const float* dx;
  const int32_t* corr;
  const float* dxs;
  int64_t np;
};

inline ActPanel act_panel(const ActLayout& a, const std::byte* base, int64_t p) {
  const std::byte* b = base + p * a.panel_stride;
  return {reinterpret_cast<const int8_t*>(b), reinterpret_cast<const float*>(b + a.q_bytes),
          reinterpret_cast<const int32_t*>(b + a.q_bytes + a.info_bytes),
          reinterpret_cast<const float*>(b + a.q_bytes + 2 * a.info_bytes), a.panel_tokens(p)};
}

struct QGemmArgs {
  QuantLayout L;
  const std::byte* w = nullptr;
  ActLayout A;
  const std::byte* acts = nullptr;
  float* y = nullptr;
  int64_t y_stride = 0;
};

// Quantizes one token row x[cols] into q[padded_cols] (block padding zeroed), dx[n_blocks] and
// sums[n_blocks], with the numerics in quant.h.
using QuantizeTokenFn = void (*)(const float* x, const QuantLayout& L, int8_t* q, float* dx, int32_t* sums);
// y for row tiles [tile_begin, tile_end) and every token.
using QGemmFn = void (*)(const QGemmArgs& a, int64_t tile_begin, int64_t tile_end);
// Float formats: y for rows [row_begin, row_end) and every token.
using FGemmFn = void (*)(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride,
                         int64_t row_begin, int64_t row_end);
using DotFn = float (*)(const float* a, const float* b, int64_t n);
using AxpyFn = void (*)(float a, const float* x, float* y, int64_t n);
// y += sum_r p[r] * x[r * n ...]: the same per-element fma sequence as `rows` axpy calls.
using AxpyRowsFn = void (*)(const float* p, const float* x, int64_t rows, int64_t n, float* y);
// out[r] = dot(q, k + r * n, n): the same per-row result as `rows` dot calls.
using DotRowsFn = void (*)(const float* q, const float* k, int64_t rows, int64_t n, float* out);
// The same for rows stored as IEEE half (f16) or int8 codes with a scale per row (q8: value =
// scales[r] * float(code)): the results of converting the rows to fp32 first, then the above.
using DotRowsF16Fn = void (*)(const float* q, const uint16_t* k, int64_t rows, int64_t n, float* out);
using AxpyRowsF16Fn = void (*)(const float* p, const uint16_t* x, int64_t rows, int64_t n, float* y);
using DotRowsQ8Fn = void (*)(const float* q, const int8_t* k, const float* scales, int64_t rows, int64_t n, float* out);
using AxpyRowsQ8Fn = void (*)(const float* p, const int8_t* x, const float* scales, int64_t rows, int64_t n, float* y);
// Attention rows in their stored precision, and nq (<= kMaxQueryRows) queries over the same rows:
// out[i][r] / y[i] as the one-query functions above give them for q[i] / p[i], bit for bit.
enum class RowStorage { F32, F16, Q8 };
struct StoredRows {
  RowStorage storage;
  const void* x;          // float, uint16_t (f16) or int8_t codes, rows * n of them
  const float* scales;    // Q8 only: one per row
};
using DotRowsMultiFn = void (*)(const float* const* q, int nq, const StoredRows& k, int64_t rows, int64_t n, float* const* out);
using AxpyRowsMultiFn = void (*)(const float* const* p, int nq, const StoredRows& x, int64_t rows, int64_t n, float* const* y);
// x[i] = exp_approx(x[i] - shift) (see below).
using ExpMinusFn = void (*)(float* x, int64_t n, float shift);
// out[i] = gate[i] / (1 + exp_approx(-gate[i])) * up[i].
using SiluMulFn = void (*)(const float* gate, const float* up, float* out, int64_t n);

// exp_approx: Cephes' single-precision exp, the same operations on every path, so that every
// path gives the same bits (within 2 ulp of exp over the clamped range):
//   v = x clamped to [kExpLo, kExpHi] (NaN stays NaN), n = round_half_even(v * log2(e)),
//   r = fma(n, -kExpC1, v), r = fma(n, -kExpC2, r), p = kExpP[0]; p = fma(p, r, kExpP[k]) for k = 1..5,
//   y = fma(p, r * r, r) + 1, result = y * 2^n formed by adding n to y's exponent bits;
//   x > kExpHi gives +inf.
// The clamp keeps 2^n and the result normal; exp(-86) = 4e-38 stands in for anything smaller,
// which no caller can tell from 0 (it is only ever added to 1 or to a sum that holds a 1).
constexpr float kExpLo = -86.0f, kExpHi = 88.0f, kLog2e = 1.44269504088896341f;
constexpr float kExpC1 = 0.693359375f, kExpC2 = -2.12194440e-4f;
constexpr float kExpP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                            4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

// AMX: a tile product (tdpbsud) reads `amx_step_subchunks` sub-chunks of 4 columns at once: the
// largest count <= 16 that divides a full block's, so that no step straddles two blocks (16 for
// every group size that is a multiple of 64). Token-major activation rows are padded to whole steps.
inline int64_t amx_step_subchunks(const QuantLayout& L) {
  const int64_t per_block = L.block_chunks * L.chunk_cols / 4;
  int64_t k = 16;
  while (per_block % k != 0) --k;
  return k;
}
inline int64_t amx_row_bytes(const QuantLayout& L) {
  return round_up(round_up(L.padded_cols, 4 * amx_step_subchunks(L)), 64);
}

struct KernelTable {
  Isa isa;
  int64_t panel_tokens;  // activation panel width the qgemm kernel wants
  // Int8 only: the kernel computes sum (v - 128) q (AVX2 sign trick) instead of sum v q, so
  // corr = (128 - z) * sum(q) rather than -z * sum(q).
  bool q8_signed_dot;
  QuantizeTokenFn quantize_token;
  QGemmFn qgemm;
  FGemmFn fgemm;
  DotFn dot;
  AxpyFn axpy;
  ExpMinusFn exp_minus;
  SiluMulFn silu_mul;
  AxpyRowsFn axpy_rows = nullptr;  // optional: keeps y in registers across rows
  DotRowsFn dot_rows = nullptr;    // optional: one call (and overlapping reductions) per block
  // Optional: convert in registers instead of through memory.
  DotRowsF16Fn dot_rows_f16 = nullptr;
  AxpyRowsF16Fn axpy_rows_f16 = nullptr;
  DotRowsQ8Fn dot_rows_q8 = nullptr;
  AxpyRowsQ8Fn axpy_rows_q8 = nullptr;
  // Optional: several queries per load of a key or value row.
  DotRowsMultiFn dot_rows_multi = nullptr;
  AxpyRowsMultiFn axpy_rows_multi = nullptr;
  bool token_major_acts = false;  // qgemm wants ActLayout rows of amx_row_bytes
  // Quantized matmuls of fewer tokens than this run on `few_tokens` instead (measured: from 8
  // tokens on, the tile kernel, whose 16 token rows are then half empty, beats vpdpbusd).
  int64_t min_tokens = 0;
  const KernelTable* few_tokens = nullptr;
};

const KernelTable& scalar_kernels();
const KernelTable& avx2_kernels();
const KernelTable& avxvnni_kernels();
const KernelTable& avx512_kernels();
const KernelTable& amx_kernels();
const KernelTable& kernels_for(Isa isa);

// Fills the activation panels [p0, p1) of `out` (layout a) from x [n_tokens, cols].
void quantize_activations(const KernelTable& k, const QuantLayout& L, const ActLayout& a, const float* x,
                          int64_t p0, int64_t p1, std::byte* out);

// Block j of one token for activation quantization: its input columns and its (padded) codes.
struct ActBlock {
  const float* x;
  int64_t len;     // columns
  int8_t* q;
  int64_t padded;  // len rounded up to the chunk width; q[len, padded) must be zeroed
};
inline ActBlock act_block(const QuantLayout& L, const float* x, int8_t* q, int64_t j) {
  return {x + L.block_begin(j), L.block_len(j), q + L.block_chunk(j) * L.chunk_cols, L.block_n_chunks(j) * L.chunk_cols};
}

// Row reductions shared by the float kernels: 16 lanes summed pairwise (l += l + 8, then + 4,
// + 2, + 1), the order every path uses.
inline float reduce16(float* acc) {
  for (int w = 8; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

}  // namespace phinfer::kernels::detail
