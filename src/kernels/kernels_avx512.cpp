// AVX-512 kernels (F, BW, VL, DQ, VNNI; FMA, F16C). Compiled for that target function by
// function (#pragma GCC target below), so the rest of the binary still runs on any x86-64.
// All standard headers are included before the target region so that no inline library code is
// emitted with AVX-512 instructions; everything inside the region has internal linkage.
#if !defined(__clang__)
// GCC 12's AVX-512 headers trip -Wuninitialized on their own _mm512_undefined_*() helpers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/kernels_impl.h"

PHINFER_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")

namespace phinfer::kernels::detail {
namespace {

constexpr int kPanel = 24;  // tokens per activation panel (prefill micro-kernel width)
// Software prefetch distance (bytes ahead in a tile's weight stream). Without it a batched decode
// (8-16 tokens, weights from DRAM) stalls on every tile: measured 2x slower at 8 tokens; the hardware
// prefetcher alone does not run far enough ahead of a compute-heavy stream.
constexpr int kPrefetch = 2048;

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// ---- activation quantization ---------------------------------------------------------------

void quantize_token(const float* x, const QuantLayout& L, int8_t* q, float* dx, int32_t* sums) {
  for (int64_t j = 0; j < L.n_blocks; ++j) {
    const ActBlock b = act_block(L, x, q, j);
    const float* xb = b.x;
    const int64_t len = b.len, plen = b.padded;
    int8_t* qb = b.q;
    __m512 vmax = _mm512_setzero_ps();
    for (int64_t c = 0; c < len; c += 16)
      vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail_mask(len - c), xb + c)));
    const float amax = _mm512_reduce_max_ps(vmax);
    if (amax >= kMinBlockAmax) {
      const __m512 inv = _mm512_set1_ps(127.0f / amax);
      __m512i vs = _mm512_setzero_si512();
      for (int64_t c = 0; c < len; c += 16) {
        const __mmask16 m = tail_mask(len - c);
        const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, xb + c), inv));
        vs = _mm512_add_epi32(vs, v);
        _mm512_mask_cvtsepi32_storeu_epi8(qb + c, m, v);
      }
      sums[j] = _mm512_reduce_add_epi32(vs);
      dx[j] = amax / 127.0f;
    } else {
      std::memset(qb, 0, static_cast<size_t>(len));
      sums[j] = 0;
      dx[j] = 0.0f;
    }
    std::memset(qb + len, 0, static_cast<size_t>(plen - len));
  }
}

// ---- quantized matmul ------------------------------------------------------------------------

// acc += u8(w) . s8(broadcast 4 bytes at p), in place. Written as asm because GCC 12 copies the
// accumulators of the intrinsic around every loop iteration (and does not fold the broadcast).
inline void dpbusd(__m512i& acc, __m512i w, const int8_t* p) {
  __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(p)));
}

