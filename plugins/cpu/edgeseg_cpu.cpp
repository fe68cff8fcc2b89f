// CPU launchers: thin loops (OpenMP over independent outputs) around the math cores.
#include "edgeseg_cpu.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "edgeseg/deform_conv.h"
#include "edgeseg/paste.h"
#include "edgeseg/roi_align.h"

namespace
{
thread_local std::string last_error;

int refuse(std::string const& what)
{
    last_error = what;
    return -1;
}

bool positive(std::initializer_list<int> values)
{
    return std::all_of(values.begin(), values.end(), [](int v) { return v > 0; });
}
} // namespace

extern "C" char const* es_last_error(void) { return last_error.c_str(); }

namespace
{
// RoIAlign over all channels of one bin: the taps of its samples are computed once (the math core's
// arithmetic, in the same order) and applied to every channel plane.
void roi_align_bins(float const* image, int c, int h, int w, float const* roi, int64_t out_rows, int out_h, int out_w,
    edgeseg::RoIAlignParams const& p, float* out, std::vector<int>& idx, std::vector<float>& wt)
{
    edgeseg::RoIGrid const g = edgeseg::roi_grid(roi[1], roi[2], roi[3], roi[4], p);
    int const samples = (g.grid_h > 0 ? g.grid_h : 0) * (g.grid_w > 0 ? g.grid_w : 0);
    idx.resize(static_cast<size_t>(samples) * 4);
    wt.resize(static_cast<size_t>(samples) * 4);
    int64_t const plane = static_cast<int64_t>(h) * w;
    for (int py = 0; py < out_h; ++py)
        for (int px = 0; px < out_w; ++px)
        {
            int s = 0;
            for (int iy = 0; iy < g.grid_h; ++iy)
            {
                float const y = edgeseg::roi_sample_y(g, py, iy);
                for (int ix = 0; ix < g.grid_w; ++ix, ++s)
                    edgeseg::bilinear_clamped_taps(h, w, y, edgeseg::roi_sample_x(g, px, ix), &idx[s * 4], &wt[s * 4]);
            }
            for (int ch = 0; ch < c; ++ch)
            {
                float const* v = image + ch * plane;
                float sum = 0.f;
                for (int k = 0; k < samples; ++k)
                {
                    int const* i = &idx[k * 4];
                    float const* t = &wt[k * 4];
                    sum += t[0] * v[i[0]] + t[1] * v[i[1]] + t[2] * v[i[2]] + t[3] * v[i[3]];
                }
                out[ch * out_rows + py * out_w + px] = sum / g.count;
            }
        }
}
} // namespace

extern "C" int es_roi_align(float const* input, int n, int c, int h, int w, float const* rois, int k, int out_h,
    int out_w, float spatial_scale, int sampling_ratio, int aligned, float* out)
{
    // One level: every box is assigned to it (fpn_level clamps to the levels there are).
    return es_multilevel_roi_align(&input, &h, &w, 1, n, c, rois, k, out_h, out_w, &spatial_scale, sampling_ratio,
        aligned, 224.f, 4, 0, out);
}

extern "C" int es_multilevel_roi_align(float const* const* features, int const* heights, int const* widths, int levels,
    int n, int c, float const* rois, int k, int out_h, int out_w, float const* spatial_scales, int sampling_ratio,
    int aligned, float canonical_scale, int canonical_level, int first_level, float* out)
{
    if (levels <= 0 || !positive({n, c, out_h, out_w}) || k < 0)
        return refuse("roi_align: sizes must be positive");
    for (int l = 0; l < levels; ++l)
        if (!positive({heights[l], widths[l]}))
            return refuse("roi_align: every level needs a positive size");
    int64_t const bins = static_cast<int64_t>(out_h) * out_w;
#pragma omp parallel
    {
        std::vector<int> idx;
        std::vector<float> wt;
#pragma omp for schedule(dynamic, 4)
        for (int r = 0; r < k; ++r)
        {
            float const* roi = rois + static_cast<int64_t>(r) * 5;
            int const l = edgeseg::fpn_level(roi[1], roi[2], roi[3], roi[4], canonical_scale, canonical_level, first_level, levels);
            edgeseg::RoIAlignParams const p{out_h, out_w, sampling_ratio, spatial_scales[l], aligned};
            int const b = edgeseg::clamp_int(static_cast<int>(roi[0]), 0, n - 1);
            int64_t const plane = static_cast<int64_t>(heights[l]) * widths[l];
            roi_align_bins(features[l] + b * c * plane, c, heights[l], widths[l], roi, bins, out_h, out_w, p,
                out + static_cast<int64_t>(r) * c * bins, idx, wt);
        }
    }
    return 0;
}

