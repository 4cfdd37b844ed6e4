// AMX kernels: the AVX-512 table, except that quantized matmuls of 16 or more tokens run on the
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
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/kernels_impl.h"

PHINFER_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c,amx-tile,amx-int8")

namespace phinfer::kernels::detail {
namespace {

constexpr int kAmxPanel = 32;     // tokens per activation panel: two A tiles
constexpr int kPrefetch = 512;    // bytes ahead in a weight tile's stream while unpacking (it is in L2 by then)

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

// One weight tile's codes as B rows (sub-chunk s at out + 64 s), in column order, zero from the last
// real sub-chunk to `n_sub`.
template <bool Int4>
void unpack_tile(const uint8_t* tile, const QuantLayout& L, int64_t n_sub, uint8_t* out) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int64_t c = 0; c < L.n_chunks; ++c) {
    _mm_prefetch(reinterpret_cast<const char*>(tile + 64 * c) + kPrefetch, _MM_HINT_T0);
    const __m512i v = _mm512_loadu_si512(tile + 64 * c);  // weights need not be 64-byte aligned (as the AVX-512 path)
    if constexpr (Int4) {
      _mm512_store_si512(out + 128 * c, _mm512_and_si512(v, m4));
      _mm512_store_si512(out + 128 * c + 64, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
    } else {
      _mm512_store_si512(out + 64 * c, v);
    }
  }
  const int64_t real = L.n_chunks * (Int4 ? 2 : 1);
  std::memset(out + 64 * real, 0, static_cast<size_t>(64 * (n_sub - real)));
}

struct Scratch {
  std::vector<uint8_t> raw;
  uint8_t* w[2] = {};
  int32_t* c = nullptr;  // 2 x 4 C tiles (block j and block j - 1)
  float* f = nullptr;    // fp32 sums [32 tokens][32 rows]
};

// Per-thread scratch, grown once to the largest matrix seen.
Scratch& scratch(int64_t n_sub) {
  thread_local Scratch s;
  const size_t wbytes = static_cast<size_t>(64 * n_sub);
  const size_t need = 2 * wbytes + 2 * 4096 + 32 * 32 * 4 + 64;
  if (s.raw.size() < need) s.raw.assign(need, 0);
  auto* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(s.raw.data()) + 63) & ~uintptr_t{63});
  s.w[0] = base;
  s.w[1] = base + wbytes;
  s.c = reinterpret_cast<int32_t*>(base + 2 * wbytes);
  s.f = reinterpret_cast<float*>(base + 2 * wbytes + 2 * 4096);
  return s;
}

// The vpdpbusd kernels' epilogue for block j, per token and weight tile: f += d dx I (+ m dxs).
template <bool ASYM, int NT>
inline void block_epilogue(const QuantLayout& L, const ActPanel& P, const uint16_t* const* sc, const uint16_t* const* mn,
                           int64_t j, const int32_t* c, float* f) {
  const int64_t np = P.np;
  const int64_t sc_step = L.n_scales > 1 ? kTileRows : 0;
  const float* pdx = P.dx + j * np;
  const int32_t* pcorr = P.corr + j * np;
  const float* pdxs = P.dxs + j * np;
  for (int n = 0; n < NT; ++n) {
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sc[n] + j * sc_step)));
    __m512 m = _mm512_setzero_ps();
    if constexpr (ASYM) m = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mn[n] + j * sc_step)));
    for (int64_t i = 0; i < np; ++i) {
      __m512i I = _mm512_load_si512(c + (i / 16 * 2 + n) * 256 + (i % 16) * 16);
      if constexpr (!ASYM) I = _mm512_add_epi32(I, _mm512_set1_epi32(pcorr[i]));
      float* fi = f + i * 32 + n * 16;
      __m512 acc = _mm512_load_ps(fi);
      acc = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(pdx[i])), _mm512_cvtepi32_ps(I), acc);
      if constexpr (ASYM) acc = _mm512_fmadd_ps(m, _mm512_set1_ps(pdxs[i]), acc);
      _mm512_store_ps(fi, acc);
    }
  }
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
  for (int n = 0; n < NT; ++n) {
    sc[n] = reinterpret_cast<const uint16_t*>(tiles[n] + L.quant_bytes);
    mn[n] = reinterpret_cast<const uint16_t*>(tiles[n] + L.quant_bytes + L.scale_bytes);
  }
  float* f = s.f;
  std::memset(f, 0, sizeof(float) * 32 * 32);
  for (int64_t j = 0; j < nb; ++j) {
    const int64_t steps = ((j + 1 < nb ? sub_per_block : sub_last) + ks - 1) / ks;
    _tile_zero(4);
    if constexpr (NT == 2) _tile_zero(5);
    if constexpr (MT == 2) _tile_zero(6);
    if constexpr (MT == 2 && NT == 2) _tile_zero(7);
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
    int32_t* c = s.c + 1024 * (j & 1);
    _tile_stored(4, c, 64);
    if constexpr (NT == 2) _tile_stored(5, c + 256, 64);
    if constexpr (MT == 2) _tile_stored(6, c + 512, 64);
    if constexpr (MT == 2 && NT == 2) _tile_stored(7, c + 768, 64);
  }
  block_epilogue<ASYM, NT>(L, P, sc, mn, nb - 1, s.c + 1024 * ((nb - 1) & 1), f);
  for (int64_t i = 0; i < np; ++i)
    for (int n = 0; n < NT; ++n) _mm512_mask_storeu_ps(y + i * ys + n * 16, rmask[n], _mm512_load_ps(f + i * 32 + n * 16));
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
  const Scratch& s = scratch(n_sub);
  const TileConfig cfg = tile_config(ks);
  _tile_loadconfig(&cfg);
  for (int64_t t = tile_begin; t < tile_end; t += 2) {
    const int nt = tile_end - t >= 2 ? 2 : 1;
    const uint8_t* tiles[2];
    __mmask16 rmask[2];
    for (int n = 0; n < nt; ++n) {
      tiles[n] = reinterpret_cast<const uint8_t*>(a.w) + (t + n) * L.tile_bytes;
      rmask[n] = tail_mask(L.rows - (t + n) * kTileRows);
      unpack_tile<Int4>(tiles[n], L, n_sub, s.w[n]);
    }
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
    k.min_tokens = 16;
    k.few_tokens = &avx512_kernels();
    return k;
  }();
  return t;
}

}  // namespace phinfer::kernels::detail