// One tile (16 rows) x T tokens of one activation panel (token i0 of a panel of np tokens; xq
// points at its first sub-chunk, xs = 4 np bytes between sub-chunks) over all blocks. S int32
// accumulators per token split the dependency chains when T is small (integer sums: any order is
// exact). Wide panels keep their fp32 sums in memory (FMEM) so that all 32 registers are left to
// the integer accumulators and weights.
template <bool Int4, bool ASYM, int T, int S>
void micro(const uint8_t* tile, const QuantLayout& L, const ActPanel& P, int64_t i0, float* y, int64_t ys,
           __mmask16 rmask) {
  constexpr bool FMEM = T > 12;
  const uint8_t* wq = tile;
  const uint16_t* sc = reinterpret_cast<const uint16_t*>(tile + L.quant_bytes);
  const uint16_t* mn = reinterpret_cast<const uint16_t*>(tile + L.quant_bytes + L.scale_bytes);
  const int64_t sc_step = L.n_scales > 1 ? kTileRows : 0;
  const int64_t np = P.np, xs = 4 * np;
  const int8_t* xlo = P.q + 4 * i0;
  const int8_t* xhi = xlo + xs;
  const float* pdx = P.dx + i0;
  const int32_t* pcorr = P.corr + i0;
  const float* pdxs = P.dxs + i0;
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  constexpr int U = Int4 ? (S >= 2 ? S / 2 : 1) : S;  // chunks per unrolled step
  const int64_t step_x = (Int4 ? 2 : 1) * xs;          // activation bytes per chunk
  __m512 facc[FMEM ? 1 : T];
  alignas(64) float fbuf[FMEM ? T : 1][16];
  if constexpr (FMEM) {
    std::memset(fbuf, 0, sizeof(fbuf));
  } else {
    PHINFER_UNROLL for (int i = 0; i < T; ++i) facc[i] = _mm512_setzero_ps();
  }
  const int64_t nb = L.n_blocks;
  for (int64_t j = 0; j < nb; ++j) {
    const int64_t nk = j + 1 < nb ? L.block_chunks : L.block_n_chunks(j);
    __m512i acc[T][S];
    PHINFER_UNROLL for (int i = 0; i < T; ++i) {
      acc[i][0] = _mm512_set1_epi32(pcorr[j * np + i]);
      PHINFER_UNROLL for (int s = 1; s < S; ++s) acc[i][s] = _mm512_setzero_si512();
    }
    // One chunk: weights at wp, activations at xl (low nibbles / Int8) and xh (high nibbles). A
    // macro rather than a lambda: GCC then keeps acc in registers.
#define PHINFER_STEP(wp, xl, xh, slot)                                                          \
  do {                                                                                         \
    _mm_prefetch(reinterpret_cast<const char*>(wp) + kPrefetch, _MM_HINT_T0);                  \
    const __m512i v_ = _mm512_loadu_si512(wp);                                                 \
    if constexpr (Int4) {                                                                        \
      const __m512i lo_ = _mm512_and_si512(v_, m4);                                            \
      const __m512i hi_ = _mm512_and_si512(_mm512_srli_epi16(v_, 4), m4);                      \
      constexpr int slo_ = S >= 2 ? (2 * (slot)) % S : 0, shi_ = S >= 2 ? (2 * (slot) + 1) % S : 0; \
      PHINFER_UNROLL for (int i = 0; i < T; ++i) dpbusd(acc[i][slo_], lo_, (xl) + i * 4);      \
      PHINFER_UNROLL for (int i = 0; i < T; ++i) dpbusd(acc[i][shi_], hi_, (xh) + i * 4);      \
    } else {                                                                                   \
      PHINFER_UNROLL for (int i = 0; i < T; ++i) dpbusd(acc[i][(slot) % S], v_, (xl) + i * 4); \
    }                                                                                          \
  } while (0)
    int64_t k = 0;
    if constexpr (U == 1) {
      for (; k < nk; ++k) {
        PHINFER_STEP(wq, xlo, xhi, 0);
        wq += 64;
        xlo += step_x;
        xhi += step_x;
      }
    } else {
      for (; k + U <= nk; k += U) {
        PHINFER_STEP(wq, xlo, xhi, 0);
        PHINFER_STEP(wq + 64, xlo + step_x, xhi + step_x, 1);
        if constexpr (U == 4) {
          PHINFER_STEP(wq + 128, xlo + 2 * step_x, xhi + 2 * step_x, 2);
          PHINFER_STEP(wq + 192, xlo + 3 * step_x, xhi + 3 * step_x, 3);
        }
        static_assert(U == 2 || U == 4);
        wq += 64 * U;
        xlo += U * step_x;
        xhi += U * step_x;
      }
      for (; k < nk; ++k) {
        PHINFER_STEP(wq, xlo, xhi, 0);
        wq += 64;
        xlo += step_x;
        xhi += step_x;
      }
    }
#undef PHINFER_STEP
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc)));
    sc += sc_step;
    __m512 m = _mm512_setzero_ps();
    if constexpr (ASYM) {
      m = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mn)));
      mn += sc_step;
    }
    PHINFER_UNROLL for (int i = 0; i < T; ++i) {
      __m512i I = acc[i][0];
      PHINFER_UNROLL for (int s = 1; s < S; ++s) I = _mm512_add_epi32(I, acc[i][s]);
      const __m512 ds = _mm512_mul_ps(d, _mm512_set1_ps(pdx[j * np + i]));
      __m512 f = FMEM ? _mm512_load_ps(fbuf[FMEM ? i : 0]) : facc[FMEM ? 0 : i];
      f = _mm512_fmadd_ps(ds, _mm512_cvtepi32_ps(I), f);
      if constexpr (ASYM) f = _mm512_fmadd_ps(m, _mm512_set1_ps(pdxs[j * np + i]), f);
      if constexpr (FMEM) {
        _mm512_store_ps(fbuf[FMEM ? i : 0], f);
      } else {
        facc[FMEM ? 0 : i] = f;
      }
    }
    if constexpr (FMEM) __asm__ volatile("" : : "r"(&fbuf[0][0]) : "memory");  // keep fbuf in memory
  }
  PHINFER_UNROLL for (int i = 0; i < T; ++i) {
    const __m512 f = FMEM ? _mm512_load_ps(fbuf[FMEM ? i : 0]) : facc[FMEM ? 0 : i];
    _mm512_mask_storeu_ps(y + i * ys, rmask, f);
  }
}

