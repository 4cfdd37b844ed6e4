// The quantization of weight groups (QuantMethod::MinMax and ::Search, quant.h), written once and
// compiled twice by quant.cpp: for any x86-64 (PHINFER_QUANT_AVX2 0) and for AVX2 + FMA
// (PHINFER_QUANT_AVX2 1, inside a PHINFER_TARGET region, the hot loops in intrinsics), so both
// give the same bytes and the converter picks the faster one.
//
// Same bytes on every path: every per-element operation is exact IEEE arithmetic (no reassociation,
// fma where written), and every sum runs in kLanes fixed lanes (element i goes to lane i % kLanes,
// each lane in order, lanes combined in a fixed tree), which the compiler turns into vector
// registers without changing a result. Nothing here allocates or calls the standard library in the
// hot loops, so no library code is emitted for the wider target.
//
// Expects in scope: round_up, kTileRows, QuantLayout, QuantMethod, ErrAcc, code_byte, scale_ptr,
// f32_to_f16, f16_to_f32.

constexpr int kLanes = 8;

// Round half to even (the default rounding mode), exactly std::nearbyint for |x| < 2^22; larger
// magnitudes keep their sign and size, and every caller clamps them to a few codes.
inline float round_even(float x) {
  const float magic = 12582912.0f;  // 1.5 * 2^23
  return (x + magic) - magic;
}

inline float clamp_to(float x, float lo, float hi) { return x < lo ? lo : (hi < x ? hi : x); }

inline float to_f16_and_back(float v) { return f16_to_f32(f32_to_f16(clamp_to(v, -65504.0f, 65504.0f))); }

struct Lanes {
  double s[kLanes] = {};
  double total() const { return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])); }
};

// Calls body(i, lane) for i in [0, n): full groups of kLanes first (unrolled, so each lane is a
// vector element), then the tail.
template <typename Body>
inline void for_lanes(int64_t n, Body&& body, int64_t i0 = 0) {
  for (; i0 + kLanes <= n; i0 += kLanes) {
    PHINFER_UNROLL
    for (int j = 0; j < kLanes; ++j) body(i0 + j, j);
  }
  for (int j = 0; i0 + j < n; ++j) body(i0 + j, j);
}

#if PHINFER_QUANT_AVX2
// The hot loops over whole groups of kLanes elements with AVX2 + FMA: the same operations as the
// portable loops, lane for lane (each returns how many elements it did; the caller does the tail).
inline void add_lanes(Lanes& l, __m256d lo, __m256d hi) {
  _mm256_storeu_pd(l.s, _mm256_add_pd(_mm256_loadu_pd(l.s), lo));
  _mm256_storeu_pd(l.s + 4, _mm256_add_pd(_mm256_loadu_pd(l.s + 4), hi));
}

inline void store_codes(uint8_t* v, __m256 q) {
  const __m256i qi = _mm256_cvttps_epi32(q);
  const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(v), _mm_packus_epi16(p16, p16));
}

inline __m256 round_clamp(__m256 x, __m256 lo, __m256 hi) {
  return _mm256_min_ps(_mm256_max_ps(_mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), lo), hi);
}

// err += (w - d*q)^2 with q = clamp(round(w * inv)); v = q + z (symmetric) or
// err += (w - fma(d, q, m))^2 with q = clamp(round((w - m) * inv)); v = q (asymmetric).
inline int64_t error_pass_avx2(const float* w, int64_t n, float d, float m, float inv, float lo, float hi, int z,
                               bool symmetric, uint8_t* v, Lanes& err) {
  const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m), vinv = _mm256_set1_ps(inv);
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi), vz = _mm256_set1_ps(static_cast<float>(z));
  __m256d e_lo = _mm256_setzero_pd(), e_hi = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m256 x = _mm256_loadu_ps(w + i);
    __m256 q, rec;
    if (symmetric) {
      q = round_clamp(_mm256_mul_ps(x, vinv), vlo, vhi);
      rec = _mm256_mul_ps(vd, q);
      store_codes(v + i, _mm256_add_ps(q, vz));
    } else {
      q = round_clamp(_mm256_mul_ps(_mm256_sub_ps(x, vm), vinv), vlo, vhi);
      rec = _mm256_fmadd_ps(vd, q, vm);
      store_codes(v + i, q);
    }
    const __m256d a = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), _mm256_cvtps_pd(_mm256_castps256_ps128(rec)));
    const __m256d b = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(rec, 1)));
    e_lo = _mm256_add_pd(e_lo, _mm256_mul_pd(a, a));
    e_hi = _mm256_add_pd(e_hi, _mm256_mul_pd(b, b));
  }
  add_lanes(err, e_lo, e_hi);
  return i;
}

