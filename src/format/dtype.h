#pragma once
// Element types of stored tensors, and conversions of the 16-bit float formats.
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace phinfer {

enum class DType { F32, F16, BF16, F64, I8, U8, I16, I32, I64, BOOL };

std::optional<DType> dtype_from_name(std::string_view safetensors_name);  // "BF16" -> BF16
std::string_view dtype_name(DType t);                                     // BF16 -> "BF16"
size_t dtype_size(DType t);

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace phinfer
