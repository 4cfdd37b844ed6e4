// AMX kernels: the AVX-512 table, except that quantized matmuls of 8 or more tokens run on the
// tile unit (fewer: the AVX-512 kernels, see min_tokens). Compiled for that target function by function (#pragma GCC target below), like
// kernels_avx512.cpp; standard headers come before the target region.
//
// How a tile product maps onto the packed layout of quant.h: tdpbsud C[m][n] += sum_k A[m][k] B[k/4][4n + k%4]
// with A = int8 activations (16 tokens x 4 KS columns, token-major rows) and B = uint8 weight codes
// (KS rows of 64 bytes). A 64-byte Int8 chunk (16 rows x 4 columns, byte 4 r + k) is exactly one B
// row; an Int4 chunk unpacks into two (low nibbles: its first 4 columns, high: the next 4). C is
// then 16 tokens x 16 weight rows of int32 block sums I_j, the same exact integers as the vpdpbusd
// kernels, and the fp32 epilogue per block is theirs operation for operation: the results are
// bit-identical to every other path.
//
// Two ways through the weights: several panels of tokens (prefill) unpack a pair of weight tiles
// once and reuse it per panel (panel_tiles); a single panel (a decode batch of 16 to 32 sequences)
// reads each weight once, so its codes are unpacked a few steps ahead of the tile products into L1
// (panel_tiles_streamed): 1.4-1.6x the first way's speed at 16 tokens.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/kernels_impl.h"

PHINFER_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c,amx-tile,amx-int8")

namespace phinfer::kernels::detail {
namespace {

constexpr int kAmxPanel = 32;     // tokens per activation panel: two A tiles
constexpr int64_t kPrefetch = 512;  // bytes ahead in a weight tile's stream while unpacking it whole (it is in L2 by then)

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// ldtilecfg's 64-byte operand (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Tiles: 0, 1 = A (16 tokens x 4 KS bytes); 2, 3 = B (KS rows x 64 bytes); 4..7 = C (16 x 16 int32),
// C(m, n) = tile 4 + 2 m + n for token group m and weight tile n.
TileConfig tile_config(int64_t ks) {
  TileConfig c;
  for (int t = 0; t < 2; ++t) {
    c.rows[t] = 16;
    c.colsb[t] = static_cast<uint16_t>(4 * ks);
  }
  for (int t = 2; t < 4; ++t) {
    c.rows[t] = static_cast<uint8_t>(ks);
    c.colsb[t] = 64;
  }
  for (int t = 4; t < 8; ++t) {
    c.rows[t] = 16;
    c.colsb[t] = 64;
  }
  return c;
}

// B rows of one weight tile straight from its packed codes: sub-chunks [sub0, sub0 + count) at
// out + 64 (sub - sub0), zero past the real ones (the padded tail of the last block); each chunk read
// prefetches its stream `ahead` bytes further on.
template <bool Int4>
inline void unpack_subchunks(const uint8_t* tile, int64_t n_real, int64_t sub0, int64_t count, int64_t ahead, uint8_t* out) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const int64_t end = sub0 + count;
  auto chunk = [&](int64_t c) {
    _mm_prefetch(reinterpret_cast<const char*>(tile + 64 * c) + ahead, _MM_HINT_T0);
    return _mm512_loadu_si512(tile + 64 * c);  // weights need not be 64-byte aligned (as the AVX-512 path)
  };
  int64_t sub = sub0;
  if constexpr (Int4) {
    // Whole chunks (both halves) while the range holds them; a lone half at either end otherwise.
    if (sub & 1) {
      _mm512_store_si512(out, sub < n_real ? _mm512_and_si512(_mm512_srli_epi16(chunk(sub >> 1), 4), m4) : _mm512_setzero_si512());
      ++sub;
    }
    for (; sub + 2 <= end && sub + 2 <= n_real; sub += 2) {
      const __m512i v = chunk(sub >> 1);
      _mm512_store_si512(out + 64 * (sub - sub0), _mm512_and_si512(v, m4));
      _mm512_store_si512(out + 64 * (sub - sub0) + 64, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
    }
    if (sub < end && sub < n_real) {
      _mm512_store_si512(out + 64 * (sub - sub0), _mm512_and_si512(chunk(sub >> 1), m4));
      ++sub;
    }
  } else {
    for (; sub < end && sub < n_real; ++sub) _mm512_store_si512(out + 64 * (sub - sub0), chunk(sub));
  }
  for (; sub < end; ++sub) _mm512_store_si512(out + 64 * (sub - sub0), _mm512_setzero_si512());
}

constexpr int kRingSteps = 8;       // unpacked steps in flight (L1): kAhead ahead of the tile products
constexpr int kAhead = 4;
constexpr int64_t kRingBytes = kRingSteps * 2 * 16 * 64;  // steps x weight tiles x sub-chunks x 64 bytes
constexpr int64_t kStreamAhead = 2048;  // bytes ahead in each weight tile's stream (software prefetch to L1)

struct Scratch {
  std::vector<uint8_t> raw;
  uint8_t* w[2] = {};     // two weight tiles unpacked whole (several panels)
  uint8_t* ring = nullptr;  // panel_tiles_streamed's unpacked steps
  int32_t* c = nullptr;  // 2 x 4 C tiles (block j and block j - 1)
  float* f = nullptr;    // fp32 sums [32 tokens][32 rows]
};

// Per-thread scratch, grown once to the largest matrix seen.
Scratch& scratch(int64_t n_sub) {
  thread_local Scratch s;
  const size_t wbytes = static_cast<size_t>(64 * n_sub);
  const size_t need = 2 * wbytes + kRingBytes + 2 * 4096 + 32 * 32 * 4 + 64;
  if (s.raw.size() < need) s.raw.assign(need, 0);
  auto* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(s.raw.data()) + 63) & ~uintptr_t{63});
  s.w[0] = base;
  s.w[1] = base + wbytes;
  s.ring = base + 2 * wbytes;
  s.c = reinterpret_cast<int32_t*>(s.ring + kRingBytes);
  s.f = reinterpret_cast<float*>(s.ring + kRingBytes + 2 * 4096);
  return s;
}