// swq += w * q, sqq += q * q (double) with q = clamp(round(w * inv)).
inline int64_t lsq_pass_avx2(const float* w, int64_t n, float inv, float lo, float hi, Lanes& swq, Lanes& sqq) {
  const __m256 vinv = _mm256_set1_ps(inv), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  __m256d a_lo = _mm256_setzero_pd(), a_hi = _mm256_setzero_pd(), b_lo = _mm256_setzero_pd(), b_hi = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m256 x = _mm256_loadu_ps(w + i);
    const __m256 q = round_clamp(_mm256_mul_ps(x, vinv), vlo, vhi);
    const __m256d x0 = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), x1 = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    const __m256d q0 = _mm256_cvtps_pd(_mm256_castps256_ps128(q)), q1 = _mm256_cvtps_pd(_mm256_extractf128_ps(q, 1));
    a_lo = _mm256_add_pd(a_lo, _mm256_mul_pd(x0, q0));
    a_hi = _mm256_add_pd(a_hi, _mm256_mul_pd(x1, q1));
    b_lo = _mm256_add_pd(b_lo, _mm256_mul_pd(q0, q0));
    b_hi = _mm256_add_pd(b_hi, _mm256_mul_pd(q1, q1));
  }
  add_lanes(swq, a_lo, a_hi);
  add_lanes(sqq, b_lo, b_hi);
  return i;
}

// codes = clamp(round((w - base) * iscale), 0, top).
inline int64_t codes_pass_avx2(const float* w, int64_t n, float base, float iscale, float top, uint8_t* codes) {
  const __m256 vb = _mm256_set1_ps(base), vs = _mm256_set1_ps(iscale), vz = _mm256_setzero_ps(), vt = _mm256_set1_ps(top);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    store_codes(codes + i, round_clamp(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(w + i), vb), vs), vz, vt));
  return i;
}

// sv += q, svv += q * q, sw += w, swv += w * q (double) over codes q.
inline int64_t refit_pass_avx2(const float* w, const uint8_t* c, int64_t n, Lanes& sv, Lanes& svv, Lanes& sw,
                               Lanes& swv) {
  __m256d acc[8];
  for (auto& a : acc) a = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m256i ci = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + i)));
    const __m256d q0 = _mm256_cvtepi32_pd(_mm256_castsi256_si128(ci)), q1 = _mm256_cvtepi32_pd(_mm256_extracti128_si256(ci, 1));
    const __m256 x = _mm256_loadu_ps(w + i);
    const __m256d x0 = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), x1 = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    acc[0] = _mm256_add_pd(acc[0], q0), acc[1] = _mm256_add_pd(acc[1], q1);
    acc[2] = _mm256_add_pd(acc[2], _mm256_mul_pd(q0, q0)), acc[3] = _mm256_add_pd(acc[3], _mm256_mul_pd(q1, q1));
    acc[4] = _mm256_add_pd(acc[4], x0), acc[5] = _mm256_add_pd(acc[5], x1);
    acc[6] = _mm256_add_pd(acc[6], _mm256_mul_pd(x0, q0)), acc[7] = _mm256_add_pd(acc[7], _mm256_mul_pd(x1, q1));
  }
  add_lanes(sv, acc[0], acc[1]);
  add_lanes(svv, acc[2], acc[3]);
  add_lanes(sw, acc[4], acc[5]);
  add_lanes(swv, acc[6], acc[7]);
  return i;
}
#endif

// One quantization group: the stored (fp16-representable) scale / minimum and its error.
struct GroupFit {
  float d = 0, m = 0;
  double err = 0;
};

// Symmetric: w ~ d * (v - z), v = q + z, q in [-z, z - 1]. Writes the codes, returns the squared error.
inline double sym_error(const float* __restrict w, int64_t n, float d, int z, uint8_t* __restrict v) {
  Lanes err;
  if (d == 0.0f) {
    for_lanes(n, [&](int64_t i, int j) {
      v[i] = static_cast<uint8_t>(z);
      err.s[j] += static_cast<double>(w[i]) * w[i];
    });
    return err.total();
  }
  const float inv = 1.0f / d, lo = static_cast<float>(-z), hi = static_cast<float>(z - 1);
  int64_t done = 0;
#if PHINFER_QUANT_AVX2
  done = error_pass_avx2(w, n, d, 0.0f, inv, lo, hi, z, true, v, err);
#endif
  for_lanes(n, [&](int64_t i, int j) {
    const float q = clamp_to(round_even(w[i] * inv), lo, hi);
    v[i] = static_cast<uint8_t>(static_cast<int>(q) + z);
    const double e = static_cast<double>(w[i]) - static_cast<double>(d * q);
    err.s[j] += e * e;
  }, done);
  return err.total();
}