// Tokens [0, np) of a panel in micro-kernel widths 12, 8, 4, 2, 1 (12 tokens with their fp32 sums in
// registers measured faster than 24 with the sums in memory).
template <bool Int4, bool ASYM>
void micro_panel(const uint8_t* tile, const QuantLayout& L, const ActPanel& P, float* y, int64_t ys, __mmask16 rmask) {
  int64_t i = 0;
  for (; i + 12 <= P.np; i += 12) micro<Int4, ASYM, 12, 1>(tile, L, P, i, y + i * ys, ys, rmask);
  if (P.np - i >= 8) { micro<Int4, ASYM, 8, 1>(tile, L, P, i, y + i * ys, ys, rmask); i += 8; }
  if (P.np - i >= 4) { micro<Int4, ASYM, 4, 1>(tile, L, P, i, y + i * ys, ys, rmask); i += 4; }
  if (P.np - i >= 2) { micro<Int4, ASYM, 2, 2>(tile, L, P, i, y + i * ys, ys, rmask); i += 2; }
  if (P.np - i >= 1) micro<Int4, ASYM, 1, 4>(tile, L, P, i, y + i * ys, ys, rmask);
}

// Decode (one token): R tiles from R parts of a thread's range side by side, so that each thread
// keeps R weight streams in flight. Same numerics as micro<.., 1, ..>.
template <bool Int4, bool ASYM, int R>
void decode_multi(const uint8_t* const* tiles, const QuantLayout& L, const ActPanel& P, float* const* ys,
                  const __mmask16* masks) {
  const uint8_t* w[R];
  const uint16_t* sc[R];
  const uint16_t* mn[R];
  PHINFER_UNROLL for (int r = 0; r < R; ++r) {
    w[r] = tiles[r];
    sc[r] = reinterpret_cast<const uint16_t*>(tiles[r] + L.quant_bytes);
    mn[r] = reinterpret_cast<const uint16_t*>(tiles[r] + L.quant_bytes + L.scale_bytes);
  }
  const int64_t sc_step = L.n_scales > 1 ? kTileRows : 0;
  const int8_t* x = P.q;
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  __m512 f[R];
  PHINFER_UNROLL for (int r = 0; r < R; ++r) f[r] = _mm512_setzero_ps();
  const int64_t nb = L.n_blocks;
  for (int64_t j = 0; j < nb; ++j) {
    const int64_t nk = j + 1 < nb ? L.block_chunks : L.block_n_chunks(j);
    __m512i a0[R], a1[R];
    PHINFER_UNROLL for (int r = 0; r < R; ++r) {
      a0[r] = _mm512_set1_epi32(P.corr[j]);
      a1[r] = _mm512_setzero_si512();
    }
    for (int64_t k = 0; k < nk; ++k) {
      PHINFER_UNROLL for (int r = 0; r < R; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(w[r]) + kPrefetch, _MM_HINT_T0);
        const __m512i v = _mm512_loadu_si512(w[r]);
        if constexpr (Int4) {
          dpbusd(a0[r], _mm512_and_si512(v, m4), x);
          dpbusd(a1[r], _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), x + 4);
        } else {
          dpbusd(a0[r], v, x);
        }
        w[r] += 64;
      }
      x += Int4 ? 8 : 4;
    }
    const __m512 dx = _mm512_set1_ps(P.dx[j]);
    PHINFER_UNROLL for (int r = 0; r < R; ++r) {
      const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc[r]))), dx);
      f[r] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_add_epi32(a0[r], a1[r])), f[r]);
      if constexpr (ASYM) {
        const __m512 m = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mn[r])));
        f[r] = _mm512_fmadd_ps(m, _mm512_set1_ps(P.dxs[j]), f[r]);
        mn[r] += sc_step;
      }
      sc[r] += sc_step;
    }
  }
  PHINFER_UNROLL for (int r = 0; r < R; ++r) _mm512_mask_storeu_ps(ys[r], masks[r], f[r]);
}

// Decode over tiles [tile_begin, tile_end): kStreams sub-ranges walked side by side.
template <bool Int4, bool ASYM>
void decode(const QGemmArgs& a, int64_t tile_begin, int64_t tile_end) {
  constexpr int kStreams = 4;
  const QuantLayout& L = a.L;
  const ActPanel P = act_panel(a.A, a.acts, 0);
  const int64_t n = tile_end - tile_begin, per = n / kStreams;
  const uint8_t* tiles[kStreams];
  float* ys[kStreams];
  __mmask16 masks[kStreams];
  for (int64_t k = 0; k < per; ++k) {
    for (int s = 0; s < kStreams; ++s) {
      const int64_t t = tile_begin + s * per + k;
      tiles[s] = reinterpret_cast<const uint8_t*>(a.w) + t * L.tile_bytes;
      ys[s] = a.y + t * kTileRows;
      masks[s] = tail_mask(L.rows - t * kTileRows);
    }
    decode_multi<Int4, ASYM, kStreams>(tiles, L, P, ys, masks);
  }
  for (int64_t t = tile_begin + kStreams * per; t < tile_end; ++t)
    micro<Int4, ASYM, 1, 4>(reinterpret_cast<const uint8_t*>(a.w) + t * L.tile_bytes, L, P, 0, a.y + t * kTileRows,
                          a.y_stride, tail_mask(L.rows - t * kTileRows));
}

