// CPU launchers: thin loops (OpenMP over independent outputs) around the math cores. Each entry point
// validates every shape and attribute first (edgeseg/validate.h) and touches no memory before that.
#include "edgeseg_cpu.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <numeric>
#include <string>
#include <vector>

#include "edgeseg/deform_conv.h"
#include "edgeseg/paste.h"
#include "edgeseg/roi_align.h"
#include "edgeseg/validate.h"

using edgeseg::Shape;
using edgeseg::Status;

namespace
{
thread_local std::string last_error;

int refuse(std::string const& what)
{
    last_error = what;
    return -1;
}

// A tensor's shape; a missing tensor or a rank outside 0..ES_MAX_RANK is rank -1 (refused by every check).
Shape shape_of(es_tensor const* t)
{
    Shape s;
    s.rank = -1;
    if (!t || t->rank < 0 || t->rank > edgeseg::kMaxRank)
        return s;
    s.rank = t->rank;
    for (int i = 0; i < s.rank; ++i)
        s.d[i] = t->dims[i];
    return s;
}

// What the shape checks cannot see: a required tensor with elements needs data (one without may have none).
bool has_data(es_tensor const* t) { return t && (t->data || edgeseg::numel(shape_of(t)) == 0); }

template <typename T>
T const* in(es_tensor const* t)
{
    return t ? static_cast<T const*>(t->data) : nullptr;
}

// Query mode fills `out`'s shape; run mode requires it to match what validation computed.
// Returns 1 for "query answered", 0 for "run", -1 for a refusal.
int settle_output(char const* op, char const* name, es_tensor* out, Shape const& want)
{
    if (!out)
        return refuse(std::string(op) + ": no output tensor given");
    if (!out->data)
    {
        out->rank = want.rank;
        for (int i = 0; i < want.rank; ++i)
            out->dims[i] = want.d[i];
        return 1;
    }
    if (!edgeseg::same(shape_of(out), want))
        return refuse(std::string(op) + ": output '" + name + "' must be " + edgeseg::to_string(want) + ", got "
            + edgeseg::to_string(shape_of(out)));
    return 0;
}

int refused(Status const& s) { return refuse(s.message); }

// Every launcher's first steps: the validation verdict, then query mode or the output's shape check.
// Returns -1 (refused), 1 (nothing more to do: a query answered, or an empty output) or 0 (run).
int begin(char const* op, Status const& status, es_tensor* out, Shape const& want)
{
    if (!status)
        return refused(status);
    int const mode = settle_output(op, "output", out, want);
    if (mode != 0)
        return mode;
    return edgeseg::numel(want) == 0 ? 1 : 0;
}

// Every entry point runs inside this: a C++ exception (std::bad_alloc) must not cross the C ABI.
template <typename F>
int guarded(char const* op, F&& body)
{
    try
    {
        return body();
    }
    catch (std::bad_alloc const&)
    {
        return refuse(std::string(op) + ": out of memory");
    }
    catch (std::exception const& e)
    {
        return refuse(std::string(op) + ": " + e.what());
    }
}

int missing(char const* op, char const* name) { return refuse(std::string(op) + ": input '" + name + "' has no data"); }

// RoIAlign over all channels of one bin: the taps of its samples are computed once (the math core's
// arithmetic, in the same order) and applied to every channel plane.
void roi_align_bins(float const* image, int64_t c, int h, int w, edgeseg::RoIGrid const& g, int64_t out_rows, int out_h,
    int out_w, float* out, std::vector<int>& idx, std::vector<float>& wt)
{
    int const samples = g.grid_h * g.grid_w; // at most kMaxRoISamples², by roi_grid
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
            for (int64_t ch = 0; ch < c; ++ch)
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

// Pools every RoI from its level (levels.size() == 1: plain RoIAlign, every box on that level).
void roi_align_run(std::vector<float const*> const& data, std::vector<Shape> const& shapes,
    std::vector<float> const& scales, float const* boxes, int32_t const* batch, int64_t k, int out_h, int out_w,
    int sampling_ratio, int aligned, float canonical_scale, int canonical_level, int first_level, float* out)
{
    int64_t const n = shapes[0].d[0], c = shapes[0].d[1];
    int64_t const bins = static_cast<int64_t>(out_h) * out_w;
    int const levels = static_cast<int>(data.size());
#pragma omp parallel
    {
        std::vector<int> idx;
        std::vector<float> wt;
#pragma omp for schedule(dynamic, 4)
        for (int64_t r = 0; r < k; ++r)
        {
            float const* box = boxes + r * 4;
            float* dst = out + r * c * bins;
            int const l = levels == 1 ? 0
                : edgeseg::fpn_level(box[0], box[1], box[2], box[3], canonical_scale, canonical_level, first_level, levels);
            edgeseg::RoIAlignParams const p{out_h, out_w, sampling_ratio, scales[l], aligned};
            edgeseg::RoIGrid const g = edgeseg::roi_grid(box[0], box[1], box[2], box[3], p);
            if (!g.valid || !edgeseg::roi_batch_valid(batch[r], n))
            {
                std::fill(dst, dst + c * bins, 0.f);
                continue;
            }
            int const h = static_cast<int>(shapes[l].d[2]), w = static_cast<int>(shapes[l].d[3]);
            roi_align_bins(data[l] + batch[r] * c * h * w, c, h, w, g, bins, out_h, out_w, dst, idx, wt);
        }
    }
}

// The panoptic merge of one image (EdgeSegPanopticPaste and EdgeSegPanopticMerge): instances in score order, each
// visited only over its extent (instance(j): a MergeInstance) with in_instance(j, m, py, px) deciding its pixels;
// then stuff. The per-pixel tests, the accept rules and the table rows are the math core's (edgeseg/paste.h),
// shared with the CUDA launcher.
template <typename Instance, typename InInstance>
void panoptic_run(int32_t const* sem, int h, int w, int64_t r, float const* sc, int32_t const* cls,
    edgeseg::PanopticParams const& p, int32_t* id, float* table, int64_t rows, Instance instance, InInstance in_instance)
{
    int64_t const hw = static_cast<int64_t>(h) * w;
    std::fill(id, id + hw, 0);
    std::fill(table, table + rows * 5, 0.f);
    std::vector<int64_t> order(static_cast<size_t>(r));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return edgeseg::panoptic_before(sc[a], static_cast<int>(a), sc[b], static_cast<int>(b));
    });
    int32_t next_id = 1;
    for (int64_t j : order)
    {
        if (!edgeseg::panoptic_scores_enough(sc[j], p.score_threshold))
            continue; // never accepted whatever its pixels: not read (empty slots of a fixed-size output score 0)
        edgeseg::MergeInstance const m = instance(j);
        int64_t area = 0, kept = 0;
        for (int py = m.y_lo; py < m.y_hi; ++py)
            for (int px = m.x_lo; px < m.x_hi; ++px)
                if (in_instance(j, m, py, px))
                {
                    ++area;
                    kept += id[static_cast<int64_t>(py) * w + px] == 0;
                }
        if (!edgeseg::panoptic_accept(sc[j], area, kept, p.score_threshold, p.overlap_threshold))
            continue;
        for (int py = m.y_lo; py < m.y_hi; ++py)
            for (int px = m.x_lo; px < m.x_hi; ++px)
            {
                int32_t& v = id[static_cast<int64_t>(py) * w + px];
                if (v == 0 && in_instance(j, m, py, px))
                    v = next_id;
            }
        edgeseg::panoptic_segment_row(table, next_id++, static_cast<float>(cls[j]), 1.f, kept, sc[j]);
    }
    // Stuff: one histogram pass over the free pixels, then one labelling pass (not a pass per class:
    // 65,535 classes on a 1024² map would take minutes). Segment ids in class order, as before.
    std::vector<int64_t> area(static_cast<size_t>(p.num_classes), 0);
    for (int64_t i = 0; i < hw; ++i)
        if (id[i] == 0 && edgeseg::panoptic_is_stuff(sem[i], p.num_thing_classes, p.num_classes))
            ++area[sem[i]];
    std::vector<int32_t> stuff_id(static_cast<size_t>(p.num_classes), 0);
    for (int c = p.num_thing_classes; c < p.num_classes; ++c)
        if (edgeseg::panoptic_accept_stuff(area[c], p.min_stuff_area))
        {
            stuff_id[c] = next_id;
            edgeseg::panoptic_segment_row(table, next_id++, static_cast<float>(c), 0.f, area[c], 1.f);
        }
    for (int64_t i = 0; i < hw; ++i)
        if (id[i] == 0 && edgeseg::panoptic_is_stuff(sem[i], p.num_thing_classes, p.num_classes))
            id[i] = stuff_id[sem[i]];
}
} // namespace

