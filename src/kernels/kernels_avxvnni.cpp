// AVX-VNNI kernels: the AVX2 code with ymm vpdpbusd ({vex} encoding), compiled for that target
// function by function (#pragma GCC target) so the binary still runs on any x86-64. Standard
// headers come before the target region; the code is in kernels_ymm.inl.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/kernels_impl.h"

PHINFER_TARGET_BEGIN("avx2,fma,f16c,avxvnni")

#define PHINFER_YMM_VNNI 1
#include "kernels/kernels_ymm.inl"
#undef PHINFER_YMM_VNNI

PHINFER_TARGET_END

namespace phinfer::kernels::detail {

const KernelTable& avxvnni_kernels() {
  static const KernelTable t{Isa::AvxVnni, kPanel, false, quantize_token, qgemm, fgemm, dot, axpy, exp_minus, silu_mul,
                             axpy_rows,     dot_rows,     dot_rows_f16, axpy_rows_f16, dot_rows_q8, axpy_rows_q8,
                             dot_rows_multi, axpy_rows_multi};
  return t;
}

}  // namespace phinfer::kernels::detail
