#include "kernels/matrix.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/isa.h"
#include "kernels/kernels_impl.h"
#include "format/dtype.h"
#include "kernels/quant.h"
#include "phinfer/error.h"

namespace phinfer::kernels {
int64_t first_non_finite(const float* x, int64_t n) {
  const auto* bits = reinterpret_cast<const uint32_t*>(x);
  uint32_t any = 0;
  for (int64_t i = 0; i < n; ++i) any |= static_cast<uint32_t>((bits[i] & 0x7f800000u) == 0x7f800000u);
  if (!any) return -1;
  for (int64_t i = 0; i < n; ++i)
    if ((bits[i] & 0x7f800000u) == 0x7f800000u) return i;
  return -1;
}

namespace detail {

const KernelTable& kernels_for(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return scalar_kernels();
    case Isa::Avx2: return avx2_kernels();
    case Isa::AvxVnni: return avxvnni_kernels();
    case Isa::Avx512: return avx512_kernels();
    case Isa::Amx: return amx_kernels();
  }
  return scalar_kernels();
}

void quantize_activations(const KernelTable& k, const QuantLayout& L, const ActLayout& a, const float* x, int64_t p0,
                          int64_t p1, std::byte* out) {
  const int32_t mult = (L.bits == 8 && k.q8_signed_dot) ? 128 - L.zero_point : -L.zero_point;
  // Per-thread scratch, grown once: steady-state decode allocates nothing.
  thread_local std::vector<int8_t> tmp;
  thread_local std::vector<float> dx;
  thread_local std::vector<int32_t> sums;
  if (dx.size() < static_cast<size_t>(L.n_blocks)) {
    dx.resize(static_cast<size_t>(L.n_blocks));
    sums.resize(static_cast<size_t>(L.n_blocks));
  }
  for (int64_t p = p0; p < p1; ++p) {
    std::byte* base = out + p * a.panel_stride;
    const int64_t np = a.panel_tokens(p);
    int8_t* q = reinterpret_cast<int8_t*>(base);
    float* pdx = reinterpret_cast<float*>(base + a.q_bytes);
    int32_t* pcorr = reinterpret_cast<int32_t*>(base + a.q_bytes + a.info_bytes);
    float* pdxs = reinterpret_cast<float*>(base + a.q_bytes + 2 * a.info_bytes);
    const bool interleave = np > 1 && a.row_bytes == 0;
    if (interleave && tmp.size() < static_cast<size_t>(L.padded_cols)) tmp.resize(static_cast<size_t>(L.padded_cols));
    // The tile rows of a panel's last 16-token group past np are read (and their sums dropped).
    if (a.row_bytes > 0)
      std::memset(q + np * a.row_bytes, 0, static_cast<size_t>((round_up(np, 16) - np) * a.row_bytes));
    for (int64_t i = 0; i < np; ++i) {
      const float* xt = x + (p * a.panel + i) * L.cols;
      int8_t* qt = a.row_bytes > 0 ? q + i * a.row_bytes : interleave ? tmp.data() : q;
      if (a.row_bytes > 0) std::memset(qt + L.padded_cols, 0, static_cast<size_t>(a.row_bytes - L.padded_cols));
      if (first_non_finite(xt, L.cols) >= 0) {
        // NaN or infinity has no int8 code: the token's outputs become NaN (so the forward pass
        // reports it) instead of undefined integer conversions in the kernels.
        std::memset(qt, 0, static_cast<size_t>(L.padded_cols));
        std::fill_n(dx.begin(), L.n_blocks, std::numeric_limits<float>::quiet_NaN());
        std::fill_n(sums.begin(), L.n_blocks, 0);
      } else {
        k.quantize_token(xt, L, qt, dx.data(), sums.data());
      }
      if (interleave) {
        const int64_t n_sub = L.padded_cols / 4;
        for (int64_t s = 0; s < n_sub; ++s) std::memcpy(q + (s * np + i) * 4, qt + s * 4, 4);
      }
      for (int64_t j = 0; j < L.n_blocks; ++j) {
        const size_t js = static_cast<size_t>(j);
        pdx[j * np + i] = dx[js];
        pcorr[j * np + i] = mult * sums[js];
        pdxs[j * np + i] = dx[js] * static_cast<float>(sums[js]);
      }
    }
  }
}

}  // namespace detail