template <bool Int4, bool ASYM>
void qgemm_fmt(const QGemmArgs& a, int64_t tile_begin, int64_t tile_end) {
  const QuantLayout& L = a.L;
  const ActLayout& A = a.A;
  // Panels that share the L2 while a thread sweeps its tiles.
  if (A.n_tokens == 1) return decode<Int4, ASYM>(a, tile_begin, tile_end);
  const int64_t group = std::max<int64_t>(1, (512 << 10) / std::max<int64_t>(1, A.panel * L.padded_cols));
  for (int64_t pg = 0; pg < A.n_panels; pg += group) {
    const int64_t pe = std::min(A.n_panels, pg + group);
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const uint8_t* tp = reinterpret_cast<const uint8_t*>(a.w) + tile * L.tile_bytes;
      const __mmask16 rmask = tail_mask(L.rows - tile * kTileRows);
      for (int64_t p = pg; p < pe; ++p) {
        const ActPanel P = act_panel(A, a.acts, p);
        micro_panel<Int4, ASYM>(tp, L, P, a.y + p * A.panel * a.y_stride + tile * kTileRows, a.y_stride, rmask);
      }
    }
  }
}

void qgemm(const QGemmArgs& a, int64_t tile_begin, int64_t tile_end) {
  if (a.L.bits == 4)
    a.L.symmetric ? qgemm_fmt<true, false>(a, tile_begin, tile_end) : qgemm_fmt<true, true>(a, tile_begin, tile_end);
  else
    a.L.symmetric ? qgemm_fmt<false, false>(a, tile_begin, tile_end) : qgemm_fmt<false, true>(a, tile_begin, tile_end);
}

// ---- float formats -----------------------------------------------------------------------------

template <WeightFormat F>
inline __m512 load_w(const std::byte* base, int64_t idx, __mmask16 m) {
  if constexpr (F == WeightFormat::F32) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(base) + idx);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(base) + idx);
    if constexpr (F == WeightFormat::F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

inline float reduce16(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  return _mm_cvtss_f32(_mm_add_ss(c, _mm_shuffle_ps(c, c, 1)));
}

// ---- exp and SiLU (the operations of exp_approx in kernels_impl.h) ------------------------------

inline __m512 exp_approx(__m512 x) {
  __m512 v = _mm512_max_ps(_mm512_set1_ps(kExpLo), x);  // NaN in the second operand passes through
  v = _mm512_min_ps(_mm512_set1_ps(kExpHi), v);
  const __m512i n = _mm512_cvtps_epi32(_mm512_mul_ps(v, _mm512_set1_ps(kLog2e)));
  const __m512 nf = _mm512_cvtepi32_ps(n);
  __m512 r = _mm512_fmadd_ps(nf, _mm512_set1_ps(-kExpC1), v);
  r = _mm512_fmadd_ps(nf, _mm512_set1_ps(-kExpC2), r);
  __m512 p = _mm512_set1_ps(kExpP[0]);
  PHINFER_UNROLL for (int k = 1; k < 6; ++k) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP[k]));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  const __m512 e = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(y), _mm512_slli_epi32(n, 23)));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpHi), _CMP_GT_OQ), e,
                              _mm512_set1_ps(std::numeric_limits<float>::infinity()));
}

void exp_minus(float* x, int64_t n, float shift) {
  const __m512 s = _mm512_set1_ps(shift);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(x + i, m, exp_approx(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
  }
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f), sign = _mm512_set1_ps(-0.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 e = exp_approx(_mm512_xor_ps(g, sign));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(m, up + i)));
  }
}

float dot(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + c), _mm512_loadu_ps(b + c), acc);
  if (c < n) {
    const __mmask16 m = tail_mask(n - c);
    acc = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(m, a + c), _mm512_maskz_loadu_ps(m, b + c), acc, m);
  }
  return reduce16(acc);
}

void axpy(float a, const float* x, float* y, int64_t n) {
  const __m512 va = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

// Attention's inner loops, with the head dimension n <= 256 a compile-time count of 16-lane vectors
// (NV) so that the query and the accumulators stay in registers. Per row and per element they do the
// operations of dot and axpy, in the same order: the same bits. Src reads 16 values of a row as
// fp32: stored fp32, f16 (exact conversion) or q8 (scale * code, as the scalar conversion).
struct F32Src {
  const float* x;
  int64_t n;
  __m512 load(int64_t r, int v, __mmask16 m) const { return _mm512_maskz_loadu_ps(m, x + r * n + v * 16); }
};
struct F16Src {
  const uint16_t* x;
  int64_t n;
  __m512 load(int64_t r, int v, __mmask16 m) const {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + r * n + v * 16));
  }
};
struct Q8Src {
  const int8_t* x;
  const float* scales;
  int64_t n;
  __m512 load(int64_t r, int v, __mmask16 m) const {
    const __m512 codes = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, x + r * n + v * 16)));
    return _mm512_mul_ps(_mm512_set1_ps(scales[r]), codes);
  }
};

