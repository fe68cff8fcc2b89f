// CUDA launchers of RoIAlign and its multi-level form: one thread per output value.
#include <cuda_fp16.h>

#include "cuda/launchers.h"

namespace edgeseg
{
namespace cuda
{

template <typename T>
__global__ void roi_align_kernel(T const* input, int n, int c, int h, int w, float const* rois, int32_t const* batch,
    int64_t total, RoIAlignParams p, T* out)
{
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int const px = i % p.out_w, py = (i / p.out_w) % p.out_h, ch = (i / p.out_w / p.out_h) % c;
        int64_t const r = i / p.out_w / p.out_h / c;
        int const b = batch[r];
        float const* box = rois + r * 4;
        // A batch index outside [0, n) gives zeros (roi_batch_valid); a non-finite box too (roi_grid).
        float const v = roi_batch_valid(b, n) ? roi_align_bin(input + (static_cast<int64_t>(b) * c + ch) * h * w, h, w,
            box[0], box[1], box[2], box[3], py, px, p) : 0.f;
        out[i] = static_cast<T>(v);
    }
}

template <typename T>
__global__ void multilevel_kernel(Levels levels, int n, int c, float const* rois, int32_t const* batch, int64_t total,
    int out_h, int out_w, int sampling_ratio, int aligned, float canonical_scale, int canonical_level, int first_level,
    T* out)
{
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int const px = i % out_w, py = (i / out_w) % out_h, ch = (i / out_w / out_h) % c;
        int64_t const r = i / out_w / out_h / c;
        float const x1 = rois[r * 4], y1 = rois[r * 4 + 1], x2 = rois[r * 4 + 2], y2 = rois[r * 4 + 3];
        int const l = fpn_level(x1, y1, x2, y2, canonical_scale, canonical_level, first_level, levels.count);
        RoIAlignParams const p{out_h, out_w, sampling_ratio, levels.scale[l], aligned};
        int const b = batch[r];
        int const h = levels.height[l], w = levels.width[l];
        if (!roi_batch_valid(b, n))
        {
            out[i] = static_cast<T>(0.f);
            continue;
        }
        T const* plane = static_cast<T const*>(levels.data[l]) + (static_cast<int64_t>(b) * c + ch) * h * w;
        out[i] = static_cast<T>(roi_align_bin(plane, h, w, x1, y1, x2, y2, py, px, p));
    }
}

inline int blocks_for(int64_t total, int threads)
{
    int64_t const b = (total + threads - 1) / threads;
    return static_cast<int>(b < 65535 * 32 ? (b > 0 ? b : 1) : 65535 * 32);
}

template <typename T>
cudaError_t roi_align(T const* input, int n, int c, int h, int w, float const* rois, int32_t const* batch, int k,
    RoIAlignParams const& p, T* out, cudaStream_t stream)
{
    int64_t const total = static_cast<int64_t>(k) * c * p.out_h * p.out_w;
    if (total == 0)
        return cudaSuccess;
    roi_align_kernel<<<blocks_for(total, 256), 256, 0, stream>>>(input, n, c, h, w, rois, batch, total, p, out);
    return cudaGetLastError();
}

template <typename T>
cudaError_t multilevel_roi_align(Levels const& levels, int n, int c, float const* rois, int32_t const* batch, int k,
    int out_h, int out_w, int sampling_ratio, int aligned, float canonical_scale, int canonical_level, int first_level,
    T* out, cudaStream_t stream)
{
    int64_t const total = static_cast<int64_t>(k) * c * out_h * out_w;
    if (total == 0)
        return cudaSuccess;
    multilevel_kernel<<<blocks_for(total, 256), 256, 0, stream>>>(levels, n, c, rois, batch, total, out_h, out_w,
        sampling_ratio, aligned, canonical_scale, canonical_level, first_level, out);
    return cudaGetLastError();
}

template cudaError_t roi_align<float>(float const*, int, int, int, int, float const*, int32_t const*, int,
    RoIAlignParams const&, float*, cudaStream_t);
template cudaError_t roi_align<__half>(__half const*, int, int, int, int, float const*, int32_t const*, int,
    RoIAlignParams const&, __half*, cudaStream_t);
template cudaError_t multilevel_roi_align<float>(Levels const&, int, int, float const*, int32_t const*, int, int, int,
    int, int, float, int, int, float*, cudaStream_t);
template cudaError_t multilevel_roi_align<__half>(Levels const&, int, int, float const*, int32_t const*, int, int,
    int, int, int, float, int, int, __half*, cudaStream_t);

} // namespace cuda
} // namespace edgeseg