extern "C" char const* es_last_error(void) { return last_error.c_str(); }

extern "C" int es_roi_align(es_tensor const* x, es_tensor const* rois, es_tensor const* batch_indices, int out_h,
    int out_w, float spatial_scale, int sampling_ratio, int aligned, es_tensor* out)
{
    char const* op = "EdgeSegRoIAlign";
    return guarded(op, [&] {
        Shape out_shape;
        edgeseg::RoIAlignParams const p{out_h, out_w, sampling_ratio, spatial_scale, aligned};
        Status const st = edgeseg::validate_roi_align(shape_of(x), shape_of(rois), shape_of(batch_indices), p, out_shape);
        int const step = begin(op, st, out, out_shape);
        if (step != 0)
            return step < 0 ? -1 : 0;
        if (!has_data(x) || !has_data(rois) || !has_data(batch_indices))
            return missing(op, "X/rois/batch_indices");
        roi_align_run({in<float>(x)}, {shape_of(x)}, {spatial_scale}, in<float>(rois), in<int32_t>(batch_indices),
            out_shape.d[0], out_h, out_w, sampling_ratio, aligned, 224.f, 4, 0, static_cast<float*>(out->data));
        return 0;
    });
}

extern "C" int es_multilevel_roi_align(es_tensor const* rois, es_tensor const* batch_indices, es_tensor const* features,
    int levels, int out_h, int out_w, float const* spatial_scales, int sampling_ratio, int aligned,
    float canonical_scale, int canonical_level, int first_level, es_tensor* out)
{
    char const* op = "EdgeSegMultilevelRoIAlign";
    return guarded(op, [&] {
        if (levels < 1 || levels > edgeseg::kMaxLevels || !features || !spatial_scales)
            return refuse(std::string(op) + ": give 1 to " + std::to_string(edgeseg::kMaxLevels)
                + " feature maps and as many spatial scales");
        edgeseg::MultilevelParams p{out_h, out_w, sampling_ratio, aligned, levels, {}, canonical_scale, canonical_level,
            first_level};
        std::vector<Shape> shapes;
        std::vector<float const*> data;
        for (int l = 0; l < levels; ++l)
        {
            p.spatial_scales[l] = spatial_scales[l];
            shapes.push_back(shape_of(&features[l]));
            data.push_back(in<float>(&features[l]));
        }
        Shape out_shape;
        Status const st = edgeseg::validate_multilevel_roi_align(shape_of(rois), shape_of(batch_indices), shapes.data(),
            levels, p, out_shape);
        int const step = begin(op, st, out, out_shape);
        if (step != 0)
            return step < 0 ? -1 : 0;
        bool features_ok = true;
        for (int l = 0; l < levels; ++l)
            features_ok = features_ok && has_data(&features[l]);
        if (!has_data(rois) || !has_data(batch_indices) || !features_ok)
            return missing(op, "rois/batch_indices/features");
        roi_align_run(data, shapes, std::vector<float>(spatial_scales, spatial_scales + levels), in<float>(rois),
            in<int32_t>(batch_indices), out_shape.d[0], out_h, out_w, sampling_ratio, aligned, canonical_scale,
            canonical_level, first_level, static_cast<float*>(out->data));
        return 0;
    });
}

