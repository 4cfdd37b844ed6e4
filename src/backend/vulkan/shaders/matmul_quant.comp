#version 460
// The portable int8/int4 matrix product: 4-lane integer dot products in plain integer arithmetic.
#include "matmul_quant.glsl"
