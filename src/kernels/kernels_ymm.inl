// 256-bit kernels shared by the AVX2 and AVX-VNNI paths (16 ymm registers). Included by
// kernels_avx2.cpp and kernels_avxvnni.cpp inside their target regions with PHINFER_YMM_VNNI set
// to 0 or 1; everything here has internal linkage.
//
// Quantized tiles are processed as two halves of 8 rows (bytes 0-31 / 32-63 of every chunk).
// AVX2 has no u8 x s8 -> s32 instruction: vpmaddubsw + vpmaddwd stand in for vpdpbusd. u4 x s8
// pairs cannot saturate int16; for Int8 the code v is turned into the signed v - 128 and multiplied
// with vpsignb/vpabsb (pairs stay within +-32512), and the activation side corrects the sum
// (KernelTable::q8_signed_dot).

namespace phinfer::kernels::detail {
namespace {

constexpr int kPanel = 4;

inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

inline __m256i lane_mask(int64_t n) {  // lanes [0, n) all ones
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(n, 8))),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <bool Int4>
inline __m256i dot4(__m256i acc, __m256i w, __m256i x) {
#if PHINFER_YMM_VNNI
  // In place, as asm: GCC 12 copies the accumulators of the intrinsic around every loop iteration.
  __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(w), "x"(x));
  return acc;
#else
  if constexpr (Int4) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)));
  } else {
    const __m256i ws = _mm256_xor_si256(w, _mm256_set1_epi8(static_cast<char>(0x80)));
    const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(ws), _mm256_sign_epi8(x, ws));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
  }
#endif
}

// ---- activation quantization ---------------------------------------------------------------