// Each weight tile's fp16 scales (and minima) follow its codes.
template <int NT>
inline void scale_streams(const QuantLayout& L, const uint8_t* const* tiles, const uint16_t** sc, const uint16_t** mn) {
  for (int n = 0; n < NT; ++n) {
    sc[n] = reinterpret_cast<const uint16_t*>(tiles[n] + L.quant_bytes);
    mn[n] = reinterpret_cast<const uint16_t*>(tiles[n] + L.quant_bytes + L.scale_bytes);
  }
}

// The vpdpbusd kernels' epilogue for block j, per token and weight tile: f += d dx I (+ m dxs), with
// f = +0 before block 0 (no separate clearing pass).
template <bool ASYM, int NT>
inline void block_epilogue(const QuantLayout& L, const ActPanel& P, const uint16_t* const* sc, const uint16_t* const* mn,
                           int64_t j, const int32_t* c, float* f) {
  const int64_t np = P.np;
  const int64_t sc_step = L.n_scales > 1 ? kTileRows : 0;
  const float* pdx = P.dx + j * np;
  const int32_t* pcorr = P.corr + j * np;
  const float* pdxs = P.dxs + j * np;
  __m512 d[NT], m[NT];
  for (int n = 0; n < NT; ++n) {
    d[n] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc[n] + j * sc_step)));
    m[n] = ASYM ? _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mn[n] + j * sc_step))) : _mm512_setzero_ps();
  }
  // Token by token, both weight tiles under one broadcast of the token's factors (each output's
  // operations and their order are those of the vpdpbusd kernels).
  for (int64_t g = 0; g * 16 < np; ++g) {
    const int32_t* cg = c + g * 2 * 256;
    float* fg = f + g * 16 * 32;
    const int64_t rows = std::min<int64_t>(16, np - g * 16);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = g * 16 + r;
      const __m512 dx = _mm512_set1_ps(pdx[i]);
      for (int n = 0; n < NT; ++n) {
        __m512i I = _mm512_load_si512(cg + n * 256 + r * 16);
        if constexpr (!ASYM) I = _mm512_add_epi32(I, _mm512_set1_epi32(pcorr[i]));
        float* fi = fg + r * 32 + n * 16;
        __m512 acc = j == 0 ? _mm512_setzero_ps() : _mm512_load_ps(fi);  // the sums start at +0
        acc = _mm512_fmadd_ps(_mm512_mul_ps(d[n], dx), _mm512_cvtepi32_ps(I), acc);
        if constexpr (ASYM) acc = _mm512_fmadd_ps(m[n], _mm512_set1_ps(pdxs[i]), acc);
        _mm512_store_ps(fi, acc);
      }
    }
  }
}

