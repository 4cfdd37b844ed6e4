#version 460
// The int8/int4 matrix product with the integer dot-product instruction (VK_KHR_shader_integer_dot_product):
// the same integers as the portable path, so the same results, bit for bit.
#extension GL_EXT_spirv_intrinsics : require
#define INTEGER_DOT 1
#include "matmul_quant.glsl"
