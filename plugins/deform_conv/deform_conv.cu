// CUDA launchers of DCNv2 (implicit GEMM: sample a tile of columns into shared memory, multiply it
// with a tile of weights; the columns never touch global memory; the next tile's reads overlap the
// multiply) and of the DCNv3 core.
#include <cuda_fp16.h>

#include "cuda/grid.h"
#include "cuda/launchers.h"

namespace edgeseg
{
namespace cuda
{

namespace tile
{
constexpr int M = 64;  // output channels per block
constexpr int N = 64;  // output pixels per block
constexpr int K = 16;  // reduction step (input channel × kernel point)
constexpr int threads = 256; // each computes a 4×4 patch of the 64×64 tile
} // namespace tile
constexpr int kWsPad = 4;     // floats of padding per weight-tile row (see deform_conv_kernel)

template <typename T>
__global__ void __launch_bounds__(tile::threads) deform_conv_kernel(T const* input, int cin, int h, int w,
    T const* weight, int cout, T const* offset, T const* mask, T const* bias, DeformConvParams p, int n, int ho, int wo,
    T* out)
{
    // Shared-memory banks: the weight tile is stored transposed (consecutive threads walk rk, the global
    // layout's contiguous axis), so its rows are padded by 4 floats: rows rk and rk + 1 start 4 banks
    // apart, a warp's store is at most 2-way conflicted (was 16-way at a row of 64). Rows stay 16-byte
    // aligned, so both tiles are read as float4: a quarter-warp's 8 float4 reads hit 32 distinct banks.
    __shared__ __align__(16) float ws[tile::K][tile::M + kWsPad];
    __shared__ __align__(16) float cs[tile::K][tile::N];
    int const groups = p.groups;
    int const cpg = cin / groups, opg = cout / groups, kk = p.kh * p.kw;
    int const cpo = cin / p.offset_groups; // channels per offset group
    int const reduce = cpg * kk;
    int64_t const plane = static_cast<int64_t>(ho) * wo;
    int64_t const l0 = static_cast<int64_t>(blockIdx.x) * tile::N;
    int const tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    // A reduction step is K channels at one kernel point k, so a thread samples one output pixel (nn) for
    // kCols channels at one point: the offsets, the mask and the bilinear taps are computed once per step
    // (and offset group) and each channel costs four reads.
    constexpr int kCols = tile::K * tile::N / tile::threads;
    int const nn = tid % tile::N, rq = tid / tile::N * kCols;
    int64_t const l = l0 + nn;
    bool const pixel = l < plane;
    int const oy = pixel ? static_cast<int>(l / wo) : 0, ox = pixel ? static_cast<int>(l % wo) : 0;
    int const chunks = (cpg + tile::K - 1) / tile::K, steps = kk * chunks;
    // gridDim.y and gridDim.z are capped at 65,535 (grid.h): walk the (image, group) pairs and the channel
    // tiles beyond them with grid strides. The bounds are uniform over the block (__syncthreads is safe).
    int64_t const pairs = static_cast<int64_t>(n) * groups;
    for (int64_t bg = blockIdx.z; bg < pairs; bg += gridDim.z)
    {
        for (int64_t m0 = int64_t{blockIdx.y} * tile::M; m0 < opg; m0 += int64_t{gridDim.y} * tile::M)
        {
            int const b = static_cast<int>(bg / groups), g = static_cast<int>(bg % groups);
            T const* img = input + static_cast<int64_t>(b) * cin * h * w;
            T const* off = offset + static_cast<int64_t>(b) * 2 * p.offset_groups * kk * plane;
            T const* msk = mask ? mask + static_cast<int64_t>(b) * p.offset_groups * kk * plane : nullptr;
            // Step s = (channel chunk, kernel point k), k inner so that a block's weight reads (c0..c0+K, all k)
            // stay in L1: read its weights and column values into registers, so that the next step's global
            // reads are in flight while this step multiplies out of shared memory.
            constexpr int kWeights = tile::K * tile::M / tile::threads;
            T const* wbase = weight + (static_cast<int64_t>(g) * opg + m0 + tid / tile::K) * reduce + (tid % tile::K) * kk;
            int const wc = tid % tile::K; // this thread's weight-tile channel within the chunk
            float wv[kWeights], cv[kCols];
            auto fetch = [&](int s) {
                int const k = s % kk, c0 = (s / kk) * tile::K;
#pragma unroll
                for (int i = 0; i < kWeights; ++i)
                {
                    bool const ok = m0 + tid / tile::K + i * (tile::threads / tile::K) < opg && c0 + wc < cpg;
                    wv[i] = ok ? to_float(wbase[static_cast<int64_t>(i) * (tile::threads / tile::K) * reduce + c0 * kk + k]) : 0.f;
                }
                // One sampling point per offset group: usually one per step (offset_groups 1, or chunks inside a group).
                int const c = c0 + rq, ch = g * cpg + c;
                T const* plane = img + static_cast<int64_t>(ch) * h * w;
                int og = ch / cpo;
                DeformSample smp{};
                if (pixel)
                    smp = deform_sample(h, w, off, msk, ho, wo, og, k, oy, ox, p);
#pragma unroll
                for (int j = 0; j < kCols; ++j, plane += static_cast<int64_t>(h) * w)
                {
                    float v = 0.f;
                    if (pixel && c + j < cpg)
                    {
                        if ((ch + j) / cpo != og)
                        {
                            og = (ch + j) / cpo;
                            smp = deform_sample(h, w, off, msk, ho, wo, og, k, oy, ox, p);
                        }
                        v = bilinear_read(plane, smp.taps) * smp.mask;
                    }
                    cv[j] = v;
                }
            };
            float acc[4][4] = {};
            fetch(0);
            for (int s = 0; s < steps; ++s)
            {
#pragma unroll
                for (int i = 0; i < kWeights; ++i)
                {
                    int const e = tid + i * tile::threads;
                    ws[e % tile::K][e / tile::K] = wv[i];
                }
#pragma unroll
                for (int j = 0; j < kCols; ++j)
                    cs[rq + j][nn] = cv[j];
                __syncthreads();
                if (s + 1 < steps)
                    fetch(s + 1);
#pragma unroll
                for (int rk = 0; rk < tile::K; ++rk)
                {
                    float4 const a4 = *reinterpret_cast<float4 const*>(&ws[rk][ty * 4]);
                    float4 const c4 = *reinterpret_cast<float4 const*>(&cs[rk][tx * 4]);
                    float const a[4] = {a4.x, a4.y, a4.z, a4.w}, c[4] = {c4.x, c4.y, c4.z, c4.w};
#pragma unroll
                    for (int i = 0; i < 4; ++i)
#pragma unroll
                        for (int j = 0; j < 4; ++j)
                            acc[i][j] += a[i] * c[j];
                }
                __syncthreads();
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
            {
                int const o = static_cast<int>(m0 + ty * 4 + i);
                if (o >= opg)
                    continue;
                int const oc = g * opg + o;
                float const add = bias ? to_float(bias[oc]) : 0.f;
#pragma unroll
                for (int j = 0; j < 4; ++j)
                {
                    int64_t const lo = l0 + tx * 4 + j;
                    if (lo < plane)
                        out[(static_cast<int64_t>(b) * cout + oc) * plane + lo] = static_cast<T>(acc[i][j] + add);
                }
            }
        }
    }
}

template <typename T>
__global__ void dcnv3_kernel(T const* input, int n, int h, int w, int c, T const* offset, T const* mask, DCNv3Params p,
    int ho, int wo, T* out)
{
    int64_t const total = static_cast<int64_t>(n) * ho * wo * c;
    int64_t const gk = static_cast<int64_t>(p.group) * p.kh * p.kw;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int const ch = i % c, x = (i / c) % wo, y = (i / c / wo) % ho;
        int64_t const b = i / c / wo / ho;
        out[i] = static_cast<T>(dcnv3_point(input + b * h * w * c, h, w, c, offset + b * ho * wo * gk * 2,
            mask + b * ho * wo * gk, wo, y, x, ch, p));
    }
}

template <typename T>
cudaError_t deform_conv2d(T const* input, int n, int cin, int h, int w, T const* weight, int cout, T const* offset,
    T const* mask, T const* bias, DeformConvParams const& p, int ho, int wo, T* out, cudaStream_t stream)
{
    int64_t const plane = static_cast<int64_t>(ho) * wo;
    if (n == 0 || plane == 0 || cout == 0)
        return cudaSuccess;
    Grid3 const g = deform_conv_grid(n, p.groups, cout, plane, tile::M, tile::N);
    deform_conv_kernel<<<dim3(g.x, g.y, g.z), tile::threads, 0, stream>>>(input, cin, h, w, weight, cout, offset, mask,
        bias, p, n, ho, wo, out);
    return cudaGetLastError();
}

template <typename T>
cudaError_t dcnv3(T const* input, int n, int h, int w, int c, T const* offset, T const* mask, DCNv3Params const& p,
    int ho, int wo, T* out, cudaStream_t stream)
{
    int64_t const total = static_cast<int64_t>(n) * ho * wo * c;
    if (total == 0)
        return cudaSuccess;
    int64_t const blocks = (total + 255) / 256;
    dcnv3_kernel<<<static_cast<unsigned>(blocks < 2097120 ? blocks : 2097120), 256, 0, stream>>>(
        input, n, h, w, c, offset, mask, p, ho, wo, out);
    return cudaGetLastError();
}

template cudaError_t deform_conv2d<float>(float const*, int, int, int, int, float const*, int, float const*,
    float const*, float const*, DeformConvParams const&, int, int, float*, cudaStream_t);
template cudaError_t deform_conv2d<__half>(__half const*, int, int, int, int, __half const*, int, __half const*,
    __half const*, __half const*, DeformConvParams const&, int, int, __half*, cudaStream_t);
template cudaError_t dcnv3<float>(float const*, int, int, int, int, float const*, float const*, DCNv3Params const&,
    int, int, float*, cudaStream_t);
template cudaError_t dcnv3<__half>(__half const*, int, int, int, int, __half const*, __half const*,
    DCNv3Params const&, int, int, __half*, cudaStream_t);

} // namespace cuda
} // namespace edgeseg