namespace {

constexpr int64_t kFloatRowBlock = 16;

// Scratch for quantized activations, owned by the calling thread and reused across calls.
std::byte* act_scratch(size_t n) {
  thread_local AlignedBytes buf;
  if (buf.size() < n) buf = AlignedBytes(std::max(n, buf.size() * 3 / 2));
  return buf.data();
}

}  // namespace

namespace {
constexpr FormatInfo kFormats[] = {
    {WeightFormat::F32, "fp32", 32, false, "f32"},  {WeightFormat::F16, "fp16", 16, false, "f16"},
    {WeightFormat::BF16, "bf16", 16, false, "bf16"}, {WeightFormat::Int8, "int8", 8, true, "q8"},
    {WeightFormat::Int4, "int4", 4, true, "q4"},
};
}  // namespace

std::span<const FormatInfo> weight_formats() { return kFormats; }

const FormatInfo& format_info(WeightFormat f) {
  for (const FormatInfo& i : kFormats)
    if (i.format == f) return i;
  throw Error("internal: weight format without a registry entry");
}

const FormatInfo* find_format_by_name(std::string_view name) {
  for (const FormatInfo& i : kFormats)
    if (name == i.name || name == i.legacy_tag) return &i;
  return nullptr;
}

std::string format_names() {
  std::string out;
  for (const FormatInfo& i : kFormats) out += (out.empty() ? "" : ", ") + std::string(i.name);
  return out;
}

size_t WeightMatrix::bytes() const {
  if (is_quantized(format)) return quantized_size(format, rows, cols, group_size, symmetric);
  size_t elem = format == WeightFormat::F32 ? 4 : 2;
  return static_cast<size_t>(rows) * static_cast<size_t>(cols) * elem;
}

void WeightMatrix::row_span_to_f32(int64_t r, int64_t c0, int64_t n, float* out) const {
  const size_t idx = static_cast<size_t>(r) * static_cast<size_t>(cols) + static_cast<size_t>(c0);
  switch (format) {
    case WeightFormat::F32:
      std::memcpy(out, reinterpret_cast<const float*>(data) + idx, static_cast<size_t>(n) * 4);
      break;
    case WeightFormat::BF16: {
      const uint16_t* src = reinterpret_cast<const uint16_t*>(data) + idx;
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(src[i]);
      break;
    }
    case WeightFormat::F16: {
      const uint16_t* src = reinterpret_cast<const uint16_t*>(data) + idx;
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(src[i]);
      break;
    }
    case WeightFormat::Int8:
    case WeightFormat::Int4:
      dequantize_row(*this, r, c0, n, out);
      break;
  }
}

void WeightMatrix::row_to_f32(int64_t r, float* out) const { row_span_to_f32(r, 0, cols, out); }

float dot(const float* a, const float* b, int64_t n) { return detail::kernels_for(active_isa()).dot(a, b, n); }

void axpy(float a, const float* x, float* y, int64_t n) { detail::kernels_for(active_isa()).axpy(a, x, y, n); }

void dot_rows(const float* q, const float* k, int64_t rows, int64_t n, float* out) {
  const auto& t = detail::kernels_for(active_isa());
  if (t.dot_rows) return t.dot_rows(q, k, rows, n, out);
  for (int64_t r = 0; r < rows; ++r) out[r] = t.dot(q, k + r * n, n);
}

