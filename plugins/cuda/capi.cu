// libedgeseg_cuda: a C ABI over the CUDA launchers (device pointers, a stream) so that
// scripts/gpu_check.sh can drive the very kernels the TensorRT plugins launch from PyTorch.
// dtype: 0 = float32, 1 = float16. Returns the cudaError_t of the launch (0 = success).
#include <cuda_fp16.h>

#include "cuda/dispatch.h"
#include "cuda/launchers.h"

using namespace edgeseg;


// rois and boxes are float32 whatever dtype is.
extern "C" int es_cuda_roi_align(int dtype, void const* input, int n, int c, int h, int w, void const* rois,
    int32_t const* batch, int k, int out_h, int out_w, int sampling_ratio, float spatial_scale, int aligned, void* out,
    void* stream)
{
    RoIAlignParams const p{out_h, out_w, sampling_ratio, spatial_scale, aligned};
    auto s = static_cast<cudaStream_t>(stream);
    return cuda::with_feature_type(dtype == 1, [&](auto* tag) {
        using T = cuda::feature_t<decltype(tag)>;
        return cuda::roi_align(static_cast<T const*>(input), n, c, h, w, static_cast<float const*>(rois), batch, k, p,
            static_cast<T*>(out), s);
    });
}

extern "C" int es_cuda_deform_conv2d(int dtype, void const* input, int n, int cin, int h, int w, void const* weight,
    int cout, int kh, int kw, void const* offset, void const* mask, void const* bias, int stride_h, int stride_w,
    int pad_h, int pad_w, int dil_h, int dil_w, int groups, int offset_groups, int ho, int wo, void* out, void* stream)
{
    DeformConvParams const p{kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups};
    auto s = static_cast<cudaStream_t>(stream);
    return cuda::with_feature_type(dtype == 1, [&](auto* tag) {
        using C = cuda::feature_t<decltype(tag)> const*;
        return cuda::deform_conv2d(C(input), n, cin, h, w, C(weight), cout, C(offset), C(mask), C(bias), p, ho, wo,
            static_cast<decltype(tag)>(out), s);
    });
}

extern "C" int es_cuda_dcnv3(int dtype, void const* input, int n, int h, int w, int c, void const* offset,
    void const* mask, int kh, int kw, int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, int group,
    float offset_scale, int ho, int wo, void* out, void* stream)
{
    DCNv3Params const p{kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, group, offset_scale};
    auto s = static_cast<cudaStream_t>(stream);
    return cuda::with_feature_type(dtype == 1, [&](auto* tag) {
        using C = cuda::feature_t<decltype(tag)> const*;
        return cuda::dcnv3(C(input), n, h, w, c, C(offset), C(mask), p, ho, wo, static_cast<decltype(tag)>(out), s);
    });
}

extern "C" int es_cuda_paste_masks(int dtype, void const* masks, int r, int mh, int mw, void const* boxes, int h, int w,
    float threshold, void* out, void* stream)
{
    auto s = static_cast<cudaStream_t>(stream);
    return cuda::with_feature_type(dtype == 1, [&](auto* tag) {
        using T = cuda::feature_t<decltype(tag)>;
        return cuda::paste_masks(static_cast<T const*>(masks), r, mh, mw, static_cast<float const*>(boxes), h, w,
            threshold, static_cast<T*>(out), s);
    });
}

// workspace: es_cuda_panoptic_workspace_bytes(r, num_classes, num_thing_classes) bytes of device memory.
extern "C" size_t es_cuda_panoptic_workspace_bytes(int r, int num_classes, int num_thing_classes)
{
    return cuda::panoptic_scratch(r, num_classes - num_thing_classes);
}

extern "C" int es_cuda_panoptic_paste(int32_t const* semantic, int h, int w, float const* masks, float const* scores,
    int32_t const* classes, int r, int num_classes, int num_thing_classes, float overlap_threshold, int64_t min_stuff_area,
    float score_threshold, int32_t* ids, float* segments, void* workspace, void* stream)
{
    return cuda::panoptic_paste(semantic, h, w, masks, scores, classes, r, num_classes, num_thing_classes,
        overlap_threshold, min_stuff_area, score_threshold, ids, segments, workspace, static_cast<cudaStream_t>(stream));
}

// EdgeSegPanopticMerge (the same workspace as es_cuda_panoptic_paste): masks r×mh×mw (mask_rule 0; unused with 1),
// boxes r×4. Device pointers; the caller validates shapes as the plugin does (validate_panoptic_merge).
extern "C" int es_cuda_panoptic_merge(int32_t const* semantic, int h, int w, float const* masks, int mh, int mw,
    float const* boxes, float const* scores, int32_t const* classes, int r, int mask_rule, int num_classes,
    int num_thing_classes, float overlap_threshold, int64_t min_stuff_area, float score_threshold, int32_t* ids,
    float* segments, void* workspace, void* stream)
{
    return cuda::panoptic_merge(semantic, h, w, masks, mh, mw, boxes, scores, classes, r, mask_rule, num_classes,
        num_thing_classes, overlap_threshold, min_stuff_area, score_threshold, ids, segments, workspace,
        static_cast<cudaStream_t>(stream));
}
