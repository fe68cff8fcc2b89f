// CUDA launchers of mask pasting (one thread per image pixel of each mask) and of the panoptic head
// (one block: instances are sequential by definition, pixels parallel).
#include <cuda_fp16.h>

#include "cuda/launchers.h"
#include "edgeseg/paste.h"

namespace edgeseg
{
namespace cuda
{

template <typename T>
__global__ void paste_kernel(T const* masks, int r, int mh, int mw, float const* boxes, int h, int w, float threshold, T* out)
{
    int64_t const total = static_cast<int64_t>(r) * h * w;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int const px = i % w, py = (i / w) % h;
        int64_t const j = i / w / h;
        float const* box = boxes + j * 4;
        PasteGrid const g = paste_grid(box[0], box[1], box[2], box[3], mh, mw);
        out[i] = static_cast<T>(paste_pixel(masks + j * mh * mw, mh, mw, g, py, px, threshold));
    }
}

template <typename T>
cudaError_t paste_masks(T const* masks, int r, int mh, int mw, float const* boxes, int h, int w, float threshold, T* out,
    cudaStream_t stream)
{
    int64_t const total = static_cast<int64_t>(r) * h * w;
    if (total == 0)
        return cudaSuccess;
    int64_t const blocks = (total + 255) / 256;
    paste_kernel<<<static_cast<unsigned>(blocks < 2097120 ? blocks : 2097120), 256, 0, stream>>>(
        masks, r, mh, mw, boxes, h, w, threshold, out);
    return cudaGetLastError();
}

constexpr int kPanopticThreads = 1024;
constexpr int kPanopticMaxInstances = 4096;

__global__ void __launch_bounds__(kPanopticThreads) panoptic_kernel(int32_t const* semantic, int h, int w,
    float const* masks, float const* scores, int32_t const* classes, int r, int num_classes, int num_thing_classes,
    float overlap_threshold, int64_t min_stuff_area, float score_threshold, int32_t* ids, float* segments)
{
    __shared__ int order[kPanopticMaxInstances];
    __shared__ unsigned long long area, kept;
    __shared__ int32_t next_id;
    __shared__ bool accept;
    int64_t const hw = static_cast<int64_t>(h) * w;
    int const rows = r + num_classes - num_thing_classes;
    for (int j = threadIdx.x; j < r; j += blockDim.x)
    {
        int rank = 0;
        for (int i = 0; i < r; ++i)
            rank += panoptic_before(scores[i], i, scores[j], j);
        order[rank] = j;
    }
    for (int64_t i = threadIdx.x; i < hw; i += blockDim.x)
        ids[i] = 0;
    for (int i = threadIdx.x; i < rows * 5; i += blockDim.x)
        segments[i] = 0.f;
    if (threadIdx.x == 0)
        next_id = 1;
    __syncthreads();
    for (int s = 0; s < r + num_classes - num_thing_classes; ++s)
    {
        bool const thing = s < r;
        int const j = thing ? order[s] : -1;
        int const cls = thing ? 0 : num_thing_classes + (s - r);
        float const* m = thing ? masks + static_cast<int64_t>(j) * hw : nullptr;
        if (threadIdx.x == 0)
            area = kept = 0;
        __syncthreads();
        unsigned long long my_area = 0, my_kept = 0;
        for (int64_t i = threadIdx.x; i < hw; i += blockDim.x)
        {
            bool const in = thing ? m[i] > .5f : semantic[i] == cls;
            my_area += in;
            my_kept += in && ids[i] == 0;
        }
        atomicAdd(&area, my_area);
        atomicAdd(&kept, my_kept);
        __syncthreads();
        if (threadIdx.x == 0)
        {
            accept = thing ? panoptic_accept(scores[j], area, kept, score_threshold, overlap_threshold)
                           : (kept > 0 && static_cast<int64_t>(kept) >= min_stuff_area);
            if (accept)
            {
                float* row = segments + static_cast<int64_t>(next_id - 1) * 5;
                row[0] = static_cast<float>(next_id);
                row[1] = thing ? static_cast<float>(classes[j]) : static_cast<float>(cls);
                row[2] = thing ? 1.f : 0.f;
                row[3] = static_cast<float>(kept);
                row[4] = thing ? scores[j] : 1.f;
            }
        }
        __syncthreads();
        if (accept)
        {
            for (int64_t i = threadIdx.x; i < hw; i += blockDim.x)
                if ((thing ? m[i] > .5f : semantic[i] == cls) && ids[i] == 0)
                    ids[i] = next_id;
        }
        __syncthreads();
        if (threadIdx.x == 0 && accept)
            ++next_id;
        __syncthreads();
    }
}

cudaError_t panoptic_paste(int32_t const* semantic, int h, int w, float const* masks, float const* scores,
    int32_t const* classes, int r, int num_classes, int num_thing_classes, float overlap_threshold,
    int64_t min_stuff_area, float score_threshold, int32_t* ids, float* segments, cudaStream_t stream)
{
    if (r > kPanopticMaxInstances)
        return cudaErrorInvalidValue;
    panoptic_kernel<<<1, kPanopticThreads, 0, stream>>>(semantic, h, w, masks, scores, classes, r, num_classes,
        num_thing_classes, overlap_threshold, min_stuff_area, score_threshold, ids, segments);
    return cudaGetLastError();
}

template cudaError_t paste_masks<float>(float const*, int, int, int, float const*, int, int, float, float*, cudaStream_t);
template cudaError_t paste_masks<__half>(__half const*, int, int, int, float const*, int, int, float, __half*, cudaStream_t);

} // namespace cuda
} // namespace edgeseg
