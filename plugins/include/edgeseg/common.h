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

// The four neighbours of a bilinear sample at pixel-index coordinates (y, x) of an h×w plane (row stride
// `row`, element stride `step`), zero padding: a neighbour outside contributes 0 and is never read
// (torchvision's deform_conv2d and grid_sample(padding_mode="zeros")). Split from the read so that a
// kernel sampling many channels at one point (DCNv2's columns) computes the taps once.
struct BilinearTaps
{
    int64_t at[4];  // element offsets in the plane
    float weight[4];
    bool inside[4]; // false: not read, contributes 0 (also for NaN/inf coordinates)
};

ES_HD BilinearTaps bilinear_taps(int h, int w, int64_t row, int64_t step, float y, float x)
{
    BilinearTaps t{{0, 0, 0, 0}, {0.f, 0.f, 0.f, 0.f}, {false, false, false, false}};
    if (!(y > -1.f && y < h && x > -1.f && x < w))
        return t;
    int const y0 = static_cast<int>(floorf(y));
    int const x0 = static_cast<int>(floorf(x));
    float const ly = y - y0, lx = x - x0;
    float const hy = 1.f - ly, hx = 1.f - lx;
    t.at[0] = y0 * row + x0 * step;
    t.at[1] = y0 * row + (x0 + 1) * step;
    t.at[2] = (y0 + 1) * row + x0 * step;
    t.at[3] = (y0 + 1) * row + (x0 + 1) * step;
    t.weight[0] = hy * hx;
    t.weight[1] = hy * lx;
    t.weight[2] = ly * hx;
    t.weight[3] = ly * lx;
    t.inside[0] = y0 >= 0 && x0 >= 0;
    t.inside[1] = y0 >= 0 && x0 + 1 <= w - 1;
    t.inside[2] = y0 + 1 <= h - 1 && x0 >= 0;
    t.inside[3] = y0 + 1 <= h - 1 && x0 + 1 <= w - 1;
    return t;
}

template <typename T>
ES_HD float bilinear_read(T const* plane, BilinearTaps const& t)
{
    float v = 0.f;
    for (int i = 0; i < 4; ++i)
        if (t.inside[i])
            v += t.weight[i] * to_float(plane[t.at[i]]);
    return v;
}

template <typename T>
ES_HD float bilinear_zero(T const* plane, int h, int w, int64_t row, int64_t step, float y, float x)
{
    return bilinear_read(plane, bilinear_taps(h, w, row, step, y, x));
}

} // namespace edgeseg
