#include "kernels/isa.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>

#include "phinfer/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define PHINFER_X86 1
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace phinfer::kernels {
namespace {

struct Features {
  bool avx2 = false, fma = false, f16c = false, avx_vnni = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512vnni = false;
  bool os_ymm = false, os_zmm = false;
  bool amx_tile = false, amx_int8 = false, os_amx = false;
};

// Linux hands out the 8 KiB AMX tile state only to processes that ask for it (once per process;
// threads created later inherit it). Elsewhere AMX stays off.
bool request_amx_state() {
#if defined(__linux__) && defined(__x86_64__)
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

#ifdef PHINFER_X86
uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

Features detect() {
  Features f;
#ifdef PHINFER_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
  f.fma = (c >> 12) & 1;
  f.f16c = (c >> 29) & 1;
  if (osxsave && avx) {
    const uint64_t xcr0 = read_xcr0();
    f.os_ymm = (xcr0 & 0x6) == 0x6;                 // SSE + AVX state
    f.os_zmm = f.os_ymm && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
    f.os_amx = (xcr0 & 0x60000) == 0x60000;          // XTILECFG, XTILEDATA
  }
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = (b >> 5) & 1;
    f.avx512f = (b >> 16) & 1;
    f.avx512dq = (b >> 17) & 1;
    f.avx512bw = (b >> 30) & 1;
    f.avx512vl = (b >> 31) & 1;
    f.avx512vnni = (c >> 11) & 1;
    f.amx_tile = (d >> 24) & 1;
    f.amx_int8 = (d >> 25) & 1;
    const unsigned sub_leaves = a;
    if (sub_leaves >= 1) {
      __cpuid_count(7, 1, a, b, c, d);
      f.avx_vnni = (a >> 4) & 1;
    }
  }
  f.os_amx = f.os_amx && f.amx_tile && f.amx_int8 && request_amx_state();
#endif
  return f;
}

const Features& features() {
  static const Features f = detect();
  return f;
}

std::mutex g_mu;
std::atomic<int> g_isa{-1};

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::AvxVnni: return "avx_vnni";
    case Isa::Avx512: return "avx512";
    case Isa::Amx: return "amx";
  }
  return "?";
}

Isa parse_isa(std::string_view name) {
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Amx})
    if (isa_name(i) == name) return i;
  throw Error("PHINFER_ISA: unknown instruction set '" + std::string(name) +
              "' (expected scalar, avx2, avx_vnni, avx512 or amx)");
}

bool isa_supported(Isa isa) {
  const Features& f = features();
  const bool v3 = f.os_ymm && f.avx2 && f.fma && f.f16c;
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return v3;
    case Isa::AvxVnni: return v3 && f.avx_vnni;
    case Isa::Avx512:
      return v3 && f.os_zmm && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni;
    case Isa::Amx: return isa_supported(Isa::Avx512) && f.os_amx;
  }
  return false;
}

Isa best_isa() {
  for (Isa i : {Isa::Amx, Isa::Avx512, Isa::AvxVnni, Isa::Avx2})
    if (isa_supported(i)) return i;
  return Isa::Scalar;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Amx})
    if (isa_supported(i)) out.push_back(i);
  return out;
}

Isa active_isa() {
  int v = g_isa.load(std::memory_order_acquire);
  if (v >= 0) return static_cast<Isa>(v);
  std::lock_guard<std::mutex> lock(g_mu);
  v = g_isa.load(std::memory_order_relaxed);
  if (v >= 0) return static_cast<Isa>(v);
  Isa isa = best_isa();
  if (const char* env = std::getenv("PHINFER_ISA"); env != nullptr && *env != '\0') {
    isa = parse_isa(env);
    if (!isa_supported(isa))
      throw Error("PHINFER_ISA=" + std::string(env) + ": this CPU (or the operating system) does not support it; "
                  "the best available is '" + std::string(isa_name(best_isa())) + "'");
  }
  g_isa.store(static_cast<int>(isa), std::memory_order_release);
  return isa;
}

std::string_view active_isa_name() { return isa_name(active_isa()); }

void set_isa_for_testing(Isa isa) {
  if (!isa_supported(isa))
    throw Error("instruction set '" + std::string(isa_name(isa)) + "' is not supported by this CPU");
  std::lock_guard<std::mutex> lock(g_mu);
  g_isa.store(static_cast<int>(isa), std::memory_order_release);
}

void reset_isa_for_testing() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_isa.store(-1, std::memory_order_release);
}

}  // namespace phinfer::kernels
