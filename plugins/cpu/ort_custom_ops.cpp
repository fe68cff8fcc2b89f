// ONNX Runtime custom ops (domain "edgeseg") for the tensorrt-flavour graphs: the plugin nodes run on
// the CPU through the same launchers as impl="native", so graph surgery is tested on every machine.
// Attributes are read with the names, defaults and meanings of the TensorRT plugin creators' fields (both
// from node_spec.h, generated from plugins/spec/nodes.json; a required field left out is refused);
// an attribute of the wrong type or length is refused (never silently replaced by its default), and
// shapes and ranges are checked by the launchers' validation (edgeseg/validate.h) before any output
// is allocated. Every refusal reaches ONNX Runtime as an error status naming the op and the input.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#include <onnxruntime_lite_custom_op.h>
#undef ORT_API_MANUAL_INIT

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgeseg/node_spec.h"
#include "edgeseg_cpu.h"

namespace
{
using Ort::Custom::Tensor;

// A refusal: carried to ONNX Runtime as an ORT_INVALID_ARGUMENT status.
struct Refused : std::runtime_error
{
    using std::runtime_error::runtime_error;
};

// Whether the node has attribute `name` at all, of any type (ORT reports "absent" and "other type"
// alike, so every type is tried).
bool has_attr(Ort::ConstKernelInfo info, char const* name)
{
    auto tries = [&](auto get) {
        try
        {
            get();
            return true;
        }
        catch (Ort::Exception const&)
        {
            return false;
        }
    };
    return tries([&] { info.GetAttribute<int64_t>(name); }) || tries([&] { info.GetAttribute<float>(name); })
        || tries([&] { info.GetAttribute<std::string>(name); }) || tries([&] { info.GetAttributes<int64_t>(name); })
        || tries([&] { info.GetAttributes<float>(name); });
}

// Attribute `name` of type T, or `fallback` when absent; present with another type: refused.
template <typename Get, typename V>
V read_attr(OrtKernelInfo const* raw, char const* op, char const* name, char const* type, V fallback, Get get)
{
    Ort::ConstKernelInfo info(raw);
    try
    {
        return get(info);
    }
    catch (Ort::Exception const&)
    {
        if (has_attr(info, name))
            throw Refused(std::string(op) + ": attribute '" + name + "' must be " + type);
        return fallback;
    }
}

int int_attr(OrtKernelInfo const* info, char const* op, char const* name, int fallback)
{
    int64_t const v = read_attr(info, op, name, "an int", static_cast<int64_t>(fallback),
        [&](Ort::ConstKernelInfo i) { return i.GetAttribute<int64_t>(name); });
    if (v < INT32_MIN || v > INT32_MAX)
        throw Refused(std::string(op) + ": attribute '" + name + "' = " + std::to_string(v) + " does not fit int32");
    return static_cast<int>(v);
}

float float_attr(OrtKernelInfo const* info, char const* op, char const* name, float fallback)
{
    return read_attr(info, op, name, "a float", fallback, [&](Ort::ConstKernelInfo i) { return i.GetAttribute<float>(name); });
}

// A pair attribute (stride, padding, dilation, kernel): exactly two ints.
std::vector<int> pair_attr(OrtKernelInfo const* info, char const* op, char const* name, std::vector<int64_t> fallback)
{
    std::vector<int64_t> const v = read_attr(info, op, name, "a list of 2 ints", fallback,
        [&](Ort::ConstKernelInfo i) { return i.GetAttributes<int64_t>(name); });
    if (v.size() != 2)
        throw Refused(std::string(op) + ": attribute '" + name + "' takes 2 values, got " + std::to_string(v.size()));
    for (int64_t x : v)
        if (x < INT32_MIN || x > INT32_MAX)
            throw Refused(std::string(op) + ": attribute '" + name + "' value " + std::to_string(x) + " does not fit int32");
    return {static_cast<int>(v[0]), static_cast<int>(v[1])};
}

// The attribute of node-spec field `d` (node_spec.h, generated from plugins/spec/nodes.json): the spec's
// name, type, count and default, as the TensorRT creator reads it; a required field left out is refused.
using edgeseg::spec::FieldDef;

void require_attr(OrtKernelInfo const* info, char const* op, FieldDef const& d)
{
    if (d.required && !has_attr(Ort::ConstKernelInfo(info), d.name))
        throw Refused(std::string(op) + ": attribute '" + d.name + "' is required");
}

int int_attr(OrtKernelInfo const* info, char const* op, FieldDef const& d)
{
    require_attr(info, op, d);
    return int_attr(info, op, d.name, static_cast<int>(d.defaults[0]));
}

float float_attr(OrtKernelInfo const* info, char const* op, FieldDef const& d)
{
    require_attr(info, op, d);
    return float_attr(info, op, d.name, static_cast<float>(d.defaults[0]));
}

std::vector<int> pair_attr(OrtKernelInfo const* info, char const* op, FieldDef const& d)
{
    require_attr(info, op, d);
    return pair_attr(info, op, d.name, {static_cast<int64_t>(d.defaults[0]), static_cast<int64_t>(d.defaults[1])});
}

std::vector<float> floats_attr(OrtKernelInfo const* info, char const* op, FieldDef const& d)
{
    require_attr(info, op, d);
    std::vector<float> fallback;
    for (int i = 0; i < d.n_defaults; ++i)
        fallback.push_back(static_cast<float>(d.defaults[i]));
    return read_attr(info, op, d.name, "a list of floats", fallback,
        [&](Ort::ConstKernelInfo i) { return i.GetAttributes<float>(d.name); });
}

// Every input of the node is given (a name, not ""), `count` of them (at least, for a variadic op).
// ONNX Runtime's lite wrapper reads each declared input before Compute runs, and one left out by an
// empty name is a null value there: so it is refused here, when the session is created.
bool require_inputs(OrtKernelInfo const* raw, char const* op, size_t count, bool at_least = false)
{
    Ort::ConstKernelInfo info(raw);
    size_t const n = info.GetInputCount();
    if (at_least ? n < count : n != count)
        throw Refused(std::string(op) + ": takes " + (at_least ? "at least " : "") + std::to_string(count)
            + " inputs, the node gives " + std::to_string(n));
    for (size_t i = 0; i < n; ++i)
        if (info.GetInputName(i).empty())
            throw Refused(std::string(op) + ": input " + std::to_string(i)
                + " is left out; give every input (an optional one as an empty tensor)");
    return true;
}

// Runs `body`, turning a refusal or any C++ exception into an error status for ONNX Runtime.
template <typename F>
Ort::Status guarded(F&& body)
{
    try
    {
        body();
        return Ort::Status{nullptr};
    }
    catch (Refused const& e)
    {
        return Ort::Status(e.what(), ORT_INVALID_ARGUMENT);
    }
    catch (Ort::Exception const& e)
    {
        return Ort::Status(e.what(), e.GetOrtErrorCode());
    }
    catch (std::exception const& e)
    {
        return Ort::Status(e.what(), ORT_FAIL);
    }
}

void check(int rc)
{
    if (rc != 0)
        throw Refused(es_last_error());
}

// An input as the launchers see it (absent optional inputs: no data, rank 1, zero elements).
es_tensor view(Ort::Custom::TensorBase const& t, void const* data)
{
    es_tensor out{};
    if (!t)
    {
        out.rank = 1;
        return out;
    }
    auto const& s = t.Shape();
    if (s.size() > ES_MAX_RANK)
        throw Refused("an input has rank " + std::to_string(s.size()) + " (at most " + std::to_string(ES_MAX_RANK) + ")");
    out.data = const_cast<void*>(data);
    out.rank = static_cast<int32_t>(s.size());
    for (size_t i = 0; i < s.size(); ++i)
        out.dims[i] = s[i];
    return out;
}

template <typename T>
es_tensor view(Tensor<T> const& t)
{
    return view(t, t ? t.Data() : nullptr);
}

// Query the launcher for the output shape, allocate it in ORT, run: `launch(out)` is called twice.
template <typename T, typename Launch>
void run_one(Tensor<T>& y, Launch&& launch)
{
    es_tensor out{};
    check(launch(out));
    std::vector<int64_t> const shape(out.dims, out.dims + out.rank);
    out.data = y.Allocate(shape);
    check(launch(out));
}

struct RoIAlign
{
    bool inputs_given; // first: members initialise in declaration order
    using F = edgeseg::spec::RoIAlignNode;
    static constexpr char const* kOp = F::kName;
    RoIAlign(OrtApi const*, OrtKernelInfo const* info)
        : inputs_given(require_inputs(info, kOp, 3)),
          out_h(int_attr(info, kOp, F::kFields[F::output_height])), out_w(int_attr(info, kOp, F::kFields[F::output_width])),
          sampling(int_attr(info, kOp, F::kFields[F::sampling_ratio])), aligned(int_attr(info, kOp, F::kFields[F::aligned])),
          scale(float_attr(info, kOp, F::kFields[F::spatial_scale]))
    {
    }
    Ort::Status Compute(Tensor<float> const& x, Tensor<float> const& rois, Tensor<int32_t> const& batch, Tensor<float>& y)
    {
        return guarded([&] {
            es_tensor const tx = view(x), tr = view(rois), tb = view(batch);
            run_one(y, [&](es_tensor& out) {
                return es_roi_align(&tx, &tr, &tb, out_h, out_w, scale, sampling, aligned, &out);
            });
        });
    }
    int out_h, out_w, sampling, aligned;
    float scale;
};

struct MultilevelRoIAlign
{
    bool inputs_given; // first: members initialise in declaration order
    using F = edgeseg::spec::MultilevelRoIAlignNode;
    static constexpr char const* kOp = F::kName;
    MultilevelRoIAlign(OrtApi const*, OrtKernelInfo const* info)
        : inputs_given(require_inputs(info, kOp, 3, true)),
          out_h(int_attr(info, kOp, F::kFields[F::output_height])), out_w(int_attr(info, kOp, F::kFields[F::output_width])),
          sampling(int_attr(info, kOp, F::kFields[F::sampling_ratio])), aligned(int_attr(info, kOp, F::kFields[F::aligned])),
          scales(floats_attr(info, kOp, F::kFields[F::spatial_scales])),
          canonical_scale(float_attr(info, kOp, F::kFields[F::canonical_scale])),
          canonical_level(int_attr(info, kOp, F::kFields[F::canonical_level])),
          first_level(int_attr(info, kOp, F::kFields[F::first_level]))
    {
    }
    // The variadic features are read from the context: ONNX Runtime does not make them one type, and the
    // lite API wraps them all with the first one's type, so each one's real type is checked here.
    Ort::Status Compute(OrtKernelContext* context, Tensor<float> const& rois, Tensor<int32_t> const& batch,
        Ort::Custom::Variadic const&, Tensor<float>& y)
    {
        return guarded([&] {
            Ort::KernelContext ctx(context);
            std::vector<es_tensor> feats;
            for (size_t i = 2; i < ctx.GetInputCount(); ++i)
            {
                Ort::ConstValue const v = ctx.GetInput(i);
                auto const info = v.GetTensorTypeAndShapeInfo();
                if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
                    throw Refused(std::string(kOp) + ": feature map " + std::to_string(i - 2) + " must be float32");
                auto const shape = info.GetShape();
                if (shape.size() > ES_MAX_RANK)
                    throw Refused(std::string(kOp) + ": feature map " + std::to_string(i - 2) + " has rank "
                        + std::to_string(shape.size()));
                es_tensor t{};
                t.data = const_cast<void*>(v.GetTensorRawData());
                t.rank = static_cast<int32_t>(shape.size());
                std::copy(shape.begin(), shape.end(), t.dims);
                feats.push_back(t);
            }
            if (feats.size() != scales.size())
                throw Refused(std::string(kOp) + ": " + std::to_string(feats.size()) + " feature maps for "
                    + std::to_string(scales.size()) + " spatial scales; give one feature map per scale");
            es_tensor const tr = view(rois), tb = view(batch);
            run_one(y, [&](es_tensor& out) {
                return es_multilevel_roi_align(&tr, &tb, feats.data(), static_cast<int>(feats.size()), out_h, out_w,
                    scales.data(), sampling, aligned, canonical_scale, canonical_level, first_level, &out);
            });
        });
    }
    int out_h, out_w, sampling, aligned;
    std::vector<float> scales;
    float canonical_scale;
    int canonical_level, first_level;
};

struct DeformConv2d
{
    bool inputs_given; // first: members initialise in declaration order
    using F = edgeseg::spec::DeformConv2dNode;
    static constexpr char const* kOp = F::kName;
    DeformConv2d(OrtApi const*, OrtKernelInfo const* info)
        : inputs_given(require_inputs(info, kOp, 5)),
          stride(pair_attr(info, kOp, F::kFields[F::stride])), padding(pair_attr(info, kOp, F::kFields[F::padding])),
          dilation(pair_attr(info, kOp, F::kFields[F::dilation])), groups(int_attr(info, kOp, F::kFields[F::groups])),
          offset_groups(int_attr(info, kOp, F::kFields[F::offset_groups]))
    {
    }
    // bias and mask: optional (absent, or a tensor with no elements).
    Ort::Status Compute(Tensor<float> const& x, Tensor<float> const& w, Tensor<float> const& offset, Tensor<float> const& bias,
        Tensor<float> const& mask, Tensor<float>& y)
    {
        return guarded([&] {
            es_tensor const tx = view(x), tw = view(w), to = view(offset), tb = view(bias), tm = view(mask);
            run_one(y, [&](es_tensor& out) {
                return es_deform_conv2d(&tx, &tw, &to, &tb, &tm, stride[0], stride[1], padding[0], padding[1],
                    dilation[0], dilation[1], groups, offset_groups, &out);
            });
        });
    }
    std::vector<int> stride, padding, dilation;
    int groups, offset_groups;
};

struct DCNv3
{
    bool inputs_given; // first: members initialise in declaration order
    using F = edgeseg::spec::DCNv3Node;
    static constexpr char const* kOp = F::kName;
    DCNv3(OrtApi const*, OrtKernelInfo const* info)
        : inputs_given(require_inputs(info, kOp, 3)),
          kernel(pair_attr(info, kOp, F::kFields[F::kernel])), stride(pair_attr(info, kOp, F::kFields[F::stride])),
          padding(pair_attr(info, kOp, F::kFields[F::padding])), dilation(pair_attr(info, kOp, F::kFields[F::dilation])),
          group(int_attr(info, kOp, F::kFields[F::group])), offset_scale(float_attr(info, kOp, F::kFields[F::offset_scale]))
    {
    }
    Ort::Status Compute(Tensor<float> const& x, Tensor<float> const& offset, Tensor<float> const& mask, Tensor<float>& y)
    {
        return guarded([&] {
            es_tensor const tx = view(x), to = view(offset), tm = view(mask);
            run_one(y, [&](es_tensor& out) {
                return es_dcnv3(&tx, &to, &tm, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1],
                    dilation[0], dilation[1], group, offset_scale, &out);
            });
        });
    }
    std::vector<int> kernel, stride, padding, dilation;
    int group;
    float offset_scale;
};