// Scores of a block of keys: four keys at a time, so that four fma chains and reductions overlap.
template <int NV, typename Src>
void dot_rows_nv(const float* q, const Src& k, int64_t rows, int64_t n, float* out) {
  const __mmask16 last = tail_mask(n - (NV - 1) * 16);
  __m512 qv[NV];
  PHINFER_UNROLL for (int v = 0; v < NV; ++v) qv[v] = _mm512_maskz_loadu_ps(v + 1 < NV ? __mmask16(0xFFFF) : last, q + v * 16);
  auto chunk = [&](__m512 acc, int64_t r, int v) {
    if (v + 1 < NV) return _mm512_fmadd_ps(qv[v], k.load(r, v, 0xFFFF), acc);
    return _mm512_mask3_fmadd_ps(qv[v], k.load(r, v, last), acc, last);
  };
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    PHINFER_UNROLL for (int v = 0; v < NV; ++v) {
      a0 = chunk(a0, r, v);
      a1 = chunk(a1, r + 1, v);
      a2 = chunk(a2, r + 2, v);
      a3 = chunk(a3, r + 3, v);
    }
    out[r] = reduce16(a0);
    out[r + 1] = reduce16(a1);
    out[r + 2] = reduce16(a2);
    out[r + 3] = reduce16(a3);
  }
  for (; r < rows; ++r) {
    __m512 a = _mm512_setzero_ps();
    PHINFER_UNROLL for (int v = 0; v < NV; ++v) a = chunk(a, r, v);
    out[r] = reduce16(a);
  }
}

// Weighted sum of value rows: y stays in registers over all rows.
template <int NV, typename Src>
void axpy_rows_nv(const float* p, const Src& x, int64_t rows, int64_t n, float* y) {
  const __mmask16 last = tail_mask(n - (NV - 1) * 16);
  __m512 acc[NV];
  PHINFER_UNROLL for (int v = 0; v < NV; ++v) acc[v] = _mm512_maskz_loadu_ps(v + 1 < NV ? __mmask16(0xFFFF) : last, y + v * 16);
  for (int64_t r = 0; r < rows; ++r) {
    const __m512 a = _mm512_set1_ps(p[r]);
    PHINFER_UNROLL for (int v = 0; v < NV; ++v)
      acc[v] = _mm512_fmadd_ps(a, x.load(r, v, v + 1 < NV ? __mmask16(0xFFFF) : last), acc[v]);
  }
  PHINFER_UNROLL for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(y + v * 16, v + 1 < NV ? __mmask16(0xFFFF) : last, acc[v]);
}

// fn(std::integral_constant<int, NV>) for NV = ceil(n / 16) when 1 <= n <= 256; false otherwise.
template <typename Fn>
bool with_nv(int64_t n, Fn&& fn) {
  switch ((n + 15) / 16) {
#define PHINFER_NV(c) \
  case c: fn(std::integral_constant<int, c>{}); return true;
    PHINFER_NV(1) PHINFER_NV(2) PHINFER_NV(3) PHINFER_NV(4) PHINFER_NV(5) PHINFER_NV(6) PHINFER_NV(7) PHINFER_NV(8)
    PHINFER_NV(9) PHINFER_NV(10) PHINFER_NV(11) PHINFER_NV(12) PHINFER_NV(13) PHINFER_NV(14) PHINFER_NV(15) PHINFER_NV(16)
#undef PHINFER_NV
    default: return false;
  }
}

// Rows wider than 256 values, one at a time through 16 values of fp32 scratch.
template <typename Src>
void dot_rows_wide(const float* q, const Src& k, int64_t rows, int64_t n, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    __m512 acc = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= n; c += 16)
      acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + c), k.load(r, static_cast<int>(c / 16), 0xFFFF), acc);
    if (c < n) {
      const __mmask16 m = tail_mask(n - c);
      acc = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(m, q + c), k.load(r, static_cast<int>(c / 16), m), acc, m);
    }
    out[r] = reduce16(acc);
  }
}
template <typename Src>
void axpy_rows_wide(const float* p, const Src& x, int64_t rows, int64_t n, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const __m512 a = _mm512_set1_ps(p[r]);
    for (int64_t c = 0; c < n; c += 16) {
      const __mmask16 m = tail_mask(n - c);
      _mm512_mask_storeu_ps(y + c, m, _mm512_fmadd_ps(a, x.load(r, static_cast<int>(c / 16), m), _mm512_maskz_loadu_ps(m, y + c)));
    }
  }
}