void quantize_token(const float* x, const QuantLayout& L, int8_t* q, float* dx, int32_t* sums) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t j = 0; j < L.n_blocks; ++j) {
    const ActBlock b = act_block(L, x, q, j);
    const float* xb = b.x;
    const int64_t len = b.len, plen = b.padded;
    int8_t* qb = b.q;
    __m256 vmax = _mm256_setzero_ps();
    for (int64_t c = 0; c < len; c += 8)
      vmax = _mm256_max_ps(vmax, _mm256_and_ps(absmask, _mm256_maskload_ps(xb + c, lane_mask(len - c))));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    const float amax = _mm_cvtss_f32(m4);
    if (amax >= kMinBlockAmax) {
      const __m256 inv = _mm256_set1_ps(127.0f / amax);
      __m256i vs = _mm256_setzero_si256();
      for (int64_t c = 0; c < len; c += 8) {
        const __m256i msk = lane_mask(len - c);
        const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_maskload_ps(xb + c, msk), inv));
        vs = _mm256_add_epi32(vs, v);
        const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        const __m128i p8 = _mm_packs_epi16(p16, p16);
        if (len - c >= 8) {
          _mm_storel_epi64(reinterpret_cast<__m128i*>(qb + c), p8);
        } else {
          int8_t tmp[16];
          _mm_storeu_si128(reinterpret_cast<__m128i*>(tmp), p8);
          std::memcpy(qb + c, tmp, static_cast<size_t>(len - c));
        }
      }
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(vs), _mm256_extracti128_si256(vs, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
      sums[j] = _mm_cvtsi128_si32(s4);
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

// H halves (from half h0) of one tile x one panel of T tokens over all blocks.
template <bool Int4, bool ASYM, int H, int T, int S>
void micro(const uint8_t* tile, int h0, const QuantLayout& L, const ActPanel& P, float* y, int64_t ys,
           int64_t valid_rows) {
  const uint8_t* wq = tile + 32 * h0;
  const uint16_t* sc = reinterpret_cast<const uint16_t*>(tile + L.quant_bytes) + 8 * h0;
  const uint16_t* mn = reinterpret_cast<const uint16_t*>(tile + L.quant_bytes + L.scale_bytes) + 8 * h0;
  const int64_t sc_step = L.n_scales > 1 ? kTileRows : 0;
  const int8_t* xq = P.q;
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  constexpr int U = Int4 ? (S >= 2 ? S / 2 : 1) : S;
  constexpr int SUB = Int4 ? 2 : 1;
  __m256 facc[H][T];
  PHINFER_UNROLL for (int h = 0; h < H; ++h)
    PHINFER_UNROLL for (int i = 0; i < T; ++i) facc[h][i] = _mm256_setzero_ps();
  const int64_t nb = L.n_blocks;
  for (int64_t j = 0; j < nb; ++j) {
    const int64_t nk = j + 1 < nb ? L.block_chunks : L.block_n_chunks(j);
    __m256i acc[H][T][S];
    PHINFER_UNROLL for (int h = 0; h < H; ++h)
      PHINFER_UNROLL for (int i = 0; i < T; ++i) {
        acc[h][i][0] = _mm256_set1_epi32(P.corr[j * T + i]);
        PHINFER_UNROLL for (int s = 1; s < S; ++s) acc[h][i][s] = _mm256_setzero_si256();
      }
    auto step = [&](const uint8_t* wp, const int8_t* xp, int slot) {
      _mm_prefetch(reinterpret_cast<const char*>(wp) + 2048, _MM_HINT_T0);  // all widths: see kernels_avx512.cpp
      PHINFER_UNROLL for (int h = 0; h < H; ++h) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + 32 * h));
        if constexpr (Int4) {
          const __m256i lo = _mm256_and_si256(v, m4);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
          const int slo = S >= 2 ? 2 * slot : 0, shi = S >= 2 ? 2 * slot + 1 : 0;
          PHINFER_UNROLL for (int i = 0; i < T; ++i) acc[h][i][slo] = dot4<true>(acc[h][i][slo], lo, bcast4(xp + i * 4));
          PHINFER_UNROLL for (int i = 0; i < T; ++i) acc[h][i][shi] = dot4<true>(acc[h][i][shi], hi, bcast4(xp + (T + i) * 4));
        } else {
          PHINFER_UNROLL for (int i = 0; i < T; ++i) acc[h][i][slot] = dot4<false>(acc[h][i][slot], v, bcast4(xp + i * 4));
        }
      }
    };
    int64_t k = 0;
    for (; k + U <= nk; k += U) {
      PHINFER_UNROLL for (int u = 0; u < U; ++u) step(wq + 64 * u, xq + u * SUB * T * 4, u);
      wq += 64 * U;
      xq += U * SUB * T * 4;
    }
    for (; k < nk; ++k) {
      step(wq, xq, 0);
      wq += 64;
      xq += SUB * T * 4;
    }
    PHINFER_UNROLL for (int h = 0; h < H; ++h) {
      const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc + 8 * h)));
      __m256 m = _mm256_setzero_ps();
      if constexpr (ASYM) m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mn + 8 * h)));
      PHINFER_UNROLL for (int i = 0; i < T; ++i) {
        __m256i I = acc[h][i][0];
        PHINFER_UNROLL for (int s = 1; s < S; ++s) I = _mm256_add_epi32(I, acc[h][i][s]);
        const __m256 ds = _mm256_mul_ps(d, _mm256_set1_ps(P.dx[j * T + i]));
        facc[h][i] = _mm256_fmadd_ps(ds, _mm256_cvtepi32_ps(I), facc[h][i]);
        if constexpr (ASYM) facc[h][i] = _mm256_fmadd_ps(m, _mm256_set1_ps(P.dxs[j * T + i]), facc[h][i]);
      }
    }
    sc += sc_step;
    mn += sc_step;
  }
  PHINFER_UNROLL for (int h = 0; h < H; ++h) {
    const int64_t nr = valid_rows - 8 * (h0 + h);
    if (nr <= 0) break;
    PHINFER_UNROLL for (int i = 0; i < T; ++i) {
      float* yp = y + i * ys + 8 * (h0 + h);
      if (nr >= 8)
        _mm256_storeu_ps(yp, facc[h][i]);
      else
        _mm256_maskstore_ps(yp, lane_mask(nr), facc[h][i]);
    }
  }
}

using MicroFn = void (*)(const uint8_t*, int, const QuantLayout&, const ActPanel&, float*, int64_t, int64_t);