namespace {
// Rows converted to fp32, for the paths that do not convert in registers: per-thread scratch that
// grows once to its bound.
float* converted_rows(int64_t rows, int64_t n) {
  if (rows > kMaxConvertedRows) throw Error("internal: more than " + std::to_string(kMaxConvertedRows) + " rows to convert");
  thread_local std::vector<float> scratch;
  if (scratch.size() < static_cast<size_t>(rows * n)) scratch.resize(static_cast<size_t>(kMaxConvertedRows * n));
  return scratch.data();
}
float* f16_rows(const uint16_t* x, int64_t rows, int64_t n) {
  float* out = converted_rows(rows, n);
  for (int64_t i = 0; i < rows * n; ++i) out[i] = f16_to_f32(x[i]);
  return out;
}
float* q8_rows(const int8_t* x, const float* scales, int64_t rows, int64_t n) {
  float* out = converted_rows(rows, n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) out[r * n + i] = scales[r] * static_cast<float>(x[r * n + i]);
  return out;
}
}  // namespace

void dot_rows(const float* q, const uint16_t* k, int64_t rows, int64_t n, float* out) {
  if (rows <= 0) return;
  const auto& t = detail::kernels_for(active_isa());
  if (t.dot_rows_f16) return t.dot_rows_f16(q, k, rows, n, out);
  dot_rows(q, f16_rows(k, rows, n), rows, n, out);
}

void axpy_rows(const float* p, const uint16_t* v, int64_t rows, int64_t n, float* y) {
  if (rows <= 0) return;
  const auto& t = detail::kernels_for(active_isa());
  if (t.axpy_rows_f16) return t.axpy_rows_f16(p, v, rows, n, y);
  axpy_rows(p, f16_rows(v, rows, n), rows, n, y);
}

void dot_rows(const float* q, const int8_t* k, const float* scales, int64_t rows, int64_t n, float* out) {
  if (rows <= 0) return;
  const auto& t = detail::kernels_for(active_isa());
  if (t.dot_rows_q8) return t.dot_rows_q8(q, k, scales, rows, n, out);
  dot_rows(q, q8_rows(k, scales, rows, n), rows, n, out);
}

void axpy_rows(const float* p, const int8_t* v, const float* scales, int64_t rows, int64_t n, float* y) {
  if (rows <= 0) return;
  const auto& t = detail::kernels_for(active_isa());
  if (t.axpy_rows_q8) return t.axpy_rows_q8(p, v, scales, rows, n, y);
  axpy_rows(p, q8_rows(v, scales, rows, n), rows, n, y);
}

namespace {
// The path's multi-query kernel, or one call per query (the same bits by definition).
template <typename Single>
void dot_rows_each(const float* const* q, int nq, const detail::StoredRows& k, int64_t rows, int64_t n,
                   float* const* out, Single&& single) {
  if (rows <= 0 || nq <= 0) return;
  if (nq > kMaxQueryRows) throw Error("internal: more than " + std::to_string(kMaxQueryRows) + " queries per call");
  const auto& t = detail::kernels_for(active_isa());
  if (t.dot_rows_multi) return t.dot_rows_multi(q, nq, k, rows, n, out);
  for (int i = 0; i < nq; ++i) single(q[i], out[i]);
}
template <typename Single>
void axpy_rows_each(const float* const* p, int nq, const detail::StoredRows& x, int64_t rows, int64_t n,
                    float* const* y, Single&& single) {
  if (rows <= 0 || nq <= 0) return;
  if (nq > kMaxQueryRows) throw Error("internal: more than " + std::to_string(kMaxQueryRows) + " queries per call");
  const auto& t = detail::kernels_for(active_isa());
  if (t.axpy_rows_multi) return t.axpy_rows_multi(p, nq, x, rows, n, y);
  for (int i = 0; i < nq; ++i) single(p[i], y[i]);
}
}  // namespace