// The C tiles of a block: C0 + 2 m + n for token group m and weight tile n (C0 = 6: the second set,
// one token group only). The tile intrinsics take literal register numbers, hence the spelled-out sets.
template <int MT, int NT, int C0>
inline void zero_block() {
  static_assert(C0 == 4 || (C0 == 6 && MT == 1));
  if constexpr (C0 == 4) {
    _tile_zero(4);
    if constexpr (NT == 2) _tile_zero(5);
    if constexpr (MT == 2) _tile_zero(6);
    if constexpr (MT == 2 && NT == 2) _tile_zero(7);
  } else {
    _tile_zero(6);
    if constexpr (NT == 2) _tile_zero(7);
  }
}

template <int MT, int NT, int C0>
inline void store_block(int32_t* c) {
  if constexpr (C0 == 4) {
    _tile_stored(4, c, 64);
    if constexpr (NT == 2) _tile_stored(5, c + 256, 64);
    if constexpr (MT == 2) _tile_stored(6, c + 512, 64);
    if constexpr (MT == 2 && NT == 2) _tile_stored(7, c + 768, 64);
  } else {
    static_assert(MT == 1);
    _tile_stored(6, c, 64);
    if constexpr (NT == 2) _tile_stored(7, c + 256, 64);
  }
}

// The fp32 sums of a panel's tokens [np][32] to y (rows past the matrix's end masked off).
template <int NT>
inline void store_outputs(const float* f, int64_t np, float* y, int64_t ys, const __mmask16* rmask) {
  for (int64_t i = 0; i < np; ++i)
    for (int n = 0; n < NT; ++n) _mm512_mask_storeu_ps(y + i * ys + n * 16, rmask[n], _mm512_load_ps(f + i * 32 + n * 16));
}

// Tokens of one panel (MT groups of 16) x NT weight tiles (16 rows each), all blocks. Software
// pipelined: the tile products of block j are issued before the (AVX-512) epilogue of block j - 1,
// whose sums wait in the other half of the C buffer, so that the tile unit and the vector units overlap.
template <bool ASYM, int MT, int NT>
void panel_tiles(const QuantLayout& L, int64_t ks, int64_t sub_per_block, int64_t sub_last, const ActPanel& P,
                 int64_t row_bytes, const Scratch& s, const uint8_t* const* tiles, float* y, int64_t ys,
                 const __mmask16* rmask, const uint8_t* next, int64_t next_bytes) {
  const int64_t np = P.np, nb = L.n_blocks;
  const int64_t next_lines_per_block = (next_bytes / 64 + nb - 1) / nb;
  const uint16_t* sc[NT];
  const uint16_t* mn[NT];
  scale_streams<NT>(L, tiles, sc, mn);
  float* f = s.f;
  for (int64_t j = 0; j < nb; ++j) {
    const int64_t steps = ((j + 1 < nb ? sub_per_block : sub_last) + ks - 1) / ks;
    zero_block<MT, NT, 4>();
    for (int64_t st = 0; st < steps; ++st) {
      const int64_t sub = j * sub_per_block + st * ks;
      _tile_loadd(0, P.q + 4 * sub, row_bytes);
      _tile_loadd(2, s.w[0] + 64 * sub, 64);
      if constexpr (NT == 2) _tile_loadd(3, s.w[1] + 64 * sub, 64);
      if constexpr (MT == 2) _tile_loadd(1, P.q + 16 * row_bytes + 4 * sub, row_bytes);
      _tile_dpbsud(4, 0, 2);
      if constexpr (NT == 2) _tile_dpbsud(5, 0, 3);
      if constexpr (MT == 2) _tile_dpbsud(6, 1, 2);
      if constexpr (MT == 2 && NT == 2) _tile_dpbsud(7, 1, 3);
    }
    // The next weight tiles into L2 while this pair computes: their unpacking then does not wait on memory.
    for (int64_t l = j * next_lines_per_block; l < std::min((j + 1) * next_lines_per_block, next_bytes / 64); ++l)
      _mm_prefetch(reinterpret_cast<const char*>(next + 64 * l), _MM_HINT_T1);
    if (j > 0) block_epilogue<ASYM, NT>(L, P, sc, mn, j - 1, s.c + 1024 * ((j - 1) & 1), f);
    store_block<MT, NT, 4>(s.c + 1024 * (j & 1));
  }
  block_epilogue<ASYM, NT>(L, P, sc, mn, nb - 1, s.c + 1024 * ((nb - 1) & 1), f);
  store_outputs<NT>(f, np, y, ys, rmask);
}

