#pragma once
// Machine probes for `phinfer bench`: the roofline the kernels are measured against.
#include "kernels/thread_pool.h"

namespace phinfer::kernels {

// Memory read bandwidth in GB/s (1e9 bytes/s) with every pool thread reading its own slice of a
// 1 GiB buffer (transparent huge pages requested) through 8 independent streams, using the
// widest vector loads of the active ISA. Best of several trials.
double measure_read_bandwidth_gbs(ThreadPool& pool);

// Peak int8 dot-product rate in GOP/s (1 multiply-add = 2 ops) over all pool threads: 16
// independent accumulator chains of the active ISA's int8 dot product (zmm / ymm vpdpbusd, or
// vpmaddubsw + vpmaddwd + vpaddd on AVX2; a plain loop on scalar; on AMX, 4 independent tile
// products, the tile unit's peak). Best of several trials.
double measure_int8_peak_gops(ThreadPool& pool);

}  // namespace phinfer::kernels
