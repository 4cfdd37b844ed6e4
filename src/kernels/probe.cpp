#include "kernels/probe.h"

#if !defined(__clang__)
// GCC 12's AVX-512 headers trip -Wuninitialized on their own _mm512_undefined_*() helpers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "kernels/isa.h"

#define PHINFER_UNROLL _Pragma("GCC unroll 32")

namespace phinfer::kernels {
namespace {

constexpr size_t kBufferBytes = size_t{1} << 30;
constexpr int kStreams = 8;
constexpr int kTrials = 7;

using Clock = std::chrono::steady_clock;

std::atomic<uint64_t> g_sink{0};  // keeps results observable

// ---- read kernels: bytes [0, n) of p (n a multiple of kStreams * 256), kStreams streams ----

__attribute__((target("avx512f"))) uint64_t read_avx512(const std::byte* p, size_t n) {
  const size_t per = n / kStreams;
  __m512i acc[kStreams];
  PHINFER_UNROLL for (int s = 0; s < kStreams; ++s) acc[s] = _mm512_setzero_si512();
  for (size_t off = 0; off < per; off += 256)
    PHINFER_UNROLL for (int s = 0; s < kStreams; ++s) {
      const __m512i* q = reinterpret_cast<const __m512i*>(p + s * per + off);
      acc[s] = _mm512_xor_si512(acc[s], _mm512_xor_si512(_mm512_xor_si512(_mm512_load_si512(q), _mm512_load_si512(q + 1)),
                                                         _mm512_xor_si512(_mm512_load_si512(q + 2), _mm512_load_si512(q + 3))));
    }
  __m512i a = acc[0];
  PHINFER_UNROLL for (int s = 1; s < kStreams; ++s) a = _mm512_xor_si512(a, acc[s]);
  // Not _mm512_reduce_add_epi64: its signed adds overflow (UB) on arbitrary data.
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, a);
  uint64_t x = 0;
  for (uint64_t lane : lanes) x ^= lane;
  return x;
}

__attribute__((target("avx2"))) uint64_t read_avx2(const std::byte* p, size_t n) {
  const size_t per = n / kStreams;
  __m256i acc[kStreams];
  PHINFER_UNROLL for (int s = 0; s < kStreams; ++s) acc[s] = _mm256_setzero_si256();
  for (size_t off = 0; off < per; off += 128)
    PHINFER_UNROLL for (int s = 0; s < kStreams; ++s) {
      const __m256i* q = reinterpret_cast<const __m256i*>(p + s * per + off);
      acc[s] = _mm256_xor_si256(acc[s], _mm256_xor_si256(_mm256_xor_si256(_mm256_load_si256(q), _mm256_load_si256(q + 1)),
                                                         _mm256_xor_si256(_mm256_load_si256(q + 2), _mm256_load_si256(q + 3))));
    }
  __m256i a = acc[0];
  PHINFER_UNROLL for (int s = 1; s < kStreams; ++s) a = _mm256_xor_si256(a, acc[s]);
  return static_cast<uint64_t>(_mm256_extract_epi64(a, 0) ^ _mm256_extract_epi64(a, 3));
}

uint64_t read_scalar(const std::byte* p, size_t n) {
  const size_t per = n / kStreams;
  uint64_t acc[kStreams] = {};
  for (size_t off = 0; off < per; off += 64)
    PHINFER_UNROLL for (int s = 0; s < kStreams; ++s) {
      const uint64_t* q = reinterpret_cast<const uint64_t*>(p + s * per + off);
      for (int k = 0; k < 8; ++k) acc[s] ^= q[k];
    }
  uint64_t a = 0;
  PHINFER_UNROLL for (int s = 0; s < kStreams; ++s) a ^= acc[s];
  return a;
}

// ---- int8 dot-product kernels: iters x 16 accumulator updates ----

constexpr int kChains = 16;

// The result is only a sink against dead-code elimination: unsigned, so overflow wraps.
uint64_t sum_lanes(const uint32_t* lanes, int n) {
  uint64_t s = 0;
  for (int i = 0; i < n; ++i) s += lanes[i];
  return s;
}

__attribute__((target("avx512f,avx512vnni"))) uint64_t dot_avx512(int64_t iters) {
  __m512i acc[kChains];
  PHINFER_UNROLL for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (int64_t it = 0; it < iters; ++it)
    PHINFER_UNROLL for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
  __m512i s = acc[0];
  PHINFER_UNROLL for (int i = 1; i < kChains; ++i) s = _mm512_add_epi32(s, acc[i]);
  // The lanes have long since wrapped (vpdpbusd wraps): sum them as unsigned, where wrapping is
  // defined. _mm512_reduce_add_epi32 adds them as signed int, which UBSan rightly reports.
  alignas(64) uint32_t lanes[16];
  _mm512_store_si512(lanes, s);
  return sum_lanes(lanes, 16);
}

__attribute__((target("avx2,avxvnni"))) uint64_t dot_avxvnni(int64_t iters) {
  __m256i acc[kChains];
  PHINFER_UNROLL for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_epi32(i);
  const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2);
  for (int64_t it = 0; it < iters; ++it)
    PHINFER_UNROLL for (int i = 0; i < kChains; ++i) acc[i] = _mm256_dpbusd_avx_epi32(acc[i], a, b);
  __m256i s = acc[0];
  PHINFER_UNROLL for (int i = 1; i < kChains; ++i) s = _mm256_add_epi32(s, acc[i]);
  return static_cast<uint64_t>(_mm256_extract_epi32(s, 0));
}