extern "C" int es_deform_conv2d(es_tensor const* x, es_tensor const* weight, es_tensor const* offset,
    es_tensor const* bias, es_tensor const* mask, int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
    int groups, int offset_groups, es_tensor* out)
{
    char const* op = "EdgeSegDeformConv2d";
    return guarded(op, [&] {
        edgeseg::DeformConvParams p{0, 0, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups};
        Shape const empty = edgeseg::make_shape({0});
        Shape out_shape;
        bool has_bias = false, has_mask = false;
        Status const st = edgeseg::validate_deform_conv2d(shape_of(x), shape_of(weight), shape_of(offset),
            bias ? shape_of(bias) : empty, mask ? shape_of(mask) : empty, p, out_shape, has_bias, has_mask);
        int const step = begin(op, st, out, out_shape);
        if (step != 0)
            return step < 0 ? -1 : 0;
        if (!has_data(x) || !has_data(weight) || !has_data(offset) || (has_bias && !has_data(bias))
            || (has_mask && !has_data(mask)))
            return missing(op, "X/W/offset/bias/mask");
        int64_t const n = out_shape.d[0], cout = out_shape.d[1];
        int const cin = static_cast<int>(x->dims[1]), h = static_cast<int>(x->dims[2]), w = static_cast<int>(x->dims[3]);
        int const ho = static_cast<int>(out_shape.d[2]), wo = static_cast<int>(out_shape.d[3]);
        int const kk = p.kh * p.kw;
        int64_t const plane = static_cast<int64_t>(ho) * wo;
        int64_t const rows = static_cast<int64_t>(cin) * kk; // <= 2^24 (validated)
        int const cpg = cin / groups;
        int64_t const opg = cout / groups, reduce = static_cast<int64_t>(cpg) * kk;
        float const* input = in<float>(x);
        float const* wt = in<float>(weight);
        float const* bs = has_bias ? in<float>(bias) : nullptr;
        // Blocks of kL output pixels: the block's columns (rows × kL, never the whole plane) are sampled
        // once, then out[o, l] = bias[o] + Σ_r weight[o, r] · cols[g·reduce + r, l] in 8-channel tiles.
        constexpr int kO = 8, kL = 64;
        int64_t const l_blocks = (plane + kL - 1) / kL;
        for (int64_t b = 0; b < n; ++b)
        {
            float const* img = input + b * cin * h * w;
            float const* off = in<float>(offset) + b * 2 * offset_groups * kk * plane;
            float const* msk = has_mask ? in<float>(mask) + b * offset_groups * kk * plane : nullptr;
            float* dst = static_cast<float*>(out->data) + b * cout * plane;
#pragma omp parallel
            {
                std::vector<float> cols(static_cast<size_t>(rows) * kL);
#pragma omp for schedule(static)
                for (int64_t lb = 0; lb < l_blocks; ++lb)
                {
                    int64_t const l0 = lb * kL;
                    int const l_n = static_cast<int>(std::min<int64_t>(kL, plane - l0));
                    for (int64_t row = 0; row < rows; ++row)
                    {
                        int const ch = static_cast<int>(row / kk), k = static_cast<int>(row % kk);
                        for (int l = 0; l < l_n; ++l)
                        {
                            int64_t const at = l0 + l;
                            cols[row * kL + l] = edgeseg::deform_column(img, cin, h, w, off, msk, ho, wo, ch, k,
                                static_cast<int>(at / wo), static_cast<int>(at % wo), p);
                        }
                    }
                    for (int64_t o0 = 0, o_n = 0; o0 < cout; o0 += o_n)
                    {
                        int64_t const g = o0 / opg;
                        o_n = std::min<int64_t>(kO, (g + 1) * opg - o0); // a tile never crosses a group
                        float acc[kO][kL] = {};
                        float const* src = cols.data() + g * reduce * kL;
                        for (int64_t r = 0; r < reduce; ++r)
                        {
                            float const* s_row = src + r * kL;
                            for (int i = 0; i < o_n; ++i)
                            {
                                float const wv = wt[(o0 + i) * reduce + r];
                                for (int l = 0; l < l_n; ++l)
                                    acc[i][l] += wv * s_row[l];
                            }
                        }
                        for (int i = 0; i < o_n; ++i)
                        {
                            float const add = bs ? bs[o0 + i] : 0.f;
                            float* o_row = dst + (o0 + i) * plane + l0;
                            for (int l = 0; l < l_n; ++l)
                                o_row[l] = acc[i][l] + add;
                        }
                    }
                }
            }
        }
        return 0;
    });
}