template <bool Int4, bool ASYM>
void qgemm_fmt(const QGemmArgs& a, int64_t tile_begin, int64_t tile_end) {
  static constexpr MicroFn table[kPanel + 1] = {nullptr, &micro<Int4, ASYM, 2, 1, 2>, &micro<Int4, ASYM, 2, 2, 1>,
                                                &micro<Int4, ASYM, 1, 3, 1>, &micro<Int4, ASYM, 1, 4, 1>};
  const QuantLayout& L = a.L;
  const ActLayout& A = a.A;
  const int64_t group = std::max<int64_t>(1, (512 << 10) / std::max<int64_t>(1, A.panel * L.padded_cols));
  for (int64_t pg = 0; pg < A.n_panels; pg += group) {
    const int64_t pe = std::min(A.n_panels, pg + group);
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const uint8_t* tp = reinterpret_cast<const uint8_t*>(a.w) + tile * L.tile_bytes;
      const int64_t valid = std::min<int64_t>(kTileRows, L.rows - tile * kTileRows);
      for (int64_t p = pg; p < pe; ++p) {
        const ActPanel P = act_panel(A, a.acts, p);
        float* yp = a.y + p * A.panel * a.y_stride + tile * kTileRows;
        const MicroFn f = table[static_cast<size_t>(P.np)];
        if (P.np <= 2) {
          f(tp, 0, L, P, yp, a.y_stride, valid);
        } else {
          f(tp, 0, L, P, yp, a.y_stride, valid);
          if (valid > 8) f(tp, 1, L, P, yp, a.y_stride, valid);
        }
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
// A 16-lane fp32 accumulator is a pair of ymm (lanes 0-7, 8-15).

struct V16 {
  __m256 lo, hi;
};

template <WeightFormat F>
inline V16 load_w16(const std::byte* base, int64_t idx) {
  if constexpr (F == WeightFormat::F32) {
    const float* p = reinterpret_cast<const float*>(base) + idx;
    return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
  } else {
    const __m128i* p = reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(base) + idx);
    const __m128i a = _mm_loadu_si128(p), b = _mm_loadu_si128(p + 1);
    if constexpr (F == WeightFormat::F16) return {_mm256_cvtph_ps(a), _mm256_cvtph_ps(b)};
    return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(a), 16)),
            _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16))};
  }
}

// The first n (< 16) elements, zero beyond.
template <WeightFormat F>
inline V16 load_w16_tail(const std::byte* base, int64_t idx, int64_t n) {
  alignas(32) uint8_t tmp[64] = {};
  const size_t esz = F == WeightFormat::F32 ? 4 : 2;
  std::memcpy(tmp, base + static_cast<size_t>(idx) * esz, static_cast<size_t>(n) * esz);
  return load_w16<F>(reinterpret_cast<const std::byte*>(tmp), 0);
}

inline V16 load_x16(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline V16 load_x16_tail(const float* p, int64_t n) {
  return {_mm256_maskload_ps(p, lane_mask(n)), _mm256_maskload_ps(p + 8, lane_mask(n - 8))};
}

inline V16 fma16(V16 a, V16 b, V16 c) { return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }
// Lanes [0, n) updated, the rest kept (as the scalar tail loop leaves them).
inline V16 fma16_tail(V16 a, V16 b, V16 c, int64_t n) {
  const V16 f = fma16(a, b, c);
  return {_mm256_blendv_ps(c.lo, f.lo, _mm256_castsi256_ps(lane_mask(n))),
          _mm256_blendv_ps(c.hi, f.hi, _mm256_castsi256_ps(lane_mask(n - 8)))};
}

inline float reduce16(V16 v) {
  const __m256 a = _mm256_add_ps(v.lo, v.hi);
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  return _mm_cvtss_f32(_mm_add_ss(c, _mm_shuffle_ps(c, c, 1)));
}

// ---- exp and SiLU (the operations of exp_approx in kernels_impl.h) ------------------------------

inline __m256 exp_approx(__m256 x) {
  __m256 v = _mm256_max_ps(_mm256_set1_ps(kExpLo), x);  // NaN in the second operand passes through
  v = _mm256_min_ps(_mm256_set1_ps(kExpHi), v);
  const __m256i n = _mm256_cvtps_epi32(_mm256_mul_ps(v, _mm256_set1_ps(kLog2e)));
  const __m256 nf = _mm256_cvtepi32_ps(n);
  __m256 r = _mm256_fmadd_ps(nf, _mm256_set1_ps(-kExpC1), v);
  r = _mm256_fmadd_ps(nf, _mm256_set1_ps(-kExpC2), r);
  __m256 p = _mm256_set1_ps(kExpP[0]);
  PHINFER_UNROLL for (int k = 1; k < 6; ++k) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpP[k]));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256 e = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(y), _mm256_slli_epi32(n, 23)));
  return _mm256_blendv_ps(e, _mm256_set1_ps(std::numeric_limits<float>::infinity()),
                          _mm256_cmp_ps(x, _mm256_set1_ps(kExpHi), _CMP_GT_OQ));
}