// Block j's tile products into C tiles C0 + 2 m + n, its B rows unpacked step by step kAhead steps
// ahead into a ring of L1 slots (slot layout: NT tiles x ks sub-chunks x 64 bytes).
template <bool Int4, int MT, int NT, int C0>
inline void block_products_streamed(const uint8_t* const* tiles, int64_t n_real, int64_t ks, int64_t g_begin,
                                    int64_t g_end, int64_t g_total, const ActPanel& P, int64_t row_bytes, uint8_t* ring) {
  const int64_t slot = NT * ks * 64;
  zero_block<MT, NT, C0>();
  for (int64_t g = g_begin; g < g_end; ++g) {
    if (g + kAhead < g_total) {
      uint8_t* out = ring + ((g + kAhead) % kRingSteps) * slot;
      const int64_t sub0 = (g + kAhead) * ks;
      for (int n = 0; n < NT; ++n) unpack_subchunks<Int4>(tiles[n], n_real, sub0, ks, kStreamAhead, out + n * ks * 64);
    }
    const uint8_t* b = ring + (g % kRingSteps) * slot;
    const int64_t sub = g * ks;
    _tile_loadd(2, b, 64);
    if constexpr (NT == 2) _tile_loadd(3, b + ks * 64, 64);
    if constexpr (MT == 2) {
      _tile_loadd(0, P.q + 4 * sub, row_bytes);
      _tile_loadd(1, P.q + 16 * row_bytes + 4 * sub, row_bytes);
      _tile_dpbsud(4, 0, 2);
      if constexpr (NT == 2) _tile_dpbsud(5, 0, 3);
      _tile_dpbsud(6, 1, 2);
      if constexpr (NT == 2) _tile_dpbsud(7, 1, 3);
    } else {
      // One token group leaves tile 1 free: A alternates between tiles 0 and 1 from step to step,
      // so that a step's A load need not wait for the previous step's products to have read it.
      // (The tile intrinsics take literal register numbers, hence the macro.)
#define PHINFER_AMX_ONE_GROUP_STEP(A, C_LO, C_HI)            \
  _tile_loadd(A, P.q + 4 * sub, row_bytes);                  \
  _tile_dpbsud(C_LO, A, 2);                                  \
  if constexpr (NT == 2) _tile_dpbsud(C_HI, A, 3);
      if (g & 1) {
        if constexpr (C0 == 4) { PHINFER_AMX_ONE_GROUP_STEP(1, 4, 5) } else { PHINFER_AMX_ONE_GROUP_STEP(1, 6, 7) }
      } else {
        if constexpr (C0 == 4) { PHINFER_AMX_ONE_GROUP_STEP(0, 4, 5) } else { PHINFER_AMX_ONE_GROUP_STEP(0, 6, 7) }
      }
#undef PHINFER_AMX_ONE_GROUP_STEP
    }
  }
}

