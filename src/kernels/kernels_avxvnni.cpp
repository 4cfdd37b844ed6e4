// AVX-VNNI kernels: the AVX2 code with ymm vpdpbusd ({vex} encoding), compiled for that target
// function by function (#pragma GCC target) so the binary still runs on any x86-64. Standard
// headers come before the target region; the code is in kernels_ymm.inl.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")
#endif

#define PHINFER_YMM_VNNI 1
#include "kernels/kernels_ymm.inl"
#undef PHINFER_YMM_VNNI

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace phinfer::kernels::detail {

const KernelTable& avxvnni_kernels() {
  static const KernelTable t{Isa::AvxVnni, kPanel, false, quantize_token, qgemm, fgemm, dot, axpy};
  return t;
}

}  // namespace phinfer::kernels::detail