inline GroupFit fit_symmetric(const float* __restrict w, int64_t n, int bits, QuantMethod method, uint8_t* __restrict v,
                              uint8_t* __restrict tmp) {
  const int z = 1 << (bits - 1);
  const int qmax = z - 1;
  float extreme = 0;  // the element with the largest magnitude (the first of equals), with its sign
  float extreme_abs = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float a = w[i] < 0 ? -w[i] : w[i];
    if (a > extreme_abs) extreme_abs = a, extreme = w[i];
  }
  GroupFit best;
  if (extreme == 0.0f) {
    best.err = sym_error(w, n, 0.0f, z, v);
    return best;
  }
  best.d = to_f16_and_back(extreme_abs / static_cast<float>(qmax));
  best.err = sym_error(w, n, best.d, z, v);
  if (method == QuantMethod::MinMax) return best;

  const float lo = static_cast<float>(-z), hi = static_cast<float>(qmax);
  auto consider = [&](float d) {
    if (!(d != 0.0f) || !(d - d == 0.0f)) return;  // zero or not finite
    // The codes of scale d, then the least-squares scale for these codes, re-rounded with it.
    const float inv = 1.0f / d;
    Lanes swq, sqq;
    int64_t done = 0;
#if PHINFER_QUANT_AVX2
    done = lsq_pass_avx2(w, n, inv, lo, hi, swq, sqq);
#endif
    for_lanes(n, [&](int64_t i, int j) {
      const double q = clamp_to(round_even(w[i] * inv), lo, hi);
      swq.s[j] += static_cast<double>(w[i]) * q;
      sqq.s[j] += q * q;
    }, done);
    const double qq = sqq.total();
    if (qq <= 0) return;
    const float d2 = to_f16_and_back(static_cast<float>(swq.total() / qq));
    if (d2 == 0.0f) return;
    const double err = sym_error(w, n, d2, z, tmp);
    if (err < best.err) {
      best.err = err;
      best.d = d2;
      for (int64_t i = 0; i < n; ++i) v[i] = tmp[i];
    }
  };
  // The extreme element maps to about -z (or +qmax) times f: f > 1 clips the tails, which pays
  // off for long groups (a Gaussian row of 3072 is best cut near 0.7 of its maximum at 4 bits).
  constexpr int kSteps = 20;
  for (int s = 0; s <= kSteps; ++s) {
    const float f = 0.80f + 0.80f * static_cast<float>(s) / kSteps;  // 0.80 .. 1.60
    consider(extreme / (-static_cast<float>(z) * f));
    consider(extreme / (static_cast<float>(qmax) * f));
  }
  // A second least-squares pass from the best codes.
  if (best.d != 0.0f) consider(best.d);
  return best;
}

// Asymmetric: w ~ d * v + m, v in [0, vmax].
inline double asym_error(const float* __restrict w, int64_t n, float d, float m, int vmax, uint8_t* __restrict v) {
  Lanes err;
  const float top = static_cast<float>(vmax);
  if (d == 0.0f) {
    for_lanes(n, [&](int64_t i, int j) {
      v[i] = 0;
      const double e = static_cast<double>(w[i]) - static_cast<double>(m);
      err.s[j] += e * e;
    });
    return err.total();
  }
  const float inv = 1.0f / d;
  int64_t done = 0;
#if PHINFER_QUANT_AVX2
  done = error_pass_avx2(w, n, d, m, inv, 0.0f, top, 0, false, v, err);
#endif
  for_lanes(n, [&](int64_t i, int j) {
    const float q = clamp_to(round_even((w[i] - m) * inv), 0.0f, top);
    v[i] = static_cast<uint8_t>(q);
    const double e = static_cast<double>(w[i]) - static_cast<double>(__builtin_fmaf(d, q, m));
    err.s[j] += e * e;
  }, done);
  return err.total();
}