template <typename Src>
void dot_rows_src(const float* q, const Src& k, int64_t rows, int64_t n, float* out) {
  if (!with_nv(n, [&](auto nv) { dot_rows_nv<decltype(nv)::value>(q, k, rows, n, out); })) dot_rows_wide(q, k, rows, n, out);
}
template <typename Src>
void axpy_rows_src(const float* p, const Src& x, int64_t rows, int64_t n, float* y) {
  if (!with_nv(n, [&](auto nv) { axpy_rows_nv<decltype(nv)::value>(p, x, rows, n, y); })) axpy_rows_wide(p, x, rows, n, y);
}

// nq queries against one block of rows: each key (value) row is loaded into registers once and
// used by every query; per query, the operations and order of dot_rows_nv / axpy_rows_nv.
template <int NV, int NQ, typename Src>
void dot_rows_multi_nv(const float* const* q, const Src& k, int64_t rows, int64_t n, float* const* out) {
  const __mmask16 last = tail_mask(n - (NV - 1) * 16);
  for (int64_t r = 0; r < rows; ++r) {
    __m512 kv[NV];
    PHINFER_UNROLL for (int v = 0; v < NV; ++v) kv[v] = k.load(r, v, v + 1 < NV ? __mmask16(0xFFFF) : last);
    __m512 acc[NQ];
    PHINFER_UNROLL for (int i = 0; i < NQ; ++i) acc[i] = _mm512_setzero_ps();
    PHINFER_UNROLL for (int v = 0; v < NV; ++v) PHINFER_UNROLL for (int i = 0; i < NQ; ++i) {
      if (v + 1 < NV) acc[i] = _mm512_fmadd_ps(_mm512_loadu_ps(q[i] + v * 16), kv[v], acc[i]);
      else acc[i] = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(last, q[i] + v * 16), kv[v], acc[i], last);
    }
    PHINFER_UNROLL for (int i = 0; i < NQ; ++i) out[i][r] = reduce16(acc[i]);
  }
}

// Accumulators of NQ queries for VB vectors at a time stay in registers (NQ * VB + VB + 1 <= 32).
template <int NV, int NQ, typename Src>
void axpy_rows_multi_nv(const float* const* p, const Src& x, int64_t rows, int64_t n, float* const* y) {
  constexpr int VB = NV < 31 / (NQ + 1) ? NV : 31 / (NQ + 1);
  const __mmask16 last = tail_mask(n - (NV - 1) * 16);
  for (int v0 = 0; v0 < NV; v0 += VB) {
    auto mask = [&](int v) { return v + 1 < NV ? __mmask16(0xFFFF) : last; };
    __m512 acc[NQ][VB];
    PHINFER_UNROLL for (int i = 0; i < NQ; ++i) PHINFER_UNROLL for (int b = 0; b < VB; ++b)
      if (v0 + b < NV) acc[i][b] = _mm512_maskz_loadu_ps(mask(v0 + b), y[i] + (v0 + b) * 16);
    for (int64_t r = 0; r < rows; ++r) {
      __m512 xv[VB];
      PHINFER_UNROLL for (int b = 0; b < VB; ++b) if (v0 + b < NV) xv[b] = x.load(r, v0 + b, mask(v0 + b));
      PHINFER_UNROLL for (int i = 0; i < NQ; ++i) {
        const __m512 a = _mm512_set1_ps(p[i][r]);
        PHINFER_UNROLL for (int b = 0; b < VB; ++b) if (v0 + b < NV) acc[i][b] = _mm512_fmadd_ps(a, xv[b], acc[i][b]);
      }
    }
    PHINFER_UNROLL for (int i = 0; i < NQ; ++i) PHINFER_UNROLL for (int b = 0; b < VB; ++b)
      if (v0 + b < NV) _mm512_mask_storeu_ps(y[i] + (v0 + b) * 16, mask(v0 + b), acc[i][b]);
  }
}

// fn(std::integral_constant<int, NQ>) for 2 <= nq <= kMaxQueryRows.
template <typename Fn>
void with_nq(int nq, Fn&& fn) {
  static_assert(kMaxQueryRows == 4);
  switch (nq) {
    case 2: return fn(std::integral_constant<int, 2>{});
    case 3: return fn(std::integral_constant<int, 3>{});
    default: return fn(std::integral_constant<int, 4>{});
  }
}