// A single panel (at most 32 tokens: decode of a batch) reads each weight once, so unpacking whole
// tiles ahead (panel_tiles) would only add a pass through L2: here the codes are unpacked a few steps
// ahead of the tile products into L1 and the weight streams are prefetched. With one token group the
// C tiles alternate between two sets (4, 5 and 6, 7) from block to block, so that block j's products
// do not wait for block j - 1's sums to be stored for its epilogue.
template <bool Int4, bool ASYM, int MT, int NT>
void panel_tiles_streamed(const QuantLayout& L, int64_t ks, int64_t sub_per_block, int64_t n_sub, const ActPanel& P,
                          int64_t row_bytes, const Scratch& s, const uint8_t* const* tiles, float* y, int64_t ys,
                          const __mmask16* rmask) {
  const int64_t nb = L.n_blocks;
  const int64_t n_real = L.n_chunks * (Int4 ? 2 : 1);
  const int64_t steps_per_block = sub_per_block / ks;
  const int64_t g_total = n_sub / ks;  // steps: no step straddles two blocks, the last is padded
  const uint16_t* sc[NT];
  const uint16_t* mn[NT];
  scale_streams<NT>(L, tiles, sc, mn);
  uint8_t* ring = s.ring;
  for (int64_t g = 0; g < std::min<int64_t>(kAhead, g_total); ++g)
    for (int n = 0; n < NT; ++n)
      unpack_subchunks<Int4>(tiles[n], n_real, g * ks, ks, kStreamAhead, ring + (g % kRingSteps) * NT * ks * 64 + n * ks * 64);
  float* f = s.f;
  for (int64_t j = 0; j < nb; ++j) {
    const int64_t g0 = j * steps_per_block, g1 = std::min(g0 + steps_per_block, g_total);
    // The scales (and minima) are streams of their own, a line per two blocks: ahead by 8 blocks.
    if (L.n_scales > 1 && j % 2 == 0 && j + 8 < nb)
      for (int n = 0; n < NT; ++n) {
        _mm_prefetch(reinterpret_cast<const char*>(sc[n] + (j + 8) * kTileRows), _MM_HINT_T0);
        if constexpr (ASYM) _mm_prefetch(reinterpret_cast<const char*>(mn[n] + (j + 8) * kTileRows), _MM_HINT_T0);
      }
    if constexpr (MT == 1) {
      // Two C sets: block j's products, block j - 1's sums out to memory, and the epilogue of block
      // j - 2, whose sums were stored an iteration ago (no wait on a tile store).
      if (j & 1) {
        block_products_streamed<Int4, MT, NT, 6>(tiles, n_real, ks, g0, g1, g_total, P, row_bytes, ring);
        store_block<MT, NT, 4>(s.c);
      } else {
        block_products_streamed<Int4, MT, NT, 4>(tiles, n_real, ks, g0, g1, g_total, P, row_bytes, ring);
        if (j > 0) store_block<MT, NT, 6>(s.c + 1024);
      }
      if (j > 1) block_epilogue<ASYM, NT>(L, P, sc, mn, j - 2, s.c + 1024 * (j & 1), f);
    } else {
      // Two token groups use all four C tiles: one set, its previous sums already in memory.
      block_products_streamed<Int4, MT, NT, 4>(tiles, n_real, ks, g0, g1, g_total, P, row_bytes, ring);
      if (j > 0) block_epilogue<ASYM, NT>(L, P, sc, mn, j - 1, s.c + 1024 * ((j - 1) & 1), f);
      store_block<MT, NT, 4>(s.c + 1024 * (j & 1));
    }
  }
  if constexpr (MT == 1) {
    if ((nb - 1) & 1) store_block<MT, NT, 6>(s.c + 1024);
    else store_block<MT, NT, 4>(s.c);
    if (nb > 1) block_epilogue<ASYM, NT>(L, P, sc, mn, nb - 2, s.c + 1024 * ((nb - 2) & 1), f);
  }
  block_epilogue<ASYM, NT>(L, P, sc, mn, nb - 1, s.c + 1024 * ((nb - 1) & 1), f);
  store_outputs<NT>(f, P.np, y, ys, rmask);
}