void exp_minus(float* x, int64_t n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = lane_mask(n - i);
    _mm256_maskstore_ps(x + i, m, exp_approx(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), s)));
  }
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = lane_mask(n - i);
    const __m256 g = _mm256_maskload_ps(gate + i, m);
    const __m256 e = exp_approx(_mm256_xor_ps(g, sign));
    _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_maskload_ps(up + i, m)));
  }
}

float dot(const float* a, const float* b, int64_t n) {
  V16 acc{_mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) acc = fma16(load_x16(a + c), load_x16(b + c), acc);
  if (c < n) acc = fma16_tail(load_x16_tail(a + c, n - c), load_x16_tail(b + c, n - c), acc, n - c);
  return reduce16(acc);
}

void axpy(float a, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] = std::fma(a, x[i], y[i]);
}

// ---- attention rows (fp32, f16 or q8 storage; the operations and order of dot and axpy) ---------
// Src::load8(r, c, m): values [c, c + m) of row r as fp32 (m <= 8; zero beyond m).

struct F32Rows {
  const float* x;
  int64_t n;
  __m256 load8(int64_t r, int64_t c, int64_t m) const {
    const float* p = x + r * n + c;
    return m >= 8 ? _mm256_loadu_ps(p) : m > 0 ? _mm256_maskload_ps(p, lane_mask(m)) : _mm256_setzero_ps();
  }
};
struct F16Rows {
  const uint16_t* x;
  int64_t n;
  __m256 load8(int64_t r, int64_t c, int64_t m) const {
    const uint16_t* p = x + r * n + c;
    if (m >= 8) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    alignas(16) uint16_t tmp[8] = {};
    if (m > 0) std::memcpy(tmp, p, static_cast<size_t>(m) * 2);
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(tmp)));
  }
};
struct Q8Rows {
  const int8_t* x;
  const float* scales;
  int64_t n;
  __m256 load8(int64_t r, int64_t c, int64_t m) const {
    const int8_t* p = x + r * n + c;
    int64_t codes = 0;
    std::memcpy(&codes, p, static_cast<size_t>(std::clamp<int64_t>(m, 0, 8)));
    const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(codes)));
    return _mm256_mul_ps(_mm256_set1_ps(scales[r]), f);
  }
};

// Scores of a block of keys, two keys at a time (two fma chains and reductions overlap).
template <typename Src>
void dot_rows_src(const float* q, const Src& k, int64_t rows, int64_t n, float* out) {
  auto key16 = [&](int64_t r, int64_t c, int64_t m) { return V16{k.load8(r, c, m), k.load8(r, c + 8, m - 8)}; };
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    V16 a0{_mm256_setzero_ps(), _mm256_setzero_ps()}, a1 = a0;
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {
      const V16 qv = load_x16(q + c);
      a0 = fma16(qv, key16(r, c, 16), a0);
      a1 = fma16(qv, key16(r + 1, c, 16), a1);
    }
    if (c < n) {
      const V16 qv = load_x16_tail(q + c, n - c);
      a0 = fma16_tail(qv, key16(r, c, n - c), a0, n - c);
      a1 = fma16_tail(qv, key16(r + 1, c, n - c), a1, n - c);
    }
    out[r] = reduce16(a0);
    out[r + 1] = reduce16(a1);
  }
  for (; r < rows; ++r) {
    V16 a{_mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) a = fma16(load_x16(q + c), key16(r, c, 16), a);
    if (c < n) a = fma16_tail(load_x16_tail(q + c, n - c), key16(r, c, n - c), a, n - c);
    out[r] = reduce16(a);
  }
}