template <typename Fn>
void with_rows(const StoredRows& s, int64_t n, Fn&& fn) {
  switch (s.storage) {
    case RowStorage::F32: return fn(F32Src{static_cast<const float*>(s.x), n});
    case RowStorage::F16: return fn(F16Src{static_cast<const uint16_t*>(s.x), n});
    case RowStorage::Q8: return fn(Q8Src{static_cast<const int8_t*>(s.x), s.scales, n});
  }
}

void dot_rows_multi(const float* const* q, int nq, const StoredRows& k, int64_t rows, int64_t n, float* const* out) {
  with_rows(k, n, [&](const auto& src) {
    if (nq == 1) return dot_rows_src(q[0], src, rows, n, out[0]);
    const bool fits = with_nv(n, [&](auto nv) {
      with_nq(nq, [&](auto nqc) { dot_rows_multi_nv<decltype(nv)::value, decltype(nqc)::value>(q, src, rows, n, out); });
    });
    if (!fits)
      for (int i = 0; i < nq; ++i) dot_rows_wide(q[i], src, rows, n, out[i]);
  });
}

void axpy_rows_multi(const float* const* p, int nq, const StoredRows& x, int64_t rows, int64_t n, float* const* y) {
  with_rows(x, n, [&](const auto& src) {
    if (nq == 1) return axpy_rows_src(p[0], src, rows, n, y[0]);
    const bool fits = with_nv(n, [&](auto nv) {
      with_nq(nq, [&](auto nqc) { axpy_rows_multi_nv<decltype(nv)::value, decltype(nqc)::value>(p, src, rows, n, y); });
    });
    if (!fits)
      for (int i = 0; i < nq; ++i) axpy_rows_wide(p[i], src, rows, n, y[i]);
  });
}

void dot_rows(const float* q, const float* k, int64_t rows, int64_t n, float* out) { dot_rows_src(q, F32Src{k, n}, rows, n, out); }
void axpy_rows(const float* p, const float* x, int64_t rows, int64_t n, float* y) { axpy_rows_src(p, F32Src{x, n}, rows, n, y); }
void dot_rows_f16(const float* q, const uint16_t* k, int64_t rows, int64_t n, float* out) {
  dot_rows_src(q, F16Src{k, n}, rows, n, out);
}
void axpy_rows_f16(const float* p, const uint16_t* x, int64_t rows, int64_t n, float* y) {
  axpy_rows_src(p, F16Src{x, n}, rows, n, y);
}
void dot_rows_q8(const float* q, const int8_t* k, const float* scales, int64_t rows, int64_t n, float* out) {
  dot_rows_src(q, Q8Src{k, scales, n}, rows, n, out);
}
void axpy_rows_q8(const float* p, const int8_t* x, const float* scales, int64_t rows, int64_t n, float* y) {
  axpy_rows_src(p, Q8Src{x, scales, n}, rows, n, y);
}

// R rows straight from the weights, one token at a time (decode).
template <WeightFormat F, int R>
void rows_direct(const WeightMatrix& w, int64_t r0, const float* x, int64_t n_tokens, float* y, int64_t ys) {
  const size_t esz = F == WeightFormat::F32 ? 4 : 2;
  const int64_t cols = w.cols;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * cols;
    __m512 acc[R];
    PHINFER_UNROLL for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    const std::byte* base = w.data + static_cast<size_t>(r0 * cols) * esz;
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
      const __m512 xv = _mm512_loadu_ps(xt + c);
      PHINFER_UNROLL for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(load_w<F>(base, r * cols + c, 0xFFFF), xv, acc[r]);
    }
    if (c < cols) {
      const __mmask16 m = tail_mask(cols - c);
      const __m512 xv = _mm512_maskz_loadu_ps(m, xt + c);
      PHINFER_UNROLL for (int r = 0; r < R; ++r) acc[r] = _mm512_mask3_fmadd_ps(load_w<F>(base, r * cols + c, m), xv, acc[r], m);
    }
    PHINFER_UNROLL for (int r = 0; r < R; ++r) y[t * ys + r0 + r] = reduce16(acc[r]);
  }
}

