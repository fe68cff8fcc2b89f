// The CUDA launchers: thin kernels around the math cores. T is float or __half (I/O); arithmetic in
// float. Each returns the launch's cudaError_t. Shared by the TensorRT plugins and libedgeseg_cuda
// (the C ABI that scripts/gpu_check.sh drives from PyTorch).
#pragma once
#include <cstddef>
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

// EdgeSegPanopticPaste's scratch memory (the plugin's workspace, the C ABI's `workspace`): per instance in
// score order its area and kept-pixel counts, per stuff class its free-pixel count (64-bit; the launcher
// zeroes these, the first `zeroed` bytes), then the next segment id before each instance (r + 1), the score
// order (r) and each stuff class's segment id. Each part starts on a 256-byte boundary. Returns the bytes
// needed; with `memory`, fills `out` with the parts' addresses. The one layout: host tests check it.
struct PanopticScratch
{
    unsigned long long *area, *kept, *stuff_area;
    int32_t *base, *order, *stuff_id;
    size_t zeroed;
};

inline size_t panoptic_scratch(int64_t r, int64_t stuff, void* memory = nullptr, PanopticScratch* out = nullptr)
{
    size_t end = 0;
    auto take = [&end](int64_t count, size_t size) {
        size_t const at = end;
        end += (static_cast<size_t>(count) * size + 255) / 256 * 256;
        return at;
    };
    size_t const area = take(r, 8), kept = take(r, 8), stuff_area = take(stuff, 8), zeroed = end;
    size_t const base = take(r + 1, 4), order = take(r, 4), stuff_id = take(stuff, 4);
    if (memory != nullptr && out != nullptr)
    {
        char* m = static_cast<char*>(memory);
        out->area = reinterpret_cast<unsigned long long*>(m + area);
        out->kept = reinterpret_cast<unsigned long long*>(m + kept);
        out->stuff_area = reinterpret_cast<unsigned long long*>(m + stuff_area);
        out->base = reinterpret_cast<int32_t*>(m + base);
        out->order = reinterpret_cast<int32_t*>(m + order);
        out->stuff_id = reinterpret_cast<int32_t*>(m + stuff_id);
        out->zeroed = zeroed;
    }
    return end;
}

// One image, pixel-parallel over many blocks: a rank kernel orders the instances by score; then one launch
// per instance in that order decides the previous instance (the math core's accept rule on its counts),
// paints its free pixels and counts the next one's area and free pixels (block sums, one atomic per block);
// then stuff: a free-pixel histogram, the segment ids in class order, the labelling. Same arithmetic and
// results as the CPU launcher. segments: (r + num_classes − num_thing_classes)×5. workspace:
// panoptic_scratch(r, num_classes − num_thing_classes) bytes.
cudaError_t panoptic_paste(int32_t const* semantic, int h, int w, float const* masks, float const* scores,
    int32_t const* classes, int r, int num_classes, int num_thing_classes, float overlap_threshold,
    int64_t min_stuff_area, float score_threshold, int32_t* ids, float* segments, void* workspace, cudaStream_t stream);

// EdgeSegPanopticMerge: panoptic_paste's launches with each instance read only inside its box (the math core's
// merge_instance / merge_in_instance): masks R×mh×mw (mask_rule 0; unused with 1), boxes R×4. Same workspace.
cudaError_t panoptic_merge(int32_t const* semantic, int h, int w, float const* masks, int mh, int mw, float const* boxes,
    float const* scores, int32_t const* classes, int r, int mask_rule, int num_classes, int num_thing_classes,
    float overlap_threshold, int64_t min_stuff_area, float score_threshold, int32_t* ids, float* segments, void* workspace,
    cudaStream_t stream);

} // namespace cuda
} // namespace edgeseg