// Weighted sum of value rows, 64 columns at a time with y in registers over all rows.
template <typename Src>
void axpy_rows_src(const float* p, const Src& x, int64_t rows, int64_t n, float* y) {
  for (int64_t c0 = 0; c0 < n; c0 += 64) {
    const int64_t w = std::min<int64_t>(64, n - c0);
    __m256 acc[8];
    PHINFER_UNROLL for (int j = 0; j < 8; ++j) {
      const int64_t m = w - 8 * j;
      acc[j] = m >= 8 ? _mm256_loadu_ps(y + c0 + 8 * j) : m > 0 ? _mm256_maskload_ps(y + c0 + 8 * j, lane_mask(m)) : _mm256_setzero_ps();
    }
    for (int64_t r = 0; r < rows; ++r) {
      const __m256 a = _mm256_set1_ps(p[r]);
      PHINFER_UNROLL for (int j = 0; j < 8; ++j)
        if (8 * j < w) acc[j] = _mm256_fmadd_ps(a, x.load8(r, c0 + 8 * j, w - 8 * j), acc[j]);
    }
    PHINFER_UNROLL for (int j = 0; j < 8; ++j) {
      const int64_t m = w - 8 * j;
      if (m >= 8) _mm256_storeu_ps(y + c0 + 8 * j, acc[j]);
      else if (m > 0) _mm256_maskstore_ps(y + c0 + 8 * j, lane_mask(m), acc[j]);
    }
  }
}

