// Deformable convolution v2 (torchvision semantics) and DCNv3 (InternImage): the sampling arithmetic.
// DCNv2 = this im2col step + a GEMM with the weight; DCNv3's core has no weight (the projections
// around it are ordinary linear layers).
#pragma once
#include "common.h"

namespace edgeseg
{

// Output length of a (deformable) convolution along one axis (64-bit: validate.h calls it on unchecked
// sizes; a result below 1 means the kernel does not fit).
ES_HD int64_t conv_output_size(int64_t size, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation)
{
    int64_t const span = size + 2 * pad - (dilation * (kernel - 1) + 1);
    return span < 0 ? 0 : span / stride + 1;
}

struct DeformConvParams
{
    int kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups;
};

// Where kernel point k of output (ho, wo) samples for offset group og: the bilinear taps in one channel
// plane and the modulation (1 without a mask). offset: (2·offset_groups·kh·kw)×Ho×Wo as (dy, dx) pairs;
// mask: (offset_groups·kh·kw)×Ho×Wo or null. Every channel of the offset group shares them.
struct DeformSample
{
    BilinearTaps taps;
    float mask;
};

template <typename T>
ES_HD DeformSample deform_sample(int h, int w, T const* offset, T const* mask, int ho_n, int wo_n, int og, int k,
    int ho, int wo, DeformConvParams const& p)
{
    int const kk = p.kh * p.kw;
    int64_t const plane = static_cast<int64_t>(ho_n) * wo_n;
    int64_t const at = static_cast<int64_t>(ho) * wo_n + wo;
    float const dy = to_float(offset[(static_cast<int64_t>(og) * kk + k) * 2 * plane + at]);
    float const dx = to_float(offset[((static_cast<int64_t>(og) * kk + k) * 2 + 1) * plane + at]);
    float const y = static_cast<float>(ho * p.stride_h - p.pad_h + (k / p.kw) * p.dil_h) + dy;
    float const x = static_cast<float>(wo * p.stride_w - p.pad_w + (k % p.kw) * p.dil_w) + dx;
    return {bilinear_taps(h, w, w, 1, y, x), mask ? to_float(mask[(static_cast<int64_t>(og) * kk + k) * plane + at]) : 1.f};
}

// Column value for input channel c, kernel point k, output (ho, wo) of one image.
template <typename T>
ES_HD float deform_column(T const* image, int channels, int h, int w, T const* offset, T const* mask, int ho_n,
    int wo_n, int c, int k, int ho, int wo, DeformConvParams const& p)
{
    DeformSample const s = deform_sample(h, w, offset, mask, ho_n, wo_n, c / (channels / p.offset_groups), k, ho, wo, p);
    return bilinear_read(image + static_cast<int64_t>(c) * h * w, s.taps) * s.mask;
}

struct DCNv3Params
{
    int kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, group;
    float offset_scale;
};

// One output value of the DCNv3 core, channels-last: image H×W×C, offset Ho×Wo×(G·K·2) as (dx, dy),
// mask Ho×Wo×(G·K) (already softmax-normalised). Channel c of output point (ho, wo).
template <typename T>
ES_HD float dcnv3_point(T const* image, int h, int w, int channels, T const* offset, T const* mask, int wo_n, int ho,
    int wo, int c, DCNv3Params const& p)
{
    int const g = c / (channels / p.group);
    int const kk = p.kh * p.kw;
    int const cy = (p.dil_h * (p.kh - 1)) / 2, cx = (p.dil_w * (p.kw - 1)) / 2;
    float const centre_y = static_cast<float>(ho * p.stride_h - p.pad_h + cy);
    float const centre_x = static_cast<float>(wo * p.stride_w - p.pad_w + cx);
    int64_t const point = static_cast<int64_t>(ho) * wo_n + wo;
    T const* off = offset + (point * p.group + g) * kk * 2;
    T const* mk = mask + (point * p.group + g) * kk;
    float sum = 0.f;
    for (int k = 0; k < kk; ++k)
    {
        float const y = centre_y + ((k / p.kw) * p.dil_h - cy) * p.offset_scale + to_float(off[2 * k + 1]) * p.offset_scale;
        float const x = centre_x + ((k % p.kw) * p.dil_w - cx) * p.offset_scale + to_float(off[2 * k]) * p.offset_scale;
        sum += to_float(mk[k]) * bilinear_zero(image + c, h, w, static_cast<int64_t>(w) * channels, channels, y, x);
    }
    return sum;
}

} // namespace edgeseg
