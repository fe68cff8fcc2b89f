// The CUDA launchers: thin kernels around the math cores. T is float or __half (I/O); arithmetic in
// float. Each returns the launch's cudaError_t. Shared by the TensorRT plugins and libedgeseg_cuda
// (the C ABI that scripts/gpu_check.sh drives from PyTorch).
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#include "edgeseg/deform_conv.h"
#include "edgeseg/roi_align.h"

namespace edgeseg
{
namespace cuda
{

// rois: k×4 (x1, y1, x2, y2), always float32 (half loses a pixel at 2048), batch: k int32. out: k×c×out_h×out_w.
template <typename T>
cudaError_t roi_align(T const* input, int n, int c, int h, int w, float const* rois, int32_t const* batch, int k,
    RoIAlignParams const& p, T* out, cudaStream_t stream);

struct Levels
{
    static constexpr int kMax = 8;
    void const* data[kMax];
    int height[kMax], width[kMax];
    float scale[kMax];
    int count;
};

template <typename T>
cudaError_t multilevel_roi_align(Levels const& levels, int n, int c, float const* rois, int32_t const* batch, int k,
    int out_h, int out_w, int sampling_ratio, int aligned, float canonical_scale, int canonical_level, int first_level,
    T* out, cudaStream_t stream);

// Implicit GEMM: the sampled columns are built tile by tile in shared memory, never in global memory.
template <typename T>
cudaError_t deform_conv2d(T const* input, int n, int cin, int h, int w, T const* weight, int cout, T const* offset,
    T const* mask, T const* bias, DeformConvParams const& p, int ho, int wo, T* out, cudaStream_t stream);

template <typename T>
cudaError_t dcnv3(T const* input, int n, int h, int w, int c, T const* offset, T const* mask, DCNv3Params const& p,
    int ho, int wo, T* out, cudaStream_t stream);

template <typename T>
cudaError_t paste_masks(T const* masks, int r, int mh, int mw, float const* boxes, int h, int w, float threshold, T* out,
    cudaStream_t stream);

// One image; one thread block walks the instances in score order. segments: rows×5.
cudaError_t panoptic_paste(int32_t const* semantic, int h, int w, float const* masks, float const* scores,
    int32_t const* classes, int r, int num_classes, int num_thing_classes, float overlap_threshold,
    int64_t min_stuff_area, float score_threshold, int32_t* ids, float* segments, cudaStream_t stream);

} // namespace cuda
} // namespace edgeseg