struct PasteMasks
{
    bool inputs_given; // first: members initialise in declaration order
    using F = edgeseg::spec::PasteMasksNode;
    static constexpr char const* kOp = F::kName;
    PasteMasks(OrtApi const*, OrtKernelInfo const* info)
        : inputs_given(require_inputs(info, kOp, 3)),
          threshold(float_attr(info, kOp, F::kFields[F::threshold]))
    {
    }
    Ort::Status Compute(Tensor<float> const& masks, Tensor<float> const& boxes, Tensor<float> const& image, Tensor<float>& y)
    {
        return guarded([&] {
            es_tensor const tm = view(masks), tb = view(boxes);
            es_tensor const ti = view(image, nullptr); // only its shape is read
            run_one(y, [&](es_tensor& out) { return es_paste_masks(&tm, &tb, &ti, threshold, &out); });
        });
    }
    float threshold;
};

// EdgeSegPanopticPaste's and EdgeSegPanopticMerge's run: launch(id, seg) answers both output shapes first (a
// query), then fills the outputs allocated to them.
template <typename Launch>
void run_panoptic(Tensor<int32_t>& ids, Tensor<float>& segments, Launch launch)
{
    es_tensor id{}, seg{};
    check(launch(id, seg));
    id.data = ids.Allocate(std::vector<int64_t>(id.dims, id.dims + id.rank));
    seg.data = segments.Allocate(std::vector<int64_t>(seg.dims, seg.dims + seg.rank));
    check(launch(id, seg));
}