extern "C" int es_deform_conv2d(float const* input, int n, int cin, int h, int w, float const* weight, int cout, int kh,
    int kw, float const* offset, float const* mask, float const* bias, int stride_h, int stride_w, int pad_h, int pad_w,
    int dil_h, int dil_w, int groups, int offset_groups, float* out)
{
    if (!positive({n, cin, h, w, cout, kh, kw, stride_h, stride_w, dil_h, dil_w, groups, offset_groups}) || pad_h < 0 || pad_w < 0)
        return refuse("deform_conv2d: sizes, strides, dilations and groups must be positive, padding >= 0");
    if (cin % groups || cout % groups || cin % offset_groups)
        return refuse("deform_conv2d: channels must divide by groups and offset_groups");
    int const ho = edgeseg::conv_output_size(h, kh, stride_h, pad_h, dil_h);
    int const wo = edgeseg::conv_output_size(w, kw, stride_w, pad_w, dil_w);
    if (ho <= 0 || wo <= 0)
        return refuse("deform_conv2d: the kernel does not fit the padded input");
    edgeseg::DeformConvParams const p{kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups};
    int const kk = kh * kw;
    int64_t const plane = static_cast<int64_t>(ho) * wo;
    int64_t const rows = static_cast<int64_t>(cin) * kk;
    std::vector<float> cols(static_cast<size_t>(rows * plane));
    int const cpg = cin / groups, opg = cout / groups;
    for (int b = 0; b < n; ++b)
    {
        float const* img = input + static_cast<int64_t>(b) * cin * h * w;
        float const* off = offset + static_cast<int64_t>(b) * 2 * offset_groups * kk * plane;
        float const* msk = mask ? mask + static_cast<int64_t>(b) * offset_groups * kk * plane : nullptr;
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < rows; ++row)
        {
            int const ch = static_cast<int>(row / kk), k = static_cast<int>(row % kk);
            float* dst = cols.data() + row * plane;
            for (int ho_i = 0; ho_i < ho; ++ho_i)
                for (int wo_i = 0; wo_i < wo; ++wo_i)
                    dst[ho_i * wo + wo_i] = edgeseg::deform_column(img, cin, h, w, off, msk, ho, wo, ch, k, ho_i, wo_i, p);
        }
        // out[o, l] = bias[o] + Σ_r weight[o, r] · cols[g·cpg·kk + r, l] within each group, in register-
        // and cache-sized blocks (8 output channels × 64 pixels): each column row is read once per block.
        float* dst = out + static_cast<int64_t>(b) * cout * plane;
        int64_t const reduce = static_cast<int64_t>(cpg) * kk;
        constexpr int kO = 8, kL = 64;
        int64_t const o_blocks = (opg + kO - 1) / kO, l_blocks = (plane + kL - 1) / kL;
#pragma omp parallel for schedule(static) collapse(2)
        for (int64_t ob = 0; ob < static_cast<int64_t>(groups) * o_blocks; ++ob)
            for (int64_t lb = 0; lb < l_blocks; ++lb)
            {
                int const g = static_cast<int>(ob / o_blocks);
                int const o0 = g * opg + static_cast<int>(ob % o_blocks) * kO;
                int const o_n = std::min(kO, g * opg + opg - o0);
                int64_t const l0 = lb * kL;
                int const l_n = static_cast<int>(std::min<int64_t>(kL, plane - l0));
                float acc[kO][kL] = {};
                float const* src = cols.data() + static_cast<int64_t>(g) * reduce * plane + l0;
                for (int64_t r = 0; r < reduce; ++r)
                {
                    float const* s_row = src + r * plane;
                    for (int i = 0; i < o_n; ++i)
                    {
                        float const wv = weight[static_cast<int64_t>(o0 + i) * reduce + r];
                        for (int l = 0; l < l_n; ++l)
                            acc[i][l] += wv * s_row[l];
                    }
                }
                for (int i = 0; i < o_n; ++i)
                {
                    float const add = bias ? bias[o0 + i] : 0.f;
                    float* o_row = dst + static_cast<int64_t>(o0 + i) * plane + l0;
                    for (int l = 0; l < l_n; ++l)
                        o_row[l] = acc[i][l] + add;
                }
            }
    }
    return 0;
}