__attribute__((target("avx2"))) uint64_t dot_avx2(int64_t iters) {
  __m256i acc[kChains];
  PHINFER_UNROLL for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_epi32(i);
  const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  for (int64_t it = 0; it < iters; ++it)
    PHINFER_UNROLL for (int i = 0; i < kChains; ++i)
      acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
  __m256i s = acc[0];
  PHINFER_UNROLL for (int i = 1; i < kChains; ++i) s = _mm256_add_epi32(s, acc[i]);
  return static_cast<uint64_t>(_mm256_extract_epi32(s, 0));
}

uint64_t dot_scalar(int64_t iters) {
  // Unsigned accumulators: the sums wrap (defined) for any iteration count, as the SIMD lanes do.
  uint32_t acc[kChains] = {};
  volatile int8_t va = 3, vb = -2;
  const uint8_t a = static_cast<uint8_t>(va);
  const int8_t b = vb;
  for (int64_t it = 0; it < iters; ++it)
    PHINFER_UNROLL for (int i = 0; i < kChains; ++i) acc[i] += static_cast<uint32_t>(a * b + static_cast<int32_t>(it & 1));
  return sum_lanes(acc, kChains);
}

// AMX: iters / 16 rounds of 4 independent tile products (2 A x 2 B into 4 C tiles; 16 x 16 x 64
// MACs each), which the tile unit overlaps as a GEMM kernel's 2 x 2 blocking does.
struct alignas(64) AmxConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};
__attribute__((target("amx-tile,amx-int8"))) uint64_t dot_amx(int64_t iters) {
  alignas(64) static const int8_t a[16 * 64] = {3};
  alignas(64) int32_t c[16 * 16];
  const AmxConfig cfg;
  _tile_loadconfig(&cfg);
  _tile_loadd(0, a, 64);
  _tile_loadd(1, a, 64);
  _tile_loadd(2, a, 64);
  _tile_loadd(3, a, 64);
  _tile_zero(4);
  _tile_zero(5);
  _tile_zero(6);
  _tile_zero(7);
  for (int64_t it = 0; it < iters / 16; ++it) {
    _tile_dpbsud(4, 0, 2);
    _tile_dpbsud(5, 0, 3);
    _tile_dpbsud(6, 1, 2);
    _tile_dpbsud(7, 1, 3);
  }
  _tile_stored(4, c, 64);
  _tile_release();
  return static_cast<uint32_t>(c[0]);
}

// MACs per accumulator update of each path (per iteration and chain: the formula below).
double macs_per_update(Isa isa) {
  switch (isa) {
    case Isa::Amx: return 4.0 * 16 * 16 * 64 / 16 / kChains;
    case Isa::Avx512: return 64;
    case Isa::AvxVnni:
    case Isa::Avx2: return 32;
    case Isa::Scalar: return 1;
  }
  return 1;
}

}  // namespace

double measure_read_bandwidth_gbs(ThreadPool& pool) {
  const Isa isa = active_isa();
  void* mem = std::aligned_alloc(size_t{2} << 20, kBufferBytes);
  if (mem == nullptr) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  madvise(mem, kBufferBytes, MADV_HUGEPAGE);
#endif
  std::byte* buf = static_cast<std::byte*>(mem);
  const int threads = pool.size();
  // Each thread's slice, a multiple of kStreams * 256 bytes.
  const size_t slice = kBufferBytes / static_cast<size_t>(threads) / (kStreams * 256) * (kStreams * 256);
  // First touch by the thread that will read the slice.
  pool.parallel_for(threads, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) std::memset(buf + static_cast<size_t>(t) * slice, static_cast<int>(t + 1), slice);
  });
  double best = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    const auto t0 = Clock::now();
    pool.parallel_for(threads, [&](int64_t b, int64_t e) {
      uint64_t s = 0;
      for (int64_t t = b; t < e; ++t) {
        const std::byte* p = buf + static_cast<size_t>(t) * slice;
        s ^= isa == Isa::Avx512 || isa == Isa::Amx ? read_avx512(p, slice) : isa == Isa::Scalar ? read_scalar(p, slice) : read_avx2(p, slice);
      }
      g_sink.fetch_xor(s, std::memory_order_relaxed);
    });
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, static_cast<double>(slice) * threads / sec / 1e9);
  }
  std::free(mem);
  return best;
}

double measure_int8_peak_gops(ThreadPool& pool) {
  const Isa isa = active_isa();
  const int threads = pool.size();
  const int64_t iters = isa == Isa::Scalar ? 2'000'000 : 4'000'000;
  double best = 0;
  for (int trial = 0; trial < 5; ++trial) {
    const auto t0 = Clock::now();
    pool.parallel_for(threads, [&](int64_t b, int64_t e) {
      uint64_t s = 0;
      for (int64_t t = b; t < e; ++t) {
        switch (isa) {
          case Isa::Amx: s += dot_amx(iters); break;
          case Isa::Avx512: s += dot_avx512(iters); break;
          case Isa::AvxVnni: s += dot_avxvnni(iters); break;
          case Isa::Avx2: s += dot_avx2(iters); break;
          case Isa::Scalar: s += dot_scalar(iters); break;
        }
      }
      g_sink.fetch_add(s, std::memory_order_relaxed);
    });
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    const double ops = 2.0 * macs_per_update(isa) * kChains * static_cast<double>(iters) * threads;
    best = std::max(best, ops / sec / 1e9);
  }
  return best;
}

}  // namespace phinfer::kernels