extern "C" int es_dcnv3(es_tensor const* x, es_tensor const* offset, es_tensor const* mask, int kh, int kw, int stride_h,
    int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, int group, float offset_scale, es_tensor* out)
{
    char const* op = "EdgeSegDCNv3";
    return guarded(op, [&] {
        edgeseg::DCNv3Params const p{kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, group, offset_scale};
        Shape out_shape;
        Status const st = edgeseg::validate_dcnv3(shape_of(x), shape_of(offset), shape_of(mask), p, out_shape);
        int const step = begin(op, st, out, out_shape);
        if (step != 0)
            return step < 0 ? -1 : 0;
        int64_t const total = edgeseg::numel(out_shape);
        if (!has_data(x) || !has_data(offset) || !has_data(mask))
            return missing(op, "input/offset/mask");
        int const h = static_cast<int>(x->dims[1]), w = static_cast<int>(x->dims[2]), c = static_cast<int>(x->dims[3]);
        int64_t const ho = out_shape.d[1], wo = out_shape.d[2];
        int64_t const gk = static_cast<int64_t>(group) * kh * kw;
        float const* input = in<float>(x);
        float const* off = in<float>(offset);
        float const* msk = in<float>(mask);
        float* dst = static_cast<float*>(out->data);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < total; ++i)
        {
            int const ch = static_cast<int>(i % c), wo_i = static_cast<int>((i / c) % wo),
                      ho_i = static_cast<int>((i / c / wo) % ho);
            int64_t const b = i / c / wo / ho;
            dst[i] = edgeseg::dcnv3_point(input + b * h * w * c, h, w, c, off + b * ho * wo * gk * 2,
                msk + b * ho * wo * gk, static_cast<int>(wo), ho_i, wo_i, ch, p);
        }
        return 0;
    });
}

