// RoIAlign, average mode, torchvision semantics; and FPN's level assignment for the multi-level form.
#pragma once
#include "common.h"

namespace edgeseg
{

struct RoIAlignParams
{
    int out_h, out_w;
    int sampling_ratio; // <= 0: adaptive, ceil(roi size / output size) samples per bin
    float spatial_scale;
    int aligned; // 1: shift by half a pixel (pixel centres), no minimum RoI size
};

// RoIAlign's bilinear: clamps into the plane, 0 only beyond one pixel outside.
template <typename T>
ES_HD float bilinear_clamped(T const* plane, int h, int w, float y, float x)
{
    if (y < -1.f || y > h || x < -1.f || x > w)
        return 0.f;
    y = y <= 0.f ? 0.f : y;
    x = x <= 0.f ? 0.f : x;
    int y0 = static_cast<int>(y), x0 = static_cast<int>(x), y1, x1;
    if (y0 >= h - 1) { y1 = y0 = h - 1; y = static_cast<float>(y0); } else { y1 = y0 + 1; }
    if (x0 >= w - 1) { x1 = x0 = w - 1; x = static_cast<float>(x0); } else { x1 = x0 + 1; }
    float const ly = y - y0, lx = x - x0, hy = 1.f - ly, hx = 1.f - lx;
    return hy * hx * to_float(plane[y0 * w + x0]) + hy * lx * to_float(plane[y0 * w + x1])
        + ly * hx * to_float(plane[y1 * w + x0]) + ly * lx * to_float(plane[y1 * w + x1]);
}

// One output value: bin (py, px) of the box (x1, y1, x2, y2) over one h×w channel plane.
template <typename T>
ES_HD float roi_align_bin(T const* plane, int h, int w, float x1, float y1, float x2, float y2, int py, int px,
    RoIAlignParams const& p)
{
    float const offset = p.aligned ? 0.5f : 0.f;
    float const sx = x1 * p.spatial_scale - offset, sy = y1 * p.spatial_scale - offset;
    float rw = x2 * p.spatial_scale - offset - sx, rh = y2 * p.spatial_scale - offset - sy;
    if (!p.aligned)
    {
        rw = rw > 1.f ? rw : 1.f;
        rh = rh > 1.f ? rh : 1.f;
    }
    float const bh = rh / p.out_h, bw = rw / p.out_w;
    int const gh = p.sampling_ratio > 0 ? p.sampling_ratio : static_cast<int>(ceilf(rh / p.out_h));
    int const gw = p.sampling_ratio > 0 ? p.sampling_ratio : static_cast<int>(ceilf(rw / p.out_w));
    int const count = gh * gw > 1 ? gh * gw : 1;
    float sum = 0.f;
    for (int iy = 0; iy < gh; ++iy)
    {
        float const y = sy + py * bh + (iy + .5f) * bh / gh;
        for (int ix = 0; ix < gw; ++ix)
        {
            float const x = sx + px * bw + (ix + .5f) * bw / gw;
            sum += bilinear_clamped(plane, h, w, y, x);
        }
    }
    return sum / count;
}

// FPN level (0 = the finest level given) of a box in image coordinates.
ES_HD int fpn_level(float x1, float y1, float x2, float y2, float canonical_scale, int canonical_level,
    int first_level, int num_levels)
{
    float area = (x2 - x1) * (y2 - y1);
    area = area > 0.f ? area : 0.f;
    int const lvl = static_cast<int>(floorf(canonical_level + log2f(sqrtf(area) / canonical_scale + 1e-8f) + 1e-6f));
    return clamp_int(lvl, first_level, first_level + num_levels - 1) - first_level;
}

} // namespace edgeseg