struct PanopticPaste
{
    bool inputs_given; // first: members initialise in declaration order
    using F = edgeseg::spec::PanopticPasteNode;
    static constexpr char const* kOp = F::kName;
    PanopticPaste(OrtApi const*, OrtKernelInfo const* info)
        : inputs_given(require_inputs(info, kOp, 4)),
          num_classes(int_attr(info, kOp, F::kFields[F::num_classes])),
          num_thing_classes(int_attr(info, kOp, F::kFields[F::num_thing_classes])),
          min_stuff_area(int_attr(info, kOp, F::kFields[F::min_stuff_area])),
          overlap(float_attr(info, kOp, F::kFields[F::overlap_threshold])), score(float_attr(info, kOp, F::kFields[F::score_threshold]))
    {
    }
    Ort::Status Compute(Tensor<int32_t> const& semantic, Tensor<float> const& masks, Tensor<float> const& scores,
        Tensor<int32_t> const& classes, Tensor<int32_t>& ids, Tensor<float>& segments)
    {
        return guarded([&] {
            es_tensor const ts = view(semantic), tm = view(masks), tsc = view(scores), tc = view(classes);
            run_panoptic(ids, segments, [&](es_tensor& id, es_tensor& seg) {
                return es_panoptic_paste(&ts, &tm, &tsc, &tc, num_classes, num_thing_classes, overlap, min_stuff_area,
                    score, &id, &seg);
            });
        });
    }
    int num_classes, num_thing_classes;
    int64_t min_stuff_area;
    float overlap, score;
};