extern "C" int es_dcnv3(float const* input, int n, int h, int w, int c, float const* offset, float const* mask, int kh,
    int kw, int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, int group, float offset_scale, float* out)
{
    if (!positive({n, h, w, c, kh, kw, stride_h, stride_w, dil_h, dil_w, group}) || pad_h < 0 || pad_w < 0 || c % group)
        return refuse("dcnv3: sizes, strides, dilations and group must be positive, C divisible by group, padding >= 0");
    int const ho = edgeseg::conv_output_size(h, kh, stride_h, pad_h, dil_h);
    int const wo = edgeseg::conv_output_size(w, kw, stride_w, pad_w, dil_w);
    if (ho <= 0 || wo <= 0)
        return refuse("dcnv3: the kernel does not fit the padded input");
    edgeseg::DCNv3Params const p{kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, group, offset_scale};
    int64_t const gk = static_cast<int64_t>(group) * kh * kw;
    int64_t const total = static_cast<int64_t>(n) * ho * wo * c;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < total; ++i)
    {
        int const ch = i % c, wo_i = (i / c) % wo, ho_i = (i / c / wo) % ho;
        int64_t const b = i / c / wo / ho;
        out[i] = edgeseg::dcnv3_point(input + b * h * w * c, h, w, c, offset + b * ho * wo * gk * 2,
            mask + b * ho * wo * gk, wo, ho_i, wo_i, ch, p);
    }
    return 0;
}

extern "C" int es_paste_masks(float const* masks, int r, int mh, int mw, float const* boxes, int h, int w,
    float threshold, float* out)
{
    if (!positive({mh, mw, h, w}) || r < 0)
        return refuse("paste_masks: sizes must be positive");
    int64_t const plane = static_cast<int64_t>(h) * w;
#pragma omp parallel for schedule(dynamic, 1)
    for (int j = 0; j < r; ++j)
    {
        float const* box = boxes + static_cast<int64_t>(j) * 4;
        float* dst = out + j * plane;
        std::fill(dst, dst + plane, 0.f);
        if (!(box[2] - box[0] > 0.f && box[3] - box[1] > 0.f))
            continue;
        int y_lo, y_hi, x_lo, x_hi; // only pixels that can be non-zero are computed
        edgeseg::paste_extent(box[1], box[3], mh, h, y_lo, y_hi);
        edgeseg::paste_extent(box[0], box[2], mw, w, x_lo, x_hi);
        for (int py = y_lo; py < y_hi; ++py)
            for (int px = x_lo; px < x_hi; ++px)
                dst[static_cast<int64_t>(py) * w + px] = edgeseg::paste_pixel(masks + static_cast<int64_t>(j) * mh * mw, mh,
                    mw, box[0], box[1], box[2], box[3], py, px, threshold);
    }
    return 0;
}

extern "C" int es_panoptic_paste(int32_t const* semantic, int h, int w, float const* masks, float const* scores,
    int32_t const* classes, int r, int num_classes, int num_thing_classes, float overlap_threshold,
    int64_t min_stuff_area, float score_threshold, int32_t* ids, float* segments)
{
    if (!positive({h, w}) || r < 0 || num_thing_classes < 0 || num_classes < num_thing_classes)
        return refuse("panoptic_paste: sizes must be positive and 0 <= num_thing_classes <= num_classes");
    int64_t const hw = static_cast<int64_t>(h) * w;
    int const rows = r + num_classes - num_thing_classes;
    std::fill(ids, ids + hw, 0);
    std::fill(segments, segments + static_cast<int64_t>(rows) * 5, 0.f);
    std::vector<int> order(r);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
        [&](int a, int b) { return edgeseg::panoptic_before(scores[a], a, scores[b], b); });
    int32_t next_id = 1;
    auto add = [&](float category, float is_thing, int64_t area, float score) {
        float* row = segments + static_cast<int64_t>(next_id - 1) * 5;
        row[0] = static_cast<float>(next_id);
        row[1] = category;
        row[2] = is_thing;
        row[3] = static_cast<float>(area);
        row[4] = score;
        ++next_id;
    };
    for (int j : order)
    {
        float const* m = masks + static_cast<int64_t>(j) * hw;
        int64_t area = 0, kept = 0;
        for (int64_t i = 0; i < hw; ++i)
            if (m[i] > .5f)
            {
                ++area;
                kept += ids[i] == 0;
            }
        if (!edgeseg::panoptic_accept(scores[j], area, kept, score_threshold, overlap_threshold))
            continue;
        for (int64_t i = 0; i < hw; ++i)
            if (m[i] > .5f && ids[i] == 0)
                ids[i] = next_id;
        add(static_cast<float>(classes[j]), 1.f, kept, scores[j]);
    }
    for (int cls = num_thing_classes; cls < num_classes; ++cls)
    {
        int64_t area = 0;
        for (int64_t i = 0; i < hw; ++i)
            area += semantic[i] == cls && ids[i] == 0;
        if (area == 0 || area < min_stuff_area)
            continue;
        for (int64_t i = 0; i < hw; ++i)
            if (semantic[i] == cls && ids[i] == 0)
                ids[i] = next_id;
        add(static_cast<float>(cls), 0.f, area, 1.f);
    }
    return 0;
}
