// The packed Int8/Int4 layout of kernels/quant.h, read from a shader: where a weight's code, its
// block's scale and minimum are. Push-constant block QuantLayout mirrors kernels::QuantLayout.
struct QuantLayout {
  uint bits;          // 8 or 4
  uint symmetric;     // 1: w = d (v - z); 0: w = d v + m
  uint block;         // B: columns per block
  uint n_blocks;      // nb
  uint block_chunks;  // cb: chunks of a full block
  uint tile_bytes;
  uint quant_bytes;   // 64 nc
  uint scale_bytes;   // P(32 ns)
  uint per_row_scale; // 1 when ns == 1 (one scale per row)
};

uint chunk_cols(QuantLayout L) { return 32u / L.bits; }
uint zero_point(QuantLayout L) { return L.symmetric != 0u ? (L.bits == 4u ? 8u : 128u) : 0u; }
uint block_len(QuantLayout L, uint cols, uint j) { return j + 1u < L.n_blocks ? L.block : cols - j * L.block; }
uint block_n_chunks(QuantLayout L, uint cols, uint j) { return (block_len(L, cols, j) + chunk_cols(L) - 1u) / chunk_cols(L); }

// The dequantized weight (row, col) of a packed matrix at addr.
float dequantize(uint64_t addr, QuantLayout L, uint row, uint col) {
  const uint tile = row / 16u, r = row % 16u;
  const uint64_t base = addr + uint64_t(tile) * uint64_t(L.tile_bytes);
  const uint j = col / L.block, in_block = col - j * L.block;
  const uint cw = chunk_cols(L);
  const uint k = j * L.block_chunks + in_block / cw, o = in_block % cw;
  const uint word = Words(base + uint64_t(k * 64u + 4u * r)).v[0];
  uint v;
  if (L.bits == 8u) v = (word >> (8u * o)) & 0xFFu;
  else v = o < 4u ? (word >> (8u * o)) & 0xFu : (word >> (8u * (o - 4u) + 4u)) & 0xFu;
  const uint si = (L.per_row_scale != 0u ? 0u : j) * 16u + r;
  const float d = half_at(Words(base + uint64_t(L.quant_bytes)), si);
  if (L.symmetric != 0u) return d * float(int(v) - int(zero_point(L)));
  const float m = half_at(Words(base + uint64_t(L.quant_bytes + L.scale_bytes)), si);
  return fma(d, float(v), m);
}
