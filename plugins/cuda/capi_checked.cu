// libedgeseg_cuda's checked entry points (scripts/gpu_check.sh): the CPU launchers' signatures (es_tensor,
// plugins/cpu/edgeseg_cpu.h) over device pointers, float32. Each runs the op's check from validate.h — the
// one a TensorRT plugin runs at enqueue — before any CUDA call, then the CUDA launcher. So the GPU check
// drives hostile shapes through the same refusal the plugins use, and a refused call never launches.
// Returns 0; -1 for a refusal (es_cuda_last_error() names the input or field); else the launch's cudaError_t.
// An output whose data is NULL is a query: its rank and dims are filled in, nothing is launched.
#include "cuda/checked.h"
#include "cuda/launchers.h"

using namespace edgeseg;
using checked::in;
using checked::settle;
using checked::shape_of;

extern "C" char const* es_cuda_last_error(void) { return checked::last_error.c_str(); }

extern "C" int es_cuda_checked_roi_align(es_tensor const* x, es_tensor const* rois, es_tensor const* batch, int out_h,
    int out_w, float spatial_scale, int sampling_ratio, int aligned, es_tensor* out, void* stream)
{
    RoIAlignParams const p{out_h, out_w, sampling_ratio, spatial_scale, aligned};
    Shape want;
    int const step = settle(validate_roi_align(shape_of(x), shape_of(rois), shape_of(batch), p, want),
        "EdgeSegRoIAlign", out, want);
    if (step == 0 && !checked::has_data({x, rois, batch}))
        return -1;
    if (step != 0)
        return checked::status(step, cudaSuccess);
    // Dimensions fit int after validation (every tensor is below 2^31 elements).
    return static_cast<int>(cuda::roi_align(in<float>(x), static_cast<int>(x->dims[0]), static_cast<int>(x->dims[1]),
        static_cast<int>(x->dims[2]), static_cast<int>(x->dims[3]), in<float>(rois), in<int32_t>(batch),
        static_cast<int>(rois->dims[0]), p, static_cast<float*>(out->data), static_cast<cudaStream_t>(stream)));
}

extern "C" int es_cuda_checked_deform_conv2d(es_tensor const* x, es_tensor const* weight, es_tensor const* offset,
    es_tensor const* bias, es_tensor const* mask, int stride_h, int stride_w, int pad_h, int pad_w, int dil_h,
    int dil_w, int groups, int offset_groups, es_tensor* out, void* stream)
{
    DeformConvParams p{0, 0, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups};
    Shape const absent = make_shape({0});
    Shape want;
    bool has_bias = false, has_mask = false;
    Status const st = validate_deform_conv2d(shape_of(x), shape_of(weight), shape_of(offset),
        bias ? shape_of(bias) : absent, mask ? shape_of(mask) : absent, p, want, has_bias, has_mask);
    int const step = settle(st, "EdgeSegDeformConv2d", out, want);
    if (step == 0 && !checked::has_data({x, weight, offset, has_bias ? bias : nullptr, has_mask ? mask : nullptr}))
        return -1;
    if (step != 0)
        return checked::status(step, cudaSuccess);
    return static_cast<int>(cuda::deform_conv2d(in<float>(x), static_cast<int>(x->dims[0]),
        static_cast<int>(x->dims[1]), static_cast<int>(x->dims[2]), static_cast<int>(x->dims[3]), in<float>(weight),
        static_cast<int>(want.d[1]), in<float>(offset), has_mask ? in<float>(mask) : nullptr,
        has_bias ? in<float>(bias) : nullptr, p, static_cast<int>(want.d[2]), static_cast<int>(want.d[3]),
        static_cast<float*>(out->data), static_cast<cudaStream_t>(stream)));
}

extern "C" int es_cuda_checked_dcnv3(es_tensor const* x, es_tensor const* offset, es_tensor const* mask, int kh, int kw,
    int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, int group, float offset_scale,
    es_tensor* out, void* stream)
{
    DCNv3Params const p{kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, group, offset_scale};
    Shape want;
    int const step = settle(validate_dcnv3(shape_of(x), shape_of(offset), shape_of(mask), p, want), "EdgeSegDCNv3",
        out, want);
    if (step == 0 && !checked::has_data({x, offset, mask}))
        return -1;
    if (step != 0)
        return checked::status(step, cudaSuccess);
    return static_cast<int>(cuda::dcnv3(in<float>(x), static_cast<int>(x->dims[0]), static_cast<int>(x->dims[1]),
        static_cast<int>(x->dims[2]), static_cast<int>(x->dims[3]), in<float>(offset), in<float>(mask), p,
        static_cast<int>(want.d[1]), static_cast<int>(want.d[2]), static_cast<float*>(out->data),
        static_cast<cudaStream_t>(stream)));
}

extern "C" int es_cuda_checked_paste_masks(es_tensor const* masks, es_tensor const* boxes, es_tensor const* image,
    float threshold, es_tensor* out, void* stream)
{
    Shape want;
    int const step = settle(validate_paste_masks(shape_of(masks), shape_of(boxes), shape_of(image), threshold, want),
        "EdgeSegPasteMasks", out, want);
    if (step == 0 && !checked::has_data({masks, boxes}))
        return -1;
    if (step != 0)
        return checked::status(step, cudaSuccess);
    return static_cast<int>(cuda::paste_masks(in<float>(masks), static_cast<int>(masks->dims[0]),
        static_cast<int>(masks->dims[1]), static_cast<int>(masks->dims[2]), in<float>(boxes),
        static_cast<int>(want.d[1]), static_cast<int>(want.d[2]), threshold, static_cast<float*>(out->data),
        static_cast<cudaStream_t>(stream)));
}