template <bool Int4, bool ASYM>
void qgemm_tiles(const QGemmArgs& a, int64_t tile_begin, int64_t tile_end) {
  const QuantLayout& L = a.L;
  const ActLayout& A = a.A;
  const int64_t ks = amx_step_subchunks(L);
  const int64_t per_chunk = Int4 ? 2 : 1;
  const int64_t sub_per_block = L.block_chunks * per_chunk;
  const int64_t sub_last = L.block_n_chunks(L.n_blocks - 1) * per_chunk;
  const int64_t n_sub = (L.n_blocks - 1) * sub_per_block + round_up(sub_last, ks);
  const Scratch& s = scratch(A.n_panels == 1 ? 0 : n_sub);  // a single panel unpacks into the ring only
  const TileConfig cfg = tile_config(ks);
  _tile_loadconfig(&cfg);
  for (int64_t t = tile_begin; t < tile_end; t += 2) {
    const int nt = tile_end - t >= 2 ? 2 : 1;
    const uint8_t* tiles[2];
    __mmask16 rmask[2];
    for (int n = 0; n < nt; ++n) {
      tiles[n] = reinterpret_cast<const uint8_t*>(a.w) + (t + n) * L.tile_bytes;
      rmask[n] = tail_mask(L.rows - (t + n) * kTileRows);
    }
    if (A.n_panels == 1) {
      const ActPanel P = act_panel(A, a.acts, 0);
      float* y = a.y + t * kTileRows;
      const bool two_groups = P.np > 16;
      if (nt == 2) {
        if (two_groups) panel_tiles_streamed<Int4, ASYM, 2, 2>(L, ks, sub_per_block, n_sub, P, A.row_bytes, s, tiles, y, a.y_stride, rmask);
        else panel_tiles_streamed<Int4, ASYM, 1, 2>(L, ks, sub_per_block, n_sub, P, A.row_bytes, s, tiles, y, a.y_stride, rmask);
      } else {
        if (two_groups) panel_tiles_streamed<Int4, ASYM, 2, 1>(L, ks, sub_per_block, n_sub, P, A.row_bytes, s, tiles, y, a.y_stride, rmask);
        else panel_tiles_streamed<Int4, ASYM, 1, 1>(L, ks, sub_per_block, n_sub, P, A.row_bytes, s, tiles, y, a.y_stride, rmask);
      }
      continue;
    }
    for (int n = 0; n < nt; ++n) unpack_subchunks<Int4>(tiles[n], L.n_chunks * per_chunk, 0, n_sub, kPrefetch, s.w[n]);
    const uint8_t* next = reinterpret_cast<const uint8_t*>(a.w) + (t + nt) * L.tile_bytes;
    const int64_t next_bytes = (std::min(tile_end, t + nt + 2) - (t + nt)) * L.tile_bytes;
    for (int64_t p = 0; p < A.n_panels; ++p) {
      const ActPanel P = act_panel(A, a.acts, p);
      const int64_t pf = p == 0 ? next_bytes : 0;
      float* y = a.y + p * A.panel * a.y_stride + t * kTileRows;
      const bool two_groups = P.np > 16;
      if (nt == 2) {
        if (two_groups) panel_tiles<ASYM, 2, 2>(L, ks, sub_per_block, sub_last, P, A.row_bytes, s, tiles, y, a.y_stride, rmask, next, pf);
        else panel_tiles<ASYM, 1, 2>(L, ks, sub_per_block, sub_last, P, A.row_bytes, s, tiles, y, a.y_stride, rmask, next, pf);
      } else {
        if (two_groups) panel_tiles<ASYM, 2, 1>(L, ks, sub_per_block, sub_last, P, A.row_bytes, s, tiles, y, a.y_stride, rmask, next, pf);
        else panel_tiles<ASYM, 1, 1>(L, ks, sub_per_block, sub_last, P, A.row_bytes, s, tiles, y, a.y_stride, rmask, next, pf);
      }
    }
  }
  // Hands the tile state back, so that a context switch does not save 8 KiB of it.
  _tile_release();
}

void qgemm(const QGemmArgs& a, int64_t tile_begin, int64_t tile_end) {
  if (a.L.bits == 4)
    a.L.symmetric ? qgemm_tiles<true, false>(a, tile_begin, tile_end) : qgemm_tiles<true, true>(a, tile_begin, tile_end);
  else
    a.L.symmetric ? qgemm_tiles<false, false>(a, tile_begin, tile_end) : qgemm_tiles<false, true>(a, tile_begin, tile_end);
}

}  // namespace
}  // namespace phinfer::kernels::detail

PHINFER_TARGET_END

namespace phinfer::kernels::detail {

const KernelTable& amx_kernels() {
  static const KernelTable t = [] {
    KernelTable k = avx512_kernels();
    k.isa = Isa::Amx;
    k.panel_tokens = kAmxPanel;
    k.qgemm = qgemm;
    k.token_major_acts = true;
    k.min_tokens = 8;
    k.few_tokens = &avx512_kernels();
    return k;
  }();
  return t;
}

}  // namespace phinfer::kernels::detail