struct PanopticMerge
{
    bool inputs_given; // first: members initialise in declaration order
    using F = edgeseg::spec::PanopticMergeNode;
    static constexpr char const* kOp = F::kName;
    PanopticMerge(OrtApi const*, OrtKernelInfo const* info)
        : inputs_given(require_inputs(info, kOp, 5)),
          num_classes(int_attr(info, kOp, F::kFields[F::num_classes])),
          num_thing_classes(int_attr(info, kOp, F::kFields[F::num_thing_classes])),
          mask_rule(int_attr(info, kOp, F::kFields[F::mask_rule])),
          min_stuff_area(int_attr(info, kOp, F::kFields[F::min_stuff_area])),
          overlap(float_attr(info, kOp, F::kFields[F::overlap_threshold])), score(float_attr(info, kOp, F::kFields[F::score_threshold]))
    {
    }
    Ort::Status Compute(Tensor<int32_t> const& semantic, Tensor<float> const& masks, Tensor<float> const& boxes,
        Tensor<float> const& scores, Tensor<int32_t> const& classes, Tensor<int32_t>& ids, Tensor<float>& segments)
    {
        return guarded([&] {
            es_tensor const ts = view(semantic), tm = view(masks), tb = view(boxes), tsc = view(scores), tc = view(classes);
            run_panoptic(ids, segments, [&](es_tensor& id, es_tensor& seg) {
                return es_panoptic_merge(&ts, &tm, &tb, &tsc, &tc, mask_rule, num_classes, num_thing_classes, overlap,
                    min_stuff_area, score, &id, &seg);
            });
        });
    }
    int num_classes, num_thing_classes, mask_rule;
    int64_t min_stuff_area;
    float overlap, score;
};

