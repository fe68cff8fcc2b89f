// Shared by the CUDA kernels and the CPU loops: one definition of each op's arithmetic.
// Functions here are __host__ __device__ (under nvcc), launch nothing and allocate nothing.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define ES_HD __host__ __device__ __forceinline__
#else
#define ES_HD inline
#endif

namespace edgeseg
{

ES_HD float to_float(float v) { return v; }
#ifdef __CUDACC__
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
#endif

// Finite (not NaN, not ±inf), the same on host and device without relying on either's <cmath>.
ES_HD bool finite(float v) { return v - v == 0.f; }

ES_HD int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Bilinear sample of an h×w plane (row stride `row`, element stride `step`) at pixel-index
// coordinates (y, x), zero padding: each neighbour outside contributes 0 (torchvision's
// deform_conv2d and grid_sample(padding_mode="zeros")).
template <typename T>
ES_HD float bilinear_zero(T const* plane, int h, int w, int64_t row, int64_t step, float y, float x)
{
    if (!(y > -1.f && y < h && x > -1.f && x < w))
        return 0.f;
    int const y0 = static_cast<int>(floorf(y));
    int const x0 = static_cast<int>(floorf(x));
    float const ly = y - y0, lx = x - x0;
    float const hy = 1.f - ly, hx = 1.f - lx;
    float v = 0.f;
    if (y0 >= 0 && x0 >= 0)
        v += hy * hx * to_float(plane[y0 * row + x0 * step]);
    if (y0 >= 0 && x0 + 1 <= w - 1)
        v += hy * lx * to_float(plane[y0 * row + (x0 + 1) * step]);
    if (y0 + 1 <= h - 1 && x0 >= 0)
        v += ly * hx * to_float(plane[(y0 + 1) * row + x0 * step]);
    if (y0 + 1 <= h - 1 && x0 + 1 <= w - 1)
        v += ly * lx * to_float(plane[(y0 + 1) * row + (x0 + 1) * step]);
    return v;
}

} // namespace edgeseg