void dot_rows(const float* const* q, int nq, const float* k, int64_t rows, int64_t n, float* const* out) {
  dot_rows_each(q, nq, {detail::RowStorage::F32, k, nullptr}, rows, n, out,
                [&](const float* qi, float* oi) { dot_rows(qi, k, rows, n, oi); });
}
void axpy_rows(const float* const* p, int nq, const float* v, int64_t rows, int64_t n, float* const* y) {
  axpy_rows_each(p, nq, {detail::RowStorage::F32, v, nullptr}, rows, n, y,
                 [&](const float* pi, float* yi) { axpy_rows(pi, v, rows, n, yi); });
}
void dot_rows(const float* const* q, int nq, const uint16_t* k, int64_t rows, int64_t n, float* const* out) {
  dot_rows_each(q, nq, {detail::RowStorage::F16, k, nullptr}, rows, n, out,
                [&](const float* qi, float* oi) { dot_rows(qi, k, rows, n, oi); });
}
void axpy_rows(const float* const* p, int nq, const uint16_t* v, int64_t rows, int64_t n, float* const* y) {
  axpy_rows_each(p, nq, {detail::RowStorage::F16, v, nullptr}, rows, n, y,
                 [&](const float* pi, float* yi) { axpy_rows(pi, v, rows, n, yi); });
}
void dot_rows(const float* const* q, int nq, const int8_t* k, const float* scales, int64_t rows, int64_t n,
              float* const* out) {
  dot_rows_each(q, nq, {detail::RowStorage::Q8, k, scales}, rows, n, out,
                [&](const float* qi, float* oi) { dot_rows(qi, k, scales, rows, n, oi); });
}
void axpy_rows(const float* const* p, int nq, const int8_t* v, const float* scales, int64_t rows, int64_t n,
               float* const* y) {
  axpy_rows_each(p, nq, {detail::RowStorage::Q8, v, scales}, rows, n, y,
                 [&](const float* pi, float* yi) { axpy_rows(pi, v, scales, rows, n, yi); });
}

void exp_minus(float* x, int64_t n, float shift) {
  if (n > 0) detail::kernels_for(active_isa()).exp_minus(x, n, shift);
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  if (n > 0) detail::kernels_for(active_isa()).silu_mul(gate, up, out, n);
}

void axpy_rows(const float* p, const float* v, int64_t rows, int64_t n, float* y) {
  const auto& t = detail::kernels_for(active_isa());
  if (t.axpy_rows) return t.axpy_rows(p, v, rows, n, y);
  for (int64_t r = 0; r < rows; ++r) t.axpy(p[r], v + r * n, y, n);
}

void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, ThreadPool& pool) {
  if (n_tokens <= 0 || w.rows <= 0) return;
  const detail::KernelTable& isa_kernels = detail::kernels_for(active_isa());
  const detail::KernelTable& k =
      isa_kernels.few_tokens != nullptr && n_tokens < isa_kernels.min_tokens ? *isa_kernels.few_tokens : isa_kernels;
  if (!is_quantized(w.format)) {
    const int64_t n_blocks = (w.rows + kFloatRowBlock - 1) / kFloatRowBlock;
    pool.parallel_for(n_blocks, [&](int64_t b0, int64_t b1) {
      k.fgemm(w, x, n_tokens, y, y_stride, b0 * kFloatRowBlock, std::min(w.rows, b1 * kFloatRowBlock));
    });
    return;
  }
  detail::QGemmArgs args;
  args.L = QuantLayout::of(w);
  args.w = w.data;
  args.A = detail::ActLayout::of(args.L, n_tokens, k.panel_tokens,
                                 k.token_major_acts ? detail::amx_row_bytes(args.L) : 0);
  std::byte* acts = act_scratch(args.A.total_bytes);
  args.acts = acts;
  args.y = y;
  args.y_stride = y_stride;
  if (args.A.n_panels == 1) {
    detail::quantize_activations(k, args.L, args.A, x, 0, 1, acts);
  } else {
    pool.parallel_for(args.A.n_panels, [&](int64_t p0, int64_t p1) {
      detail::quantize_activations(k, args.L, args.A, x, p0, p1, acts);
    });
  }
  pool.parallel_for(args.L.n_tiles, [&](int64_t t0, int64_t t1) { k.qgemm(args, t0, t1); });
}

}  // namespace phinfer::kernels
