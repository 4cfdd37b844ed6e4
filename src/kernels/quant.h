#pragma once
// Quantized weight formats Int8 and Int4: packed layout, quantization and
// dequantization. The matmul itself is kernels::matmul (matrix.h).
//
// ---------------------------------------------------------------------------------------------
// Packed layout (little-endian, the same bytes in memory and in a model file; a matrix starts
// 64-byte aligned and every tile below is a multiple of 64 bytes, so every tile stays aligned)
// ---------------------------------------------------------------------------------------------
//   bits b = 8 (Int8) or 4 (Int4). Stored codes are unsigned: v in [0, 255] or [0, 15].
//   Block length B = group_size, or 128 when group_size == -1 (per-channel: one scale per row,
//   the blocks then only set how activations are quantized). Columns are cut into
//   nb = ceil(cols / B) blocks; block j = columns [j*B, min(cols, (j+1)*B)); only the last may be
//   short.
//   Chunk width CW = 32 / b columns (Int8: 4, Int4: 8). Block j is stored as ceil(len_j / CW)
//   chunks of 64 bytes (columns past the end of the block are padding, code 0); a full block
//   has cb = ceil(B / CW) chunks, so block j starts at chunk j * cb. Chunks per tile:
//   nc = (nb - 1) * cb + ceil(len_last / CW).
//   Rows are grouped in tiles of 16 (rows past `rows` in the last tile are padding, code 0,
//   scale 0). Tile i covers rows [16 i, 16 i + 16) and holds, in this order:
//     1. nc chunks of 64 bytes. For a chunk whose first column is c:
//          Int8: byte 4 r + k = v[row r][col c + k]                             (r < 16, k < 4)
//          Int4: byte 4 r + k = v[row r][col c + k] | v[row r][col c + 4 + k] << 4
//        i.e. one 64-byte load is 16 rows x 4 columns of u8 (Int8) or, after `& 0x0F` and
//        `>> 4 & 0x0F`, two such vectors (Int4): exactly the operand of one vpdpbusd per
//        16 rows (or two ymm halves: rows 0-7 in bytes 0-31, rows 8-15 in bytes 32-63).
//     2. scales: ns x 16 fp16 (ns = nb, or 1 when per-channel): scale of block j, row r at
//        index 16 j + r; zero-padded to a multiple of 64 bytes.
//     3. asymmetric only: minimums, same shape and padding as the scales.
//   Dequantized weight:  symmetric  w = d * (v - z),  z = 8 (Int4) or 128 (Int8)
//                        asymmetric w = d * v + m     (v in [0, 2^b - 1])
//   Bytes per tile = 64 nc + P(32 ns) [+ P(32 ns)], P = round up to 64.
//   Int4 g128: 4.125 bits/weight (symmetric) and 4.25 (asymmetric); Int8 per-channel: ~8.0.
//
// ---------------------------------------------------------------------------------------------
// Matmul numerics (identical on every ISA path; the scalar path is the reference)
// ---------------------------------------------------------------------------------------------
//   Activations are quantized per token and per block (the weight group; 128 columns for
//   per-channel weights): a = max|x| over the block, dx = a / 127, q = round-half-even(x * (127/a))
//   (all zero when a == 0), s = sum q. For each (row, token) and block j in order:
//     I_j = sum_c v[c] q[c] - z s   (int32, exact; z = 0 when asymmetric)
//     sym:  acc = fma(d_j * dx_j, float(I_j), acc)
//     asym: acc = fma(d_j * dx_j, float(I_j), acc); acc = fma(m_j, dx_j * float(s), acc)
//   starting from acc = 0 (fp32 throughout). Group sizes up to 65536 keep I_j inside int32.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/matrix.h"
#include "kernels/thread_pool.h"

