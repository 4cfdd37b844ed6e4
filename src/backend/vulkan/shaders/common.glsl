// Shared by every shader: buffers are reached through device addresses passed in push constants
// (Vulkan 1.2 buffer device address), so no descriptor sets are needed. Workgroups are 64
// invocations; grids larger than the device allows loop (stride gl_NumWorkGroups).
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

layout(buffer_reference, std430, buffer_reference_align = 4) buffer Floats { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer Words { uint v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer Ints { int v[]; };

// Per row of a forward call: where its sequence's KV cache lives and what it sees.
struct RowInfo {
  uint64_t k_addr;   // keys of layer 0, position 0: [layers][capacity][kv_dim] fp32
  uint64_t v_addr;   // values, same shape
  int position;      // the row's absolute position
  int first_key;     // first visible key (sliding window), <= position
  int capacity;      // positions per layer in the cache buffers
  int pad;
};
layout(buffer_reference, std430, buffer_reference_align = 8) buffer RowInfos { RowInfo v[]; };

// Weight formats (kernels::WeightFormat order).
const uint FORMAT_F32 = 0u, FORMAT_F16 = 1u, FORMAT_BF16 = 2u, FORMAT_INT8 = 3u, FORMAT_INT4 = 4u;

// Element i of a row-major F32/F16/BF16 tensor as float.
float load_float(uint64_t addr, uint format, uint64_t i) {
  if (format == FORMAT_F32) return Floats(addr + i * 4ul).v[0];
  const uint word = Words(addr + (i >> 1) * 4ul).v[0];
  const uint half_bits = (i & 1ul) != 0ul ? word >> 16 : word & 0xFFFFu;
  if (format == FORMAT_F16) return unpackHalf2x16(half_bits).x;
  return uintBitsToFloat(half_bits << 16);  // BF16
}

// fp16 element i of a Words buffer.
float half_at(Words w, uint i) {
  const uint word = w.v[i >> 1];
  return unpackHalf2x16((i & 1u) != 0u ? word >> 16 : word & 0xFFFFu).x;
}

// The exp of kernels (exp_approx): the same polynomial, so attention and SiLU follow the CPU closely.
float exp_approx(float x) {
  const float lo = -86.0, hi = 88.0;
  float v = clamp(x, lo, hi);
  const float n = roundEven(v * 1.44269504088896341);
  float r = fma(n, -0.693359375, v);
  r = fma(n, 2.12194440e-4, r);
  float p = 1.9875691500E-4;
  p = fma(p, r, 1.3981999507E-3);
  p = fma(p, r, 8.3334519073E-3);
  p = fma(p, r, 4.1665795894E-2);
  p = fma(p, r, 1.6666665459E-1);
  p = fma(p, r, 5.0000001201E-1);
  const float y = fma(p, r * r, r) + 1.0;
  const float res = uintBitsToFloat(floatBitsToUint(y) + (uint(int(n)) << 23));
  return x > hi ? uintBitsToFloat(0x7F800000u) : res;
}
