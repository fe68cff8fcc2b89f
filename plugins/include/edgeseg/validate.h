// The one validation layer: every launcher (CPU C ABI, ONNX Runtime custom ops, TensorRT plugins) calls
// the check of its op before it touches memory. Shapes of all inputs are checked against each other and
// every attribute against the node spec's range (the constants below, which the plugin creators use
// too), in 64-bit arithmetic; the check computes the output shapes, so no caller sizes a buffer from an
// unchecked input. A refusal is a Status whose message names the op and the input or field.
// Host code only (no __device__): checks run before a launch, never inside a kernel.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include "edgeseg/deform_conv.h"
#include "edgeseg/node_spec.h"
#include "edgeseg/roi_align.h"

namespace edgeseg
{

constexpr int kMaxRank = 8;
// No tensor (input, output or workspace) above 2^31 − 1 elements: the kernels index planes with int,
// and 8 GiB of float32 is beyond any edge device this toolkit targets.
constexpr int64_t kMaxElements = (int64_t{1} << 31) - 1;
constexpr int kMaxLevels = 8; // feature levels of the multi-level RoIAlign

// The node spec's attribute ranges (Range, spec::k*) and fields come from node_spec.h, generated from
// plugins/spec/nodes.json; the TensorRT creators and the ONNX Runtime ops read the same header.
static_assert(spec::MultilevelRoIAlignNode::kFields[spec::MultilevelRoIAlignNode::spatial_scales].max_count == kMaxLevels,
    "nodes.json: spatial_scales holds at most kMaxLevels values");

struct Shape
{
    int32_t rank = 0;
    int64_t d[kMaxRank] = {};
};

inline Shape make_shape(std::initializer_list<int64_t> dims)
{
    Shape s;
    for (int64_t v : dims)
        s.d[s.rank++] = v;
    return s;
}

// Element count, or -1 when the rank is outside 0..kMaxRank, a dimension is negative or the product
// leaves int64.
inline int64_t numel(Shape const& s)
{
    if (s.rank < 0 || s.rank > kMaxRank)
        return -1;
    int64_t n = 1;
    for (int i = 0; i < s.rank; ++i)
    {
        if (s.d[i] < 0)
            return -1;
        if (s.d[i] != 0 && n > INT64_MAX / s.d[i])
            return -1;
        n *= s.d[i];
    }
    return n;
}

inline std::string to_string(Shape const& s)
{
    if (s.rank < 0 || s.rank > kMaxRank)
        return "[rank " + std::to_string(s.rank) + "]";
    std::string out = "[";
    for (int i = 0; i < s.rank; ++i)
        out += (i ? ", " : "") + std::to_string(s.d[i]);
    return out + "]";
}

inline bool same(Shape const& a, Shape const& b)
{
    if (a.rank != b.rank || a.rank < 0 || a.rank > kMaxRank)
        return false;
    for (int i = 0; i < a.rank; ++i)
        if (a.d[i] != b.d[i])
            return false;
    return true;
}

struct Status
{
    bool ok = true;
    std::string message;
    explicit operator bool() const { return ok; }
};

inline Status refused(char const* op, std::string const& what) { return {false, std::string(op) + ": " + what}; }

// Attribute `name` within its range (NaN is out of every range).
inline Status check_range(char const* op, char const* name, double v, Range r)
{
    if (v >= r.lo && v <= r.hi)
        return {};
    char buf[160];
    std::snprintf(buf, sizeof buf, "attribute '%s' = %g is outside [%g, %g]", name, v, r.lo, r.hi);
    return refused(op, buf);
}

// A tensor's rank, that no dimension is negative or above INT32_MAX, and its size within kMaxElements.
inline Status check_tensor(char const* op, char const* name, Shape const& s, int rank, char const* layout)
{
    if (s.rank != rank) // also every rank outside 0..kMaxRank: callers ask for ranks 1..4
        return refused(op, std::string("input '") + name + "' must be " + layout + " (rank " + std::to_string(rank)
                + "), got shape " + to_string(s));
    int64_t const n = numel(s);
    for (int i = 0; i < s.rank; ++i)
        if (s.d[i] < 0 || s.d[i] > INT32_MAX)
            return refused(op, std::string("input '") + name + "' has an invalid dimension: " + to_string(s));
    if (n < 0 || n > kMaxElements)
        return refused(op, std::string("input '") + name + "' has more than 2^31-1 elements: " + to_string(s));
    return {};
}

inline Status check_output(char const* op, Shape const& out)
{
    int64_t const n = numel(out);
    if (n < 0 || n > kMaxElements)
        return refused(op, "the output " + to_string(out) + " would exceed 2^31-1 elements; use smaller inputs");
    return {};
}

inline Status expect_dim(char const* op, char const* name, Shape const& s, int axis, int64_t want, char const* meaning)
{
    if (s.d[axis] == want)
        return {};
    return refused(op, std::string("input '") + name + "' " + to_string(s) + ": dimension " + std::to_string(axis)
            + " must be " + std::to_string(want) + " (" + meaning + ")");
}

inline Status positive_dims(char const* op, char const* name, Shape const& s, int from, int to)
{
    for (int i = from; i < to; ++i)
        if (s.d[i] < 1)
            return refused(op, std::string("input '") + name + "' " + to_string(s) + ": dimension " + std::to_string(i)
                    + " must be at least 1");
    return {};
}

#define ES_TRY(expr)                                                                                                   \
    do                                                                                                                 \
    {                                                                                                                  \
        Status const es_status_ = (expr);                                                                              \
        if (!es_status_.ok)                                                                                            \
            return es_status_;                                                                                         \
    } while (0)

// Boxes K×4 with batch indices K: the RoIAlign family's RoI inputs.
inline Status check_rois(char const* op, Shape const& rois, Shape const& batch)
{
    ES_TRY(check_tensor(op, "rois", rois, 2, "K×4 (x1, y1, x2, y2)"));
    ES_TRY(expect_dim(op, "rois", rois, 1, 4, "x1, y1, x2, y2"));
    ES_TRY(check_tensor(op, "batch_indices", batch, 1, "K"));
    return expect_dim(op, "batch_indices", batch, 0, rois.d[0], "one batch index per RoI");
}

inline Status check_roi_params(char const* op, int out_h, int out_w, int sampling_ratio, int aligned)
{
    ES_TRY(check_range(op, "output_height", out_h, spec::kOutputSize));
    ES_TRY(check_range(op, "output_width", out_w, spec::kOutputSize));
    ES_TRY(check_range(op, "sampling_ratio", sampling_ratio, spec::kSamplingRatio));
    return check_range(op, "aligned", aligned, spec::kAligned);
}

// X N×C×H×W, rois K×4, batch_indices K -> out K×C×out_h×out_w.
inline Status validate_roi_align(Shape const& x, Shape const& rois, Shape const& batch, RoIAlignParams const& p, Shape& out)
{
    char const* op = "EdgeSegRoIAlign";
    ES_TRY(check_roi_params(op, p.out_h, p.out_w, p.sampling_ratio, p.aligned));
    ES_TRY(check_range(op, "spatial_scale", p.spatial_scale, spec::kSpatialScale));
    ES_TRY(check_tensor(op, "X", x, 4, "N×C×H×W"));
    ES_TRY(positive_dims(op, "X", x, 2, 4));
    ES_TRY(check_rois(op, rois, batch));
    out = make_shape({rois.d[0], x.d[1], p.out_h, p.out_w});
    return check_output(op, out);
}

struct MultilevelParams
{
    int out_h, out_w, sampling_ratio, aligned;
    int levels;
    float spatial_scales[kMaxLevels];
    float canonical_scale;
    int canonical_level, first_level;
};

// rois K×4, batch_indices K, features[l] N×C×H_l×W_l (one per spatial scale) -> out K×C×out_h×out_w.
inline Status validate_multilevel_roi_align(Shape const& rois, Shape const& batch, Shape const* features, int n_features,
    MultilevelParams const& p, Shape& out)
{
    char const* op = "EdgeSegMultilevelRoIAlign";
    ES_TRY(check_roi_params(op, p.out_h, p.out_w, p.sampling_ratio, p.aligned));
    if (p.levels < 1 || p.levels > kMaxLevels)
        return refused(op, "attribute 'spatial_scales' must hold 1 to " + std::to_string(kMaxLevels) + " values, got "
                + std::to_string(p.levels));
    for (int l = 0; l < p.levels; ++l)
        ES_TRY(check_range(op, "spatial_scales", p.spatial_scales[l], spec::kLevelScale));
    ES_TRY(check_range(op, "canonical_scale", p.canonical_scale, spec::kCanonicalScale));
    ES_TRY(check_range(op, "canonical_level", p.canonical_level, spec::kLevel));
    ES_TRY(check_range(op, "first_level", p.first_level, spec::kLevel));
    if (n_features != p.levels)
        return refused(op, std::to_string(n_features) + " feature maps for " + std::to_string(p.levels)
                + " spatial scales; give one feature map per scale");
    ES_TRY(check_rois(op, rois, batch));
    for (int l = 0; l < n_features; ++l)
    {
        ES_TRY(check_tensor(op, "features", features[l], 4, "N×C×H×W"));
        ES_TRY(positive_dims(op, "features", features[l], 2, 4));
        if (features[l].d[0] != features[0].d[0] || features[l].d[1] != features[0].d[1])
            return refused(op, "feature map " + std::to_string(l) + " " + to_string(features[l])
                    + " differs from feature map 0 " + to_string(features[0]) + " in N or C");
    }
    out = make_shape({rois.d[0], features[0].d[1], p.out_h, p.out_w});
    return check_output(op, out);
}

inline Status check_conv_params(char const* op, int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w)
{
    ES_TRY(check_range(op, "stride", stride_h, spec::kStride));
    ES_TRY(check_range(op, "stride", stride_w, spec::kStride));
    ES_TRY(check_range(op, "padding", pad_h, spec::kPadding));
    ES_TRY(check_range(op, "padding", pad_w, spec::kPadding));
    ES_TRY(check_range(op, "dilation", dil_h, spec::kDilation));
    return check_range(op, "dilation", dil_w, spec::kDilation);
}

// Output size of the convolution along both axes, refused when the kernel does not fit.
inline Status conv_output(char const* op, int64_t h, int64_t w, int kh, int kw, int stride_h, int stride_w, int pad_h,
    int pad_w, int dil_h, int dil_w, int64_t& ho, int64_t& wo)
{
    ho = conv_output_size(h, kh, stride_h, pad_h, dil_h);
    wo = conv_output_size(w, kw, stride_w, pad_w, dil_w);
    if (ho < 1 || wo < 1)
        return refused(op, "the " + std::to_string(kh) + "×" + std::to_string(kw) + " kernel (dilation "
                + std::to_string(dil_h) + "×" + std::to_string(dil_w) + ") does not fit the padded "
                + std::to_string(h) + "×" + std::to_string(w) + " input");
    return {};
}

// An optional input: absent (no elements, any rank) or exactly `want`.
inline Status optional_input(char const* op, char const* name, Shape const& s, Shape const& want, bool& present)
{
    int64_t const n = numel(s);
    present = n != 0;
    if (!present)
        return {};
    if (!same(s, want))
        return refused(op, std::string("input '") + name + "' must be " + to_string(want) + " or empty (absent), got "
                + to_string(s));
    return {};
}

// X N×Cin×H×W, W Cout×(Cin/groups)×kh×kw, offset N×(2·og·kh·kw)×Ho×Wo, bias Cout or empty, mask
// N×(og·kh·kw)×Ho×Wo or empty -> out N×Cout×Ho×Wo. kh, kw come from W and are written into p.
inline Status validate_deform_conv2d(Shape const& x, Shape const& weight, Shape const& offset, Shape const& bias,
    Shape const& mask, DeformConvParams& p, Shape& out, bool& has_bias, bool& has_mask)
{
    char const* op = "EdgeSegDeformConv2d";
    ES_TRY(check_conv_params(op, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w));
    ES_TRY(check_range(op, "groups", p.groups, spec::kGroups));
    ES_TRY(check_range(op, "offset_groups", p.offset_groups, spec::kGroups));
    ES_TRY(check_tensor(op, "X", x, 4, "N×C×H×W"));
    ES_TRY(positive_dims(op, "X", x, 1, 4));
    ES_TRY(check_tensor(op, "W", weight, 4, "Cout×(C/groups)×kh×kw"));
    ES_TRY(positive_dims(op, "W", weight, 0, 4));
    int64_t const cin = x.d[1], cout = weight.d[0];
    if (cin % p.groups || cout % p.groups)
        return refused(op, "groups = " + std::to_string(p.groups) + " must divide the input channels ("
                + std::to_string(cin) + ") and output channels (" + std::to_string(cout) + ")");
    if (cin % p.offset_groups)
        return refused(op, "offset_groups = " + std::to_string(p.offset_groups) + " must divide the input channels ("
                + std::to_string(cin) + ")");
    ES_TRY(expect_dim(op, "W", weight, 1, cin / p.groups, "input channels / groups"));
    p.kh = static_cast<int>(weight.d[2]);
    p.kw = static_cast<int>(weight.d[3]);
    int64_t ho, wo;
    ES_TRY(conv_output(op, x.d[2], x.d[3], p.kh, p.kw, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w, ho, wo));
    int64_t const kk = static_cast<int64_t>(p.kh) * p.kw;
    Shape const want_offset = make_shape({x.d[0], 2 * p.offset_groups * kk, ho, wo});
    ES_TRY(check_tensor(op, "offset", offset, 4, "N×(2·offset_groups·kh·kw)×Ho×Wo"));
    if (!same(offset, want_offset))
        return refused(op, "input 'offset' must be " + to_string(want_offset)
                + " (N, 2·offset_groups·kh·kw, and the convolution's output size), got " + to_string(offset));
    ES_TRY(optional_input(op, "mask", mask, make_shape({x.d[0], p.offset_groups * kk, ho, wo}), has_mask));
    ES_TRY(optional_input(op, "bias", bias, make_shape({cout}), has_bias));
    // The CPU launcher's column workspace is Cin·kh·kw × (a block of output pixels): bound its rows.
    if (cin * kk > (int64_t{1} << 24))
        return refused(op, "input channels × kernel points = " + std::to_string(cin * kk) + " exceeds 2^24");
    out = make_shape({x.d[0], cout, ho, wo});
    return check_output(op, out);
}

// Channels-last: input N×H×W×C, offset N×Ho×Wo×(G·K·2), mask N×Ho×Wo×(G·K) -> out N×Ho×Wo×C.
inline Status validate_dcnv3(Shape const& x, Shape const& offset, Shape const& mask, DCNv3Params const& p, Shape& out)
{
    char const* op = "EdgeSegDCNv3";
    ES_TRY(check_range(op, "kernel", p.kh, spec::kDCNv3Kernel));
    ES_TRY(check_range(op, "kernel", p.kw, spec::kDCNv3Kernel));
    ES_TRY(check_conv_params(op, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w));
    ES_TRY(check_range(op, "group", p.group, spec::kDCNv3Group));
    ES_TRY(check_range(op, "offset_scale", p.offset_scale, spec::kOffsetScale));
    ES_TRY(check_tensor(op, "input", x, 4, "N×H×W×C"));
    ES_TRY(positive_dims(op, "input", x, 1, 4));
    if (x.d[3] % p.group)
        return refused(op, "group = " + std::to_string(p.group) + " must divide the channels (" + std::to_string(x.d[3]) + ")");
    int64_t ho, wo;
    ES_TRY(conv_output(op, x.d[1], x.d[2], p.kh, p.kw, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w, ho, wo));
    int64_t const gk = static_cast<int64_t>(p.group) * p.kh * p.kw;
    Shape const want_offset = make_shape({x.d[0], ho, wo, gk * 2}), want_mask = make_shape({x.d[0], ho, wo, gk});
    ES_TRY(check_tensor(op, "offset", offset, 4, "N×Ho×Wo×(group·kh·kw·2)"));
    if (!same(offset, want_offset))
        return refused(op, "input 'offset' must be " + to_string(want_offset) + ", got " + to_string(offset));
    ES_TRY(check_tensor(op, "mask", mask, 4, "N×Ho×Wo×(group·kh·kw)"));
    if (!same(mask, want_mask))
        return refused(op, "input 'mask' must be " + to_string(want_mask) + ", got " + to_string(mask));
    out = make_shape({x.d[0], ho, wo, x.d[3]});
    return check_output(op, out);
}

// masks R×M×M', boxes R×4, image …×H×W (only its shape is read) -> out R×H×W.
inline Status validate_paste_masks(Shape const& masks, Shape const& boxes, Shape const& image, float threshold, Shape& out)
{
    char const* op = "EdgeSegPasteMasks";
    ES_TRY(check_range(op, "threshold", threshold, spec::kPasteThreshold));
    ES_TRY(check_tensor(op, "masks", masks, 3, "R×M×M'"));
    ES_TRY(positive_dims(op, "masks", masks, 1, 3));
    ES_TRY(check_tensor(op, "boxes", boxes, 2, "R×4 (x1, y1, x2, y2)"));
    ES_TRY(expect_dim(op, "boxes", boxes, 1, 4, "x1, y1, x2, y2"));
    ES_TRY(expect_dim(op, "boxes", boxes, 0, masks.d[0], "one box per mask"));
    if (image.rank < 2 || image.rank > kMaxRank)
        return refused(op, "input 'image' must have at least 2 dimensions (…×H×W), got " + to_string(image));
    int64_t const h = image.d[image.rank - 2], w = image.d[image.rank - 1];
    if (h < 1 || w < 1 || h > INT32_MAX || w > INT32_MAX)
        return refused(op, "input 'image' " + to_string(image) + " must end in a positive H×W");
    out = make_shape({masks.d[0], h, w});
    return check_output(op, out);
}

struct PanopticParams
{
    int num_classes, num_thing_classes;
    float overlap_threshold;
    int64_t min_stuff_area;
    float score_threshold;
};

// The fields EdgeSegPanopticPaste and EdgeSegPanopticMerge share, then the semantic map (op names the node).
inline Status check_panoptic_params(char const* op, PanopticParams const& p, Shape const& semantic)
{
    ES_TRY(check_range(op, "num_classes", p.num_classes, spec::kNumClasses));
    ES_TRY(check_range(op, "num_thing_classes", p.num_thing_classes, spec::kNumThingClasses));
    if (p.num_thing_classes > p.num_classes)
        return refused(op, "attribute 'num_thing_classes' = " + std::to_string(p.num_thing_classes)
                + " exceeds num_classes = " + std::to_string(p.num_classes));
    ES_TRY(check_range(op, "overlap_threshold", p.overlap_threshold, spec::kOverlapThreshold));
    ES_TRY(check_range(op, "min_stuff_area", static_cast<double>(p.min_stuff_area), spec::kMinStuffArea));
    ES_TRY(check_range(op, "score_threshold", p.score_threshold, spec::kScoreThreshold));
    ES_TRY(check_tensor(op, "semantic", semantic, 2, "H×W"));
    ES_TRY(positive_dims(op, "semantic", semantic, 0, 2));
    return {};
}

// Both nodes' scores R and classes R (R from masks), then ids H×W and segments (R + stuff classes)×5.
inline Status check_panoptic_outputs(char const* op, PanopticParams const& p, Shape const& semantic, Shape const& masks,
    Shape const& scores, Shape const& classes, Shape& ids, Shape& segments)
{
    ES_TRY(check_tensor(op, "scores", scores, 1, "R"));
    ES_TRY(expect_dim(op, "scores", scores, 0, masks.d[0], "one score per mask"));
    ES_TRY(check_tensor(op, "classes", classes, 1, "R"));
    ES_TRY(expect_dim(op, "classes", classes, 0, masks.d[0], "one class per mask"));
    ids = semantic;
    segments = make_shape({masks.d[0] + p.num_classes - p.num_thing_classes, 5});
    return check_output(op, segments);
}

// semantic H×W, masks R×H×W, scores R, classes R -> ids H×W, segments (R + stuff classes)×5.
inline Status validate_panoptic_paste(Shape const& semantic, Shape const& masks, Shape const& scores, Shape const& classes,
    PanopticParams const& p, Shape& ids, Shape& segments)
{
    char const* op = "EdgeSegPanopticPaste";
    ES_TRY(check_panoptic_params(op, p, semantic));
    ES_TRY(check_tensor(op, "masks", masks, 3, "R×H×W"));
    if (masks.d[1] != semantic.d[0] || masks.d[2] != semantic.d[1])
        return refused(op, "input 'masks' " + to_string(masks) + " must be R×H×W with the semantic map's H×W "
                + to_string(semantic));
    return check_panoptic_outputs(op, p, semantic, masks, scores, classes, ids, segments);
}

// semantic H×W, masks R×M×M' (mask_rule 0: M, M' ≥ 1) or R×0×0 (mask_rule 1: not read), boxes R×4, scores R,
// classes R -> ids H×W, segments (R + stuff classes)×5. The fields as EdgeSegPanopticPaste's, plus mask_rule.
inline Status validate_panoptic_merge(Shape const& semantic, Shape const& masks, Shape const& boxes, Shape const& scores,
    Shape const& classes, int mask_rule, PanopticParams const& p, Shape& ids, Shape& segments)
{
    char const* op = "EdgeSegPanopticMerge";
    ES_TRY(check_range(op, "mask_rule", mask_rule, spec::kMaskRule));
    ES_TRY(check_panoptic_params(op, p, semantic));
    ES_TRY(check_tensor(op, "masks", masks, 3, mask_rule == 0 ? "R×M×M'" : "R×0×0"));
    if (mask_rule == 0)
        ES_TRY(positive_dims(op, "masks", masks, 1, 3));
    else if (masks.d[1] != 0 || masks.d[2] != 0)
        return refused(op, "input 'masks' " + to_string(masks) + " must be R×0×0 with mask_rule 1 (masks from boxes and "
                "the semantic map)");
    ES_TRY(check_tensor(op, "boxes", boxes, 2, "R×4 (x1, y1, x2, y2)"));
    ES_TRY(expect_dim(op, "boxes", boxes, 1, 4, "x1, y1, x2, y2"));
    ES_TRY(expect_dim(op, "boxes", boxes, 0, masks.d[0], "one box per mask"));
    return check_panoptic_outputs(op, p, semantic, masks, scores, classes, ids, segments);
}

#undef ES_TRY

} // namespace edgeseg