// NQ queries against one block of rows, each key (value) chunk loaded once for all of them; per
// query, the operations and order of dot_rows_src / axpy_rows_src.
template <int NQ, typename Src>
void dot_rows_multi_src(const float* const* q, const Src& k, int64_t rows, int64_t n, float* const* out) {
  for (int64_t r = 0; r < rows; ++r) {
    V16 acc[NQ];
    PHINFER_UNROLL for (int i = 0; i < NQ; ++i) acc[i] = V16{_mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {
      const V16 kv{k.load8(r, c, 16), k.load8(r, c + 8, 8)};
      PHINFER_UNROLL for (int i = 0; i < NQ; ++i) acc[i] = fma16(load_x16(q[i] + c), kv, acc[i]);
    }
    if (c < n) {
      const V16 kv{k.load8(r, c, n - c), k.load8(r, c + 8, n - c - 8)};
      PHINFER_UNROLL for (int i = 0; i < NQ; ++i) acc[i] = fma16_tail(load_x16_tail(q[i] + c, n - c), kv, acc[i], n - c);
    }
    PHINFER_UNROLL for (int i = 0; i < NQ; ++i) out[i][r] = reduce16(acc[i]);
  }
}

// 16 columns at a time: NQ x 2 accumulators, the value chunk and the weight in 16 registers.
template <int NQ, typename Src>
void axpy_rows_multi_src(const float* const* p, const Src& x, int64_t rows, int64_t n, float* const* y) {
  for (int64_t c0 = 0; c0 < n; c0 += 16) {
    const int64_t w = std::min<int64_t>(16, n - c0);
    auto load = [&](const float* at, int64_t m) {
      return m >= 8 ? _mm256_loadu_ps(at) : m > 0 ? _mm256_maskload_ps(at, lane_mask(m)) : _mm256_setzero_ps();
    };
    __m256 acc[NQ][2];
    PHINFER_UNROLL for (int i = 0; i < NQ; ++i) {
      acc[i][0] = load(y[i] + c0, w);
      acc[i][1] = load(y[i] + c0 + 8, w - 8);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const __m256 x0 = x.load8(r, c0, w), x1 = x.load8(r, c0 + 8, w - 8);
      PHINFER_UNROLL for (int i = 0; i < NQ; ++i) {
        const __m256 a = _mm256_set1_ps(p[i][r]);
        acc[i][0] = _mm256_fmadd_ps(a, x0, acc[i][0]);
        if (w > 8) acc[i][1] = _mm256_fmadd_ps(a, x1, acc[i][1]);
      }
    }
    PHINFER_UNROLL for (int i = 0; i < NQ; ++i) {
      if (w >= 8) _mm256_storeu_ps(y[i] + c0, acc[i][0]);
      else _mm256_maskstore_ps(y[i] + c0, lane_mask(w), acc[i][0]);
      if (w >= 16) _mm256_storeu_ps(y[i] + c0 + 8, acc[i][1]);
      else if (w > 8) _mm256_maskstore_ps(y[i] + c0 + 8, lane_mask(w - 8), acc[i][1]);
    }
  }
}

template <typename Fn>
void with_stored_rows(const StoredRows& s, int64_t n, Fn&& fn) {
  switch (s.storage) {
    case RowStorage::F32: return fn(F32Rows{static_cast<const float*>(s.x), n});
    case RowStorage::F16: return fn(F16Rows{static_cast<const uint16_t*>(s.x), n});
    case RowStorage::Q8: return fn(Q8Rows{static_cast<const int8_t*>(s.x), s.scales, n});
  }
}

void dot_rows_multi(const float* const* q, int nq, const StoredRows& k, int64_t rows, int64_t n, float* const* out) {
  static_assert(kMaxQueryRows == 4);
  with_stored_rows(k, n, [&](const auto& src) {
    switch (nq) {
      case 1: return dot_rows_src(q[0], src, rows, n, out[0]);
      case 2: return dot_rows_multi_src<2>(q, src, rows, n, out);
      case 3: return dot_rows_multi_src<3>(q, src, rows, n, out);
      default: return dot_rows_multi_src<4>(q, src, rows, n, out);
    }
  });
}

void axpy_rows_multi(const float* const* p, int nq, const StoredRows& x, int64_t rows, int64_t n, float* const* y) {
  with_stored_rows(x, n, [&](const auto& src) {
    switch (nq) {
      case 1: return axpy_rows_src(p[0], src, rows, n, y[0]);
      case 2: return axpy_rows_multi_src<2>(p, src, rows, n, y);
      case 3: return axpy_rows_multi_src<3>(p, src, rows, n, y);
      default: return axpy_rows_multi_src<4>(p, src, rows, n, y);
    }
  });
}

void dot_rows(const float* q, const float* k, int64_t rows, int64_t n, float* out) { dot_rows_src(q, F32Rows{k, n}, rows, n, out); }
void axpy_rows(const float* p, const float* x, int64_t rows, int64_t n, float* y) { axpy_rows_src(p, F32Rows{x, n}, rows, n, y); }
void dot_rows_f16(const float* q, const uint16_t* k, int64_t rows, int64_t n, float* out) {
  dot_rows_src(q, F16Rows{k, n}, rows, n, out);
}
void axpy_rows_f16(const float* p, const uint16_t* x, int64_t rows, int64_t n, float* y) {
  axpy_rows_src(p, F16Rows{x, n}, rows, n, y);
}
void dot_rows_q8(const float* q, const int8_t* k, const float* scales, int64_t rows, int64_t n, float* out) {
  dot_rows_src(q, Q8Rows{k, scales, n}, rows, n, out);
}
void axpy_rows_q8(const float* p, const int8_t* x, const float* scales, int64_t rows, int64_t n, float* y) {
  axpy_rows_src(p, Q8Rows{x, scales, n}, rows, n, y);
}

template <WeightFormat F, int R>
void rows_direct(const WeightMatrix& w, int64_t r0, const float* x, int64_t n_tokens, float* y, int64_t ys) {
  const int64_t cols = w.cols;
  const size_t esz = F == WeightFormat::F32 ? 4 : 2;
  const std::byte* base = w.data + static_cast<size_t>(r0 * cols) * esz;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * cols;
    V16 acc[R];
    PHINFER_UNROLL for (int r = 0; r < R; ++r) acc[r] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
      const V16 xv = load_x16(xt + c);
      PHINFER_UNROLL for (int r = 0; r < R; ++r) acc[r] = fma16(load_w16<F>(base, r * cols + c), xv, acc[r]);
    }
    if (c < cols) {
      const V16 xv = load_x16_tail(xt + c, cols - c);
      PHINFER_UNROLL for (int r = 0; r < R; ++r)
        acc[r] = fma16_tail(load_w16_tail<F>(base, r * cols + c, cols - c), xv, acc[r], cols - c);
    }
    PHINFER_UNROLL for (int r = 0; r < R; ++r) y[t * ys + r0 + r] = reduce16(acc[r]);
  }
}