// codes: n bytes of scratch besides tmp.
inline GroupFit fit_asymmetric(const float* __restrict w, int64_t n, int bits, QuantMethod method, uint8_t* __restrict v,
                               uint8_t* __restrict tmp, uint8_t* __restrict codes) {
  const int vmax = (1 << bits) - 1;
  float lo = w[0], hi = w[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = w[i] < lo ? w[i] : lo;
    hi = w[i] > hi ? w[i] : hi;
  }
  GroupFit best;
  best.m = to_f16_and_back(lo);
  best.d = to_f16_and_back((hi - best.m) / static_cast<float>(vmax));
  best.err = asym_error(w, n, best.d, best.m, vmax, v);
  if (method == QuantMethod::MinMax || hi == lo) return best;

  auto refit = [&](const uint8_t* c) {
    Lanes sv, svv, sw, swv;
    int64_t done = 0;
#if PHINFER_QUANT_AVX2
    done = refit_pass_avx2(w, c, n, sv, svv, sw, swv);
#endif
    for_lanes(n, [&](int64_t i, int j) {
      const double q = c[i];
      sv.s[j] += q;
      svv.s[j] += q * q;
      sw.s[j] += w[i];
      swv.s[j] += static_cast<double>(w[i]) * q;
    }, done);
    const double nn = static_cast<double>(n);
    const double Sv = sv.total(), Svv = svv.total(), Sw = sw.total(), Swv = swv.total();
    const double det = nn * Svv - Sv * Sv;
    if (det <= 0) return;
    const float d = to_f16_and_back(static_cast<float>((nn * Swv - Sv * Sw) / det));
    const float m = to_f16_and_back(static_cast<float>((Svv * Sw - Sv * Swv) / det));
    if (!(d > 0.0f)) return;
    const double err = asym_error(w, n, d, m, vmax, tmp);
    if (err < best.err) {
      best = {d, m, err};
      for (int64_t i = 0; i < n; ++i) v[i] = tmp[i];
    }
  };
  constexpr int kSteps = 20;
  const float top = static_cast<float>(vmax);
  for (int s = 0; s <= kSteps; ++s) {
    const float f = 0.85f + 0.75f * static_cast<float>(s) / kSteps;  // 0.85 .. 1.60
    // Range shrunk by f around the middle, so both tails may clip.
    const float iscale = top * f / (hi - lo);
    const float base = 0.5f * (hi + lo) - 0.5f * top / iscale;
    int64_t done = 0;
#if PHINFER_QUANT_AVX2
    done = codes_pass_avx2(w, n, base, iscale, top, codes);
#endif
    for_lanes(n, [&](int64_t i, int) { codes[i] = static_cast<uint8_t>(clamp_to(round_even((w[i] - base) * iscale), 0.0f, top)); }, done);
    refit(codes);
  }
  // One more least-squares pass on the best codes found.
  for (int64_t i = 0; i < n; ++i) codes[i] = v[i];
  refit(codes);
  return best;
}

// Quantizes rows [16 t0, 16 t1) into their tiles; returns the error terms. scratch: 3 * cols bytes.
inline ErrAcc quantize_tiles(const float* w, const QuantLayout& L, QuantMethod method, std::byte* out, int64_t t0,
                             int64_t t1, uint8_t* scratch) {
  ErrAcc acc;
  const int64_t qlen = L.group_size > 0 ? L.group_size : L.cols;
  uint8_t* v = scratch;
  uint8_t* tmp = scratch + L.cols;
  uint8_t* codes = scratch + 2 * L.cols;
  for (int64_t t = t0; t < t1; ++t) {
    std::byte* tile = out + t * L.tile_bytes;
    for (int64_t i = 0; i < L.tile_bytes; ++i) tile[i] = std::byte{0};
    uint16_t* sc = scale_ptr(tile, L, false);
    uint16_t* mn = scale_ptr(tile, L, true);
    for (int64_t r = 0; r < kTileRows; ++r) {
      const int64_t row = t * kTileRows + r;
      if (row >= L.rows) break;
      const float* wr = w + row * L.cols;
      for (int64_t g = 0, g0 = 0; g0 < L.cols; ++g, g0 += qlen) {
        const int64_t n = qlen < L.cols - g0 ? qlen : L.cols - g0;
        const GroupFit f = L.symmetric ? fit_symmetric(wr + g0, n, L.bits, method, v + g0, tmp)
                                       : fit_asymmetric(wr + g0, n, L.bits, method, v + g0, tmp, codes);
        sc[g * kTileRows + r] = f32_to_f16(f.d);
        if (!L.symmetric) mn[g * kTileRows + r] = f32_to_f16(f.m);
        for (int64_t i = 0; i < n; ++i) {
          const float code = static_cast<float>(v[g0 + i]);
          const float rec =
              L.symmetric ? f.d * (code - static_cast<float>(L.zero_point)) : __builtin_fmaf(f.d, code, f.m);
          const double e = static_cast<double>(wr[g0 + i]) - rec;
          acc.sq += e * e;
          acc.ref += static_cast<double>(wr[g0 + i]) * wr[g0 + i];
          const double ae = e < 0 ? -e : e;
          acc.max_abs = ae > acc.max_abs ? ae : acc.max_abs;
        }
      }
      acc.n += L.cols;
      for (int64_t c = 0; c < L.cols; ++c) {
        int shift;
        uint8_t* b = code_byte(tile, L, r, c, &shift);
        *b = static_cast<uint8_t>(*b | (v[c] << shift));
      }
    }
  }
  return acc;
}
