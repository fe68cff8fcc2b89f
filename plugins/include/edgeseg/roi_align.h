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

// Samples per bin axis, adaptive or given, are capped here: torchvision's adaptive count grows with
// the box (ceil(roi size / output size)), so one giant box costs unbounded time; past the cap a bin
// averages kMaxRoISamples² evenly spaced samples instead (differs from torchvision only for RoIs
// wider or taller than 64 × the output size, in feature-map pixels).
constexpr int kMaxRoISamples = 64;

// RoIAlign's bilinear taps: clamped into the plane, invalid (all weights 0) only beyond one pixel
// outside (and for NaN). idx are offsets into an h×w plane.
ES_HD void bilinear_clamped_taps(int h, int w, float y, float x, int idx[4], float wt[4])
{
    if (!(y >= -1.f && y <= h && x >= -1.f && x <= w))
    {
        idx[0] = idx[1] = idx[2] = idx[3] = 0;
        wt[0] = wt[1] = wt[2] = wt[3] = 0.f;
        return;
    }
    y = y <= 0.f ? 0.f : y;
    x = x <= 0.f ? 0.f : x;
    int y0 = static_cast<int>(y), x0 = static_cast<int>(x), y1, x1;
    if (y0 >= h - 1) { y1 = y0 = h - 1; y = static_cast<float>(y0); } else { y1 = y0 + 1; }
    if (x0 >= w - 1) { x1 = x0 = w - 1; x = static_cast<float>(x0); } else { x1 = x0 + 1; }
    float const ly = y - y0, lx = x - x0, hy = 1.f - ly, hx = 1.f - lx;
    idx[0] = y0 * w + x0;
    idx[1] = y0 * w + x1;
    idx[2] = y1 * w + x0;
    idx[3] = y1 * w + x1;
    wt[0] = hy * hx;
    wt[1] = hy * lx;
    wt[2] = ly * hx;
    wt[3] = ly * lx;
}

// A box's sampling grid: where bin (0, 0) starts, the bin size, samples per bin and their count.
// valid = false (a non-finite coordinate or scale): the RoI's output is zeros in every implementation.
struct RoIGrid
{
    float start_y, start_x, bin_h, bin_w, count;
    int grid_h, grid_w;
    bool valid;
};

// Samples along one bin axis: the given ratio, else ceil(extent / bins); in [0, kMaxRoISamples].
ES_HD int roi_samples(int sampling_ratio, float extent, int bins)
{
    float const s = sampling_ratio > 0 ? static_cast<float>(sampling_ratio) : ceilf(extent / bins);
    return !(s > 0.f) ? 0 : (s < kMaxRoISamples ? static_cast<int>(s) : kMaxRoISamples);
}

ES_HD RoIGrid roi_grid(float x1, float y1, float x2, float y2, RoIAlignParams const& p)
{
    float const offset = p.aligned ? 0.5f : 0.f;
    RoIGrid g;
    g.start_x = x1 * p.spatial_scale - offset;
    g.start_y = y1 * p.spatial_scale - offset;
    float rw = x2 * p.spatial_scale - offset - g.start_x, rh = y2 * p.spatial_scale - offset - g.start_y;
    g.valid = finite(g.start_x) && finite(g.start_y) && finite(rw) && finite(rh); // before the clamp hides a NaN
    if (!p.aligned)
    {
        rw = rw > 1.f ? rw : 1.f;
        rh = rh > 1.f ? rh : 1.f;
    }
    if (!g.valid)
        rw = rh = 0.f;
    g.bin_h = rh / p.out_h;
    g.bin_w = rw / p.out_w;
    g.grid_h = g.valid ? roi_samples(p.sampling_ratio, rh, p.out_h) : 0;
    g.grid_w = g.valid ? roi_samples(p.sampling_ratio, rw, p.out_w) : 0;
    g.count = static_cast<float>(g.grid_h * g.grid_w > 1 ? g.grid_h * g.grid_w : 1);
    return g;
}

// Sample (iy, ix) of bin (py, px): its position.
ES_HD float roi_sample_y(RoIGrid const& g, int py, int iy) { return g.start_y + py * g.bin_h + (iy + .5f) * g.bin_h / g.grid_h; }
ES_HD float roi_sample_x(RoIGrid const& g, int px, int ix) { return g.start_x + px * g.bin_w + (ix + .5f) * g.bin_w / g.grid_w; }

// One output value: bin (py, px) of the box (x1, y1, x2, y2) over one h×w channel plane. (The CPU
// launcher computes the same taps once per bin and reuses them across channels.)
template <typename T>
ES_HD float roi_align_bin(T const* plane, int h, int w, float x1, float y1, float x2, float y2, int py, int px,
    RoIAlignParams const& p)
{
    RoIGrid const g = roi_grid(x1, y1, x2, y2, p);
    float sum = 0.f;
    for (int iy = 0; iy < g.grid_h; ++iy)
    {
        float const y = roi_sample_y(g, py, iy);
        for (int ix = 0; ix < g.grid_w; ++ix)
        {
            int idx[4];
            float wt[4];
            bilinear_clamped_taps(h, w, y, roi_sample_x(g, px, ix), idx, wt);
            sum += wt[0] * to_float(plane[idx[0]]) + wt[1] * to_float(plane[idx[1]]) + wt[2] * to_float(plane[idx[2]])
                + wt[3] * to_float(plane[idx[3]]);
        }
    }
    return sum / g.count;
}

// Whether a RoI's batch index names an image; a RoI that does not gets zeros (every implementation).
ES_HD bool roi_batch_valid(int64_t b, int64_t n) { return b >= 0 && b < n; }

// FPN level (0 = the finest level given) of a box in image coordinates.
ES_HD int fpn_level(float x1, float y1, float x2, float y2, float canonical_scale, int canonical_level,
    int first_level, int num_levels)
{
    float area = (x2 - x1) * (y2 - y1);
    area = area > 0.f && finite(area) ? area : 0.f; // NaN and inf land on the first level
    int const lvl = static_cast<int>(floorf(canonical_level + log2f(sqrtf(area) / canonical_scale + 1e-8f) + 1e-6f));
    return clamp_int(lvl, first_level, first_level + num_levels - 1) - first_level;
}

} // namespace edgeseg