namespace phinfer::kernels {

constexpr int kTileRows = 16;
constexpr int kPerChannelBlock = 128;
constexpr int kMaxGroupSize = 65536;

// Geometry of one packed Int8/Int4 matrix. of() validates and throws phinfer::Error.
struct QuantLayout {
  int bits = 4;
  int64_t rows = 0, cols = 0;
  int group_size = -1;
  bool symmetric = true;
  int64_t block = 0;        // B
  int64_t n_blocks = 0;     // nb
  int64_t chunk_cols = 0;   // CW
  int64_t block_chunks = 0; // cb: chunks of a full block
  int64_t n_chunks = 0;     // nc: chunks per tile
  int64_t padded_cols = 0;  // nc * CW
  int64_t n_scales = 0;     // ns
  int64_t quant_bytes = 0;  // 64 nc
  int64_t scale_bytes = 0;  // P(32 ns)
  int64_t tile_bytes = 0;
  int64_t n_tiles = 0;
  size_t total_bytes = 0;
  int zero_point = 0;       // z for symmetric, 0 for asymmetric

  static QuantLayout of(WeightFormat format, int64_t rows, int64_t cols, int group_size, bool symmetric);
  static QuantLayout of(const WeightMatrix& w) { return of(w.format, w.rows, w.cols, w.group_size, w.symmetric); }
  int64_t block_begin(int64_t j) const { return j * block; }
  int64_t block_len(int64_t j) const { return (j + 1 < n_blocks) ? block : cols - j * block; }
  int64_t block_chunk(int64_t j) const { return j * block_chunks; }
  int64_t block_n_chunks(int64_t j) const { return (block_len(j) + chunk_cols - 1) / chunk_cols; }
  int max_code() const { return (1 << bits) - 1; }
};

// Size in bytes of a packed matrix (a multiple of 64).
size_t quantized_size(WeightFormat format, int64_t rows, int64_t cols, int group_size, bool symmetric);

enum class QuantMethod {
  MinMax,  // plain rounding: scale from max|w| (sym) or (max - min) (asym)
  Search,  // per group, a grid of candidate scales (and minimums) each refitted by least
           // squares; keeps the one with the smallest squared reconstruction error
};

struct QuantParams {
  WeightFormat format = WeightFormat::Int4;
  int group_size = 128;  // -1: per output channel
  bool symmetric = true;
  QuantMethod method = QuantMethod::Search;
};

struct QuantError {
  double rmse = 0;      // sqrt(mean (w - deq(w))^2)
  double rel_rmse = 0;  // rmse / sqrt(mean w^2) (0 for an all-zero matrix)
  double max_abs = 0;   // max |w - deq(w)|
};

// 64-byte aligned, zero-initialised bytes.
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(size_t n);
  std::byte* data() { return ptr_.get(); }
  const std::byte* data() const { return ptr_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte, Free> ptr_;
  size_t size_ = 0;
};

struct QuantizedMatrix {
  WeightFormat format = WeightFormat::Int4;
  int64_t rows = 0, cols = 0;
  int group_size = -1;
  bool symmetric = true;
  AlignedBytes data;
  QuantError error;  // of the stored weights against the input

  WeightMatrix view() const;
};

// Quantizes a row-major fp32 [rows, cols] matrix. The pool (optional) splits rows over threads.
QuantizedMatrix quantize(const float* w, int64_t rows, int64_t cols, const QuantParams& params,
                         ThreadPool* pool = nullptr);
// The same into caller memory of quantized_size(...) bytes (e.g. a file being written); returns
// the reconstruction error.
QuantError quantize_into(const float* w, int64_t rows, int64_t cols, const QuantParams& params, std::byte* out,
                         ThreadPool* pool = nullptr);

// Stores row `row` of a packed matrix (`out`: L.total_bytes, zero-initialised) from its codes
// (cols values in [0, 2^bits)), one fp16 scale per block and, when asymmetric, one fp16 minimum per
// block: formats that already hold codes and scales (GGUF's Q8_0, Q4_0, ...) are repacked
// losslessly this way instead of being requantized.
void pack_row(const QuantLayout& L, int64_t row, const uint8_t* codes, const uint16_t* scales, const uint16_t* minimums,
              std::byte* out);

// Columns [c0, c0 + n) of row r of a Int8/Int4 matrix as fp32.
void dequantize_row(const WeightMatrix& w, int64_t r, int64_t c0, int64_t n, float* out);
inline void dequantize_row(const WeightMatrix& w, int64_t r, float* out) { dequantize_row(w, r, 0, w.cols, out); }

// Reconstruction error of a packed matrix against the fp32 original.
QuantError quantization_error(const float* w, const WeightMatrix& q);

}  // namespace phinfer::kernels
