#pragma once
// Instruction-set level of the SIMD kernels, chosen at run time.
//
// Levels (each a separate code path; a CPU may support avx512 without avx_vnni or vice versa):
//   scalar    portable C++, the reference every other path must match bit for bit
//   avx2      AVX2 + FMA + F16C (x86-64-v3); int8 dot products with vpmaddubsw/vpmaddwd
//   avx_vnni  avx2 + AVX-VNNI: ymm vpdpbusd ({vex} encoding), 16 ymm registers
//   avx512    AVX-512 F/BW/VL/DQ + AVX512-VNNI (+ FMA, F16C): zmm vpdpbusd
//   amx       avx512 + AMX-TILE/AMX-INT8 (+ the OS's permission for tile state): quantized matmuls of
//             8 or more tokens on the tile unit (tdpbsud); everything else, decode included, is the
//             avx512 code
// Detection uses CPUID and XGETBV (the OS must save the ymm/zmm register state; for AMX, Linux must
// also grant the process the tile data state, which detection requests).
// PHINFER_ISA=scalar|avx2|avx_vnni|avx512|amx forces a path; an unknown name or a path this CPU cannot
// run is a phinfer::Error, raised by the first call to active_isa() (and by every later call).
#include <string_view>
#include <vector>

namespace phinfer::kernels {

enum class Isa { Scalar, Avx2, AvxVnni, Avx512, Amx };

std::string_view isa_name(Isa isa);                // "scalar", "avx2", "avx_vnni", "avx512", "amx"
Isa parse_isa(std::string_view name);              // throws phinfer::Error for an unknown name
bool isa_supported(Isa isa);                       // this CPU and OS can run the path
Isa best_isa();                                    // the fastest supported path
std::vector<Isa> supported_isas();                 // every supported path, scalar first

// The path the kernels use: PHINFER_ISA if set (validated), else best_isa(). Decided once.
Isa active_isa();
std::string_view active_isa_name();

// Forces a path from now on (tests, benchmarks); throws phinfer::Error if it is not supported.
void set_isa_for_testing(Isa isa);
// Forgets the decision so the next active_isa() reads PHINFER_ISA again (tests).
void reset_isa_for_testing();

}  // namespace phinfer::kernels