extern "C" int es_paste_masks(es_tensor const* masks, es_tensor const* boxes, es_tensor const* image, float threshold,
    es_tensor* out)
{
    char const* op = "EdgeSegPasteMasks";
    return guarded(op, [&] {
        Shape out_shape;
        Status const st = edgeseg::validate_paste_masks(shape_of(masks), shape_of(boxes), shape_of(image), threshold, out_shape);
        int const step = begin(op, st, out, out_shape);
        if (step != 0)
            return step < 0 ? -1 : 0;
        if (!has_data(masks) || !has_data(boxes))
            return missing(op, "masks/boxes");
        int64_t const r = out_shape.d[0];
        int const h = static_cast<int>(out_shape.d[1]), w = static_cast<int>(out_shape.d[2]);
        int const mh = static_cast<int>(masks->dims[1]), mw = static_cast<int>(masks->dims[2]);
        int64_t const plane = static_cast<int64_t>(h) * w;
        float const* m = in<float>(masks);
        float const* bx = in<float>(boxes);
        float* y = static_cast<float*>(out->data);
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t j = 0; j < r; ++j)
        {
            float const* box = bx + j * 4;
            float* dst = y + j * plane;
            std::fill(dst, dst + plane, 0.f);
            edgeseg::PasteGrid const g = edgeseg::paste_grid(box[0], box[1], box[2], box[3], mh, mw);
            if (!g.valid)
                continue;
            int y_lo, y_hi, x_lo, x_hi; // only pixels the box can write are computed
            edgeseg::paste_extent(g.y0, g.y1, h, y_lo, y_hi);
            edgeseg::paste_extent(g.x0, g.x1, w, x_lo, x_hi);
            for (int py = y_lo; py < y_hi; ++py)
                for (int px = x_lo; px < x_hi; ++px)
                    dst[static_cast<int64_t>(py) * w + px] = edgeseg::paste_pixel(m + j * mh * mw, mh, mw, g, py, px, threshold);
        }
        return 0;
    });
}

// EdgeSegPanopticPaste's and EdgeSegPanopticMerge's validation status st, then their two outputs: -1 refused,
// 0 answered as a query (both outputs without data), 1 both outputs ready to be written.
static int settle_panoptic_outputs(char const* op, Status const& st, es_tensor* ids, Shape const& ids_shape,
    es_tensor* segments, Shape const& seg_shape)
{
    if (!st)
        return refused(st);
    int const mode_ids = settle_output(op, "ids", ids, ids_shape);
    int const mode_seg = mode_ids < 0 ? -1 : settle_output(op, "segments", segments, seg_shape);
    if (mode_ids < 0 || mode_seg < 0)
        return -1;
    if (mode_ids == 1 || mode_seg == 1)
        return mode_ids == mode_seg ? 0 : refuse(std::string(op) + ": give both outputs, or neither (query)");
    return 1;
}