// Kernel creation runs the constructors, which refuse bad attributes by throwing: ONNX Runtime reports
// that as a session-creation error, so a bad node is caught when the model loads, not mid-run.
template <typename Op>
Ort::Custom::OrtLiteCustomOp* make(char const* name)
{
    return Ort::Custom::CreateLiteCustomOp<Op>(name, "CPUExecutionProvider");
}
} // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(
    OrtSessionOptions* options, OrtApiBase const* api_base)
{
    Ort::InitApi(api_base->GetApi(ORT_API_VERSION));
    static std::vector<std::unique_ptr<Ort::Custom::OrtLiteCustomOp>> ops;
    static Ort::CustomOpDomain domain{"edgeseg"};
    if (ops.empty())
    {
        ops.emplace_back(make<RoIAlign>("EdgeSegRoIAlign"));
        ops.emplace_back(make<MultilevelRoIAlign>("EdgeSegMultilevelRoIAlign"));
        ops.emplace_back(make<DeformConv2d>("EdgeSegDeformConv2d"));
        ops.emplace_back(make<DCNv3>("EdgeSegDCNv3"));
        ops.emplace_back(make<PasteMasks>("EdgeSegPasteMasks"));
        ops.emplace_back(make<PanopticPaste>("EdgeSegPanopticPaste"));
        ops.emplace_back(make<PanopticMerge>("EdgeSegPanopticMerge"));
        for (auto& op : ops)
            domain.Add(op.get());
    }
    try
    {
        Ort::UnownedSessionOptions(options).Add(domain);
    }
    catch (Ort::Exception const& e)
    {
        return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
    }
    return nullptr;
}