template <int R, int TT>
void rows_tokens(const float* wr, int64_t ld, const float* x, int64_t cols, float* y, int64_t ys) {
  V16 acc[R][TT];
  PHINFER_UNROLL for (int r = 0; r < R; ++r)
    PHINFER_UNROLL for (int t = 0; t < TT; ++t) acc[r][t] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    V16 xv[TT];
    PHINFER_UNROLL for (int t = 0; t < TT; ++t) xv[t] = load_x16(x + t * cols + c);
    PHINFER_UNROLL for (int r = 0; r < R; ++r) {
      const V16 wv = load_x16(wr + r * ld + c);
      PHINFER_UNROLL for (int t = 0; t < TT; ++t) acc[r][t] = fma16(wv, xv[t], acc[r][t]);
    }
  }
  if (c < cols) {
    const int64_t n = cols - c;
    V16 xv[TT];
    PHINFER_UNROLL for (int t = 0; t < TT; ++t) xv[t] = load_x16_tail(x + t * cols + c, n);
    PHINFER_UNROLL for (int r = 0; r < R; ++r) {
      const V16 wv = load_x16_tail(wr + r * ld + c, n);
      PHINFER_UNROLL for (int t = 0; t < TT; ++t) acc[r][t] = fma16_tail(wv, xv[t], acc[r][t], n);
    }
  }
  PHINFER_UNROLL for (int r = 0; r < R; ++r)
    PHINFER_UNROLL for (int t = 0; t < TT; ++t) y[t * ys + r] = reduce16(acc[r][t]);
}

template <int R>
void rows_tokens_any(const float* wr, int64_t ld, const float* x, int64_t cols, int64_t nt, float* y, int64_t ys) {
  int64_t t = 0;
  for (; t + 2 <= nt; t += 2) rows_tokens<R, 2>(wr, ld, x + t * cols, cols, y + t * ys, ys);
  if (t < nt) rows_tokens<R, 1>(wr, ld, x + t * cols, cols, y + t * ys, ys);
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
        for (int64_t r = 0; r < nr; ++r) {
          float* dst = buf.data() + r * cols;
          int64_t c = 0;
          for (; c + 16 <= cols; c += 16) {
            const V16 v = load_w16<F>(w.data, (rb + r) * cols + c);
            _mm256_storeu_ps(dst + c, v.lo);
            _mm256_storeu_ps(dst + c + 8, v.hi);
          }
          if (c < cols) {
            alignas(32) float tmp[16];
            const V16 v = load_w16_tail<F>(w.data, (rb + r) * cols + c, cols - c);
            _mm256_store_ps(tmp, v.lo);
            _mm256_store_ps(tmp + 8, v.hi);
            std::memcpy(dst + c, tmp, static_cast<size_t>(cols - c) * 4);
          }
        }
        wr = buf.data();
      }
      const float* xt = x + t0 * cols;
      float* yt = y + t0 * ys + rb;
      int64_t r = 0;
      for (; r + 2 <= nr; r += 2) rows_tokens_any<2>(wr + r * cols, cols, xt, cols, nt, yt + r, ys);
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