// R rows (fp32, row stride ld) x TT tokens, register-blocked (prefill).
template <int R, int TT>
void rows_tokens(const float* wr, int64_t ld, const float* x, int64_t cols, float* y, int64_t ys) {
  __m512 acc[R][TT];
  PHINFER_UNROLL for (int r = 0; r < R; ++r)
    PHINFER_UNROLL for (int t = 0; t < TT; ++t) acc[r][t] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    __m512 xv[TT];
    PHINFER_UNROLL for (int t = 0; t < TT; ++t) xv[t] = _mm512_loadu_ps(x + t * cols + c);
    PHINFER_UNROLL for (int r = 0; r < R; ++r) {
      const __m512 wv = _mm512_loadu_ps(wr + r * ld + c);
      PHINFER_UNROLL for (int t = 0; t < TT; ++t) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  if (c < cols) {
    const __mmask16 m = tail_mask(cols - c);
    __m512 xv[TT];
    PHINFER_UNROLL for (int t = 0; t < TT; ++t) xv[t] = _mm512_maskz_loadu_ps(m, x + t * cols + c);
    PHINFER_UNROLL for (int r = 0; r < R; ++r) {
      const __m512 wv = _mm512_maskz_loadu_ps(m, wr + r * ld + c);
      PHINFER_UNROLL for (int t = 0; t < TT; ++t) acc[r][t] = _mm512_mask3_fmadd_ps(wv, xv[t], acc[r][t], m);
    }
  }
  PHINFER_UNROLL for (int r = 0; r < R; ++r)
    PHINFER_UNROLL for (int t = 0; t < TT; ++t) y[t * ys + r] = reduce16(acc[r][t]);
}

template <int R>
void rows_tokens_any(const float* wr, int64_t ld, const float* x, int64_t cols, int64_t nt, float* y, int64_t ys) {
  int64_t t = 0;
  for (; t + 4 <= nt; t += 4) rows_tokens<R, 4>(wr, ld, x + t * cols, cols, y + t * ys, ys);
  switch (nt - t) {
    case 3: rows_tokens<R, 3>(wr, ld, x + t * cols, cols, y + t * ys, ys); break;
    case 2: rows_tokens<R, 2>(wr, ld, x + t * cols, cols, y + t * ys, ys); break;
    case 1: rows_tokens<R, 1>(wr, ld, x + t * cols, cols, y + t * ys, ys); break;
    default: break;
  }
}

template <WeightFormat F>
void fgemm_fmt(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t ys, int64_t row_begin,
               int64_t row_end) {
  const int64_t cols = w.cols;
  if (n_tokens < 4) {
    int64_t r = row_begin;
    for (; r + 4 <= row_end; r += 4) rows_direct<F, 4>(w, r, x, n_tokens, y, ys);
    for (; r < row_end; ++r) rows_direct<F, 1>(w, r, x, n_tokens, y, ys);
    return;
  }
  constexpr int64_t kRowBlock = 16;
  const int64_t token_block = std::max<int64_t>(4, ((256 << 10) / (cols * 4)) / 4 * 4);
  thread_local std::vector<float> buf;
  if (F != WeightFormat::F32) buf.resize(static_cast<size_t>(kRowBlock * cols));
  for (int64_t t0 = 0; t0 < n_tokens; t0 += token_block) {
    const int64_t nt = std::min(token_block, n_tokens - t0);
    for (int64_t rb = row_begin; rb < row_end; rb += kRowBlock) {
      const int64_t nr = std::min(kRowBlock, row_end - rb);
      const float* wr;
      if constexpr (F == WeightFormat::F32) {
        wr = reinterpret_cast<const float*>(w.data) + rb * cols;
      } else {
        for (int64_t r = 0; r < nr; ++r)
          for (int64_t c = 0; c < cols; c += 16) {
            const __mmask16 m = tail_mask(cols - c);
            _mm512_mask_storeu_ps(buf.data() + r * cols + c, m, load_w<F>(w.data, (rb + r) * cols + c, m));
          }
        wr = buf.data();
      }
      const float* xt = x + t0 * cols;
      float* yt = y + t0 * ys + rb;
      int64_t r = 0;
      for (; r + 4 <= nr; r += 4) rows_tokens_any<4>(wr + r * cols, cols, xt, cols, nt, yt + r, ys);
      for (; r < nr; ++r) rows_tokens_any<1>(wr + r * cols, cols, xt, cols, nt, yt + r, ys);
    }
  }
}

void fgemm(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t ys, int64_t row_begin,
           int64_t row_end) {
  switch (w.format) {
    case WeightFormat::F32: fgemm_fmt<WeightFormat::F32>(w, x, n_tokens, y, ys, row_begin, row_end); break;
    case WeightFormat::F16: fgemm_fmt<WeightFormat::F16>(w, x, n_tokens, y, ys, row_begin, row_end); break;
    case WeightFormat::BF16: fgemm_fmt<WeightFormat::BF16>(w, x, n_tokens, y, ys, row_begin, row_end); break;
    default: break;
  }
}

}  // namespace
}  // namespace phinfer::kernels::detail

PHINFER_TARGET_END

namespace phinfer::kernels::detail {

const KernelTable& avx512_kernels() {
  static const KernelTable t{Isa::Avx512, kPanel, false, quantize_token, qgemm,     fgemm,        dot,
                             axpy,          exp_minus, silu_mul,     axpy_rows, dot_rows,
                             dot_rows_f16,  axpy_rows_f16, dot_rows_q8, axpy_rows_q8, dot_rows_multi, axpy_rows_multi};
  return t;
}

}  // namespace phinfer::kernels::detail