extern "C" int es_panoptic_paste(es_tensor const* semantic, es_tensor const* masks, es_tensor const* scores,
    es_tensor const* classes, int num_classes, int num_thing_classes, float overlap_threshold, int64_t min_stuff_area,
    float score_threshold, es_tensor* ids, es_tensor* segments)
{
    char const* op = "EdgeSegPanopticPaste";
    return guarded(op, [&] {
        edgeseg::PanopticParams const p{num_classes, num_thing_classes, overlap_threshold, min_stuff_area, score_threshold};
        Shape ids_shape, seg_shape;
        int const settled = settle_panoptic_outputs(op,
            edgeseg::validate_panoptic_paste(shape_of(semantic), shape_of(masks), shape_of(scores), shape_of(classes), p,
                ids_shape, seg_shape),
            ids, ids_shape, segments, seg_shape);
        if (settled <= 0)
            return settled;
        int64_t const r = masks->dims[0];
        if (!has_data(semantic) || (r > 0 && (!has_data(masks) || !has_data(scores) || !has_data(classes))))
            return missing(op, "semantic/masks/scores/classes");
        int32_t const w = static_cast<int32_t>(ids_shape.d[1]);
        int64_t const hw = ids_shape.d[0] * ids_shape.d[1];
        float const* m_all = in<float>(masks);
        // The whole image is every instance's extent: its mask is full-size.
        panoptic_run(in<int32_t>(semantic), static_cast<int>(ids_shape.d[0]), w, r, in<float>(scores),
            in<int32_t>(classes), p, static_cast<int32_t*>(ids->data), static_cast<float*>(segments->data),
            seg_shape.d[0],
            [&](int64_t) {
                edgeseg::MergeInstance m{};
                m.y_hi = static_cast<int>(ids_shape.d[0]);
                m.x_hi = w;
                return m;
            },
            [&](int64_t j, edgeseg::MergeInstance const&, int py, int px) {
                return edgeseg::panoptic_in_mask(m_all[j * hw + static_cast<int64_t>(py) * w + px]);
            });
        return 0;
    });
}

extern "C" int es_panoptic_merge(es_tensor const* semantic, es_tensor const* masks, es_tensor const* boxes,
    es_tensor const* scores, es_tensor const* classes, int mask_rule, int num_classes, int num_thing_classes,
    float overlap_threshold, int64_t min_stuff_area, float score_threshold, es_tensor* ids, es_tensor* segments)
{
    char const* op = "EdgeSegPanopticMerge";
    return guarded(op, [&] {
        edgeseg::PanopticParams const p{num_classes, num_thing_classes, overlap_threshold, min_stuff_area, score_threshold};
        Shape ids_shape, seg_shape;
        int const settled = settle_panoptic_outputs(op,
            edgeseg::validate_panoptic_merge(shape_of(semantic), shape_of(masks), shape_of(boxes), shape_of(scores),
                shape_of(classes), mask_rule, p, ids_shape, seg_shape),
            ids, ids_shape, segments, seg_shape);
        if (settled <= 0)
            return settled;
        int64_t const r = masks->dims[0];
        if (!has_data(semantic) || (r > 0 && (!has_data(masks) || !has_data(boxes) || !has_data(scores) || !has_data(classes))))
            return missing(op, "semantic/masks/boxes/scores/classes");
        int const h = static_cast<int>(ids_shape.d[0]), w = static_cast<int>(ids_shape.d[1]);
        int const mh = static_cast<int>(masks->dims[1]), mw = static_cast<int>(masks->dims[2]);
        int64_t const mm = static_cast<int64_t>(mh) * mw;
        int32_t const* sem = in<int32_t>(semantic);
        float const* m_all = in<float>(masks);
        float const* bx = in<float>(boxes);
        int32_t const* cls = in<int32_t>(classes);
        // Each instance is read only inside its box (the math core's merge_instance / merge_in_instance).
        panoptic_run(sem, h, w, r, in<float>(scores), cls, p, static_cast<int32_t*>(ids->data),
            static_cast<float*>(segments->data), seg_shape.d[0],
            [&](int64_t j) { return edgeseg::merge_instance(mask_rule, bx + j * 4, mh, mw, cls[j], h, w); },
            [&](int64_t j, edgeseg::MergeInstance const& m, int py, int px) {
                return edgeseg::merge_in_instance(mask_rule, m, mask_rule == 0 ? m_all + j * mm : m_all, mh, mw, sem, w, py, px);
            });
        return 0;
    });
}
