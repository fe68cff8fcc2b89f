// ONNX Runtime custom ops (domain "edgeseg") for the tensorrt-flavour graphs: the plugin nodes run on
// the CPU through the same launchers as impl="native", so graph surgery is tested on every machine.
// Attributes are read with the names and meanings of the TensorRT plugin creators' fields.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#include <onnxruntime_lite_custom_op.h>
#undef ORT_API_MANUAL_INIT

#include <memory>
#include <string>
#include <vector>

#include "edgeseg_cpu.h"

namespace
{
using Ort::Custom::Tensor;

int64_t int_attr(OrtKernelInfo const* info, char const* name, int64_t fallback)
{
    try { return Ort::ConstKernelInfo(info).GetAttribute<int64_t>(name); } catch (Ort::Exception const&) { return fallback; }
}

float float_attr(OrtKernelInfo const* info, char const* name, float fallback)
{
    try { return Ort::ConstKernelInfo(info).GetAttribute<float>(name); } catch (Ort::Exception const&) { return fallback; }
}

std::vector<int64_t> ints_attr(OrtKernelInfo const* info, char const* name, std::vector<int64_t> fallback)
{
    try { return Ort::ConstKernelInfo(info).GetAttributes<int64_t>(name); } catch (Ort::Exception const&) { return fallback; }
}

std::vector<float> floats_attr(OrtKernelInfo const* info, char const* name)
{
    return Ort::ConstKernelInfo(info).GetAttributes<float>(name);
}

void check(int rc, char const* op)
{
    if (rc != 0)
        ORT_CXX_API_THROW(std::string(op) + ": " + es_last_error(), ORT_INVALID_ARGUMENT);
}

void need(bool ok, std::string const& what)
{
    if (!ok)
        ORT_CXX_API_THROW(std::string(what), ORT_INVALID_ARGUMENT);
}

// rois k×4 + batch indices k -> k×5, the CPU launchers' form.
std::vector<float> rois5(Tensor<float> const& rois, Tensor<int32_t> const& batch)
{
    auto const k = rois.Shape()[0];
    need(rois.Shape().size() == 2 && rois.Shape()[1] == 4 && batch.NumberOfElement() == k, "rois must be K×4 with K batch indices");
    std::vector<float> out(static_cast<size_t>(k) * 5);
    for (int64_t i = 0; i < k; ++i)
    {
        out[i * 5] = static_cast<float>(batch.Data()[i]);
        for (int j = 0; j < 4; ++j)
            out[i * 5 + 1 + j] = rois.Data()[i * 4 + j];
    }
    return out;
}

struct RoIAlign
{
    RoIAlign(OrtApi const*, OrtKernelInfo const* info)
        : out_h(int_attr(info, "output_height", 1)), out_w(int_attr(info, "output_width", 1)),
          sampling(int_attr(info, "sampling_ratio", -1)), aligned(int_attr(info, "aligned", 0)),
          scale(float_attr(info, "spatial_scale", 1.f))
    {
    }
    void Compute(Tensor<float> const& x, Tensor<float> const& rois, Tensor<int32_t> const& batch, Tensor<float>& y)
    {
        auto const& s = x.Shape();
        need(s.size() == 4, "EdgeSegRoIAlign: X must be N×C×H×W");
        auto const r = rois5(rois, batch);
        int const k = static_cast<int>(rois.Shape()[0]);
        float* out = y.Allocate({k, s[1], out_h, out_w});
        check(es_roi_align(x.Data(), s[0], s[1], s[2], s[3], r.data(), k, out_h, out_w, scale, sampling, aligned, out),
            "EdgeSegRoIAlign");
    }
    int out_h, out_w, sampling, aligned;
    float scale;
};

struct MultilevelRoIAlign
{
    MultilevelRoIAlign(OrtApi const*, OrtKernelInfo const* info)
        : out_h(int_attr(info, "output_height", 1)), out_w(int_attr(info, "output_width", 1)),
          sampling(int_attr(info, "sampling_ratio", -1)), aligned(int_attr(info, "aligned", 0)),
          scales(floats_attr(info, "spatial_scales")), canonical_scale(float_attr(info, "canonical_scale", 224.f)),
          canonical_level(int_attr(info, "canonical_level", 4)), first_level(int_attr(info, "first_level", 2))
    {
    }
    void Compute(Tensor<float> const& rois, Tensor<int32_t> const& batch, Ort::Custom::Variadic const& features, Tensor<float>& y)
    {
        need(features.Size() == scales.size(), "EdgeSegMultilevelRoIAlign: one feature map per spatial scale");
        std::vector<float const*> data;
        std::vector<int> hs, ws;
        auto const& s0 = features[0]->Shape();
        for (size_t l = 0; l < features.Size(); ++l)
        {
            auto const& s = features[l]->Shape();
            need(s.size() == 4 && s[0] == s0[0] && s[1] == s0[1], "EdgeSegMultilevelRoIAlign: features must be N×C×H×W alike");
            data.push_back(static_cast<float const*>(features[l]->DataRaw()));
            hs.push_back(static_cast<int>(s[2]));
            ws.push_back(static_cast<int>(s[3]));
        }
        auto const r = rois5(rois, batch);
        int const k = static_cast<int>(rois.Shape()[0]);
        float* out = y.Allocate({k, s0[1], out_h, out_w});
        check(es_multilevel_roi_align(data.data(), hs.data(), ws.data(), static_cast<int>(data.size()), s0[0], s0[1],
                  r.data(), k, out_h, out_w, scales.data(), sampling, aligned, canonical_scale, canonical_level, first_level, out),
            "EdgeSegMultilevelRoIAlign");
    }
    int out_h, out_w, sampling, aligned;
    std::vector<float> scales;
    float canonical_scale;
    int canonical_level, first_level;
};

struct DeformConv2d
{
    DeformConv2d(OrtApi const*, OrtKernelInfo const* info)
        : stride(ints_attr(info, "stride", {1, 1})), padding(ints_attr(info, "padding", {0, 0})),
          dilation(ints_attr(info, "dilation", {1, 1})), groups(int_attr(info, "groups", 1)),
          offset_groups(int_attr(info, "offset_groups", 1))
    {
        need(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, "EdgeSegDeformConv2d: stride, padding, dilation take 2 values");
    }
    void Compute(Tensor<float> const& x, Tensor<float> const& w, Tensor<float> const& offset, Tensor<float> const& bias,
        Tensor<float> const& mask, Tensor<float>& y)
    {
        auto const& s = x.Shape();
        auto const& ws = w.Shape();
        auto const& os = offset.Shape();
        need(s.size() == 4 && ws.size() == 4 && os.size() == 4, "EdgeSegDeformConv2d: X, W and offset are 4-D");
        float* out = y.Allocate({s[0], ws[0], os[2], os[3]});
        check(es_deform_conv2d(x.Data(), s[0], s[1], s[2], s[3], w.Data(), ws[0], ws[2], ws[3], offset.Data(), mask.Data(),
                  bias.Data(), stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups, offset_groups, out),
            "EdgeSegDeformConv2d");
    }
    std::vector<int64_t> stride, padding, dilation;
    int groups, offset_groups;
};

struct DCNv3
{
    DCNv3(OrtApi const*, OrtKernelInfo const* info)
        : kernel(ints_attr(info, "kernel", {3, 3})), stride(ints_attr(info, "stride", {1, 1})),
          padding(ints_attr(info, "padding", {0, 0})), dilation(ints_attr(info, "dilation", {1, 1})),
          group(int_attr(info, "group", 1)), offset_scale(float_attr(info, "offset_scale", 1.f))
    {
    }
    void Compute(Tensor<float> const& x, Tensor<float> const& offset, Tensor<float> const& mask, Tensor<float>& y)
    {
        auto const& s = x.Shape();
        auto const& os = offset.Shape();
        need(s.size() == 4 && os.size() == 4, "EdgeSegDCNv3: input and offset are N×H×W×C");
        float* out = y.Allocate({s[0], os[1], os[2], s[3]});
        check(es_dcnv3(x.Data(), s[0], s[1], s[2], s[3], offset.Data(), mask.Data(), kernel[0], kernel[1], stride[0],
                  stride[1], padding[0], padding[1], dilation[0], dilation[1], group, offset_scale, out),
            "EdgeSegDCNv3");
    }
    std::vector<int64_t> kernel, stride, padding, dilation;
    int group;
    float offset_scale;
};

struct PasteMasks
{
    PasteMasks(OrtApi const*, OrtKernelInfo const* info) : threshold(float_attr(info, "threshold", .5f)) {}
    void Compute(Tensor<float> const& masks, Tensor<float> const& boxes, Tensor<float> const& image, Tensor<float>& y)
    {
        auto const& ms = masks.Shape();
        auto const& is = image.Shape();
        need(ms.size() == 3 && is.size() >= 2, "EdgeSegPasteMasks: masks R×M×M' and an image …×H×W");
        int64_t const h = is[is.size() - 2], w = is[is.size() - 1];
        float* out = y.Allocate({ms[0], h, w});
        check(es_paste_masks(masks.Data(), ms[0], ms[1], ms[2], boxes.Data(), h, w, threshold, out), "EdgeSegPasteMasks");
    }
    float threshold;
};

struct PanopticPaste
{
    PanopticPaste(OrtApi const*, OrtKernelInfo const* info)
        : num_classes(int_attr(info, "num_classes", 1)), num_thing_classes(int_attr(info, "num_thing_classes", 0)),
          min_stuff_area(int_attr(info, "min_stuff_area", 4096)), overlap(float_attr(info, "overlap_threshold", .5f)),
          score(float_attr(info, "score_threshold", .5f))
    {
    }
    void Compute(Tensor<int32_t> const& semantic, Tensor<float> const& masks, Tensor<float> const& scores,
        Tensor<int32_t> const& classes, Tensor<int32_t>& ids, Tensor<float>& segments)
    {
        auto const& ss = semantic.Shape();
        auto const& ms = masks.Shape();
        need(ss.size() == 2 && ms.size() == 3 && ms[1] == ss[0] && ms[2] == ss[1], "EdgeSegPanopticPaste: semantic H×W, masks R×H×W");
        int32_t* id = ids.Allocate({ss[0], ss[1]});
        float* seg = segments.Allocate({ms[0] + num_classes - num_thing_classes, 5});
        check(es_panoptic_paste(semantic.Data(), ss[0], ss[1], masks.Data(), scores.Data(), classes.Data(), ms[0],
                  num_classes, num_thing_classes, overlap, min_stuff_area, score, id, seg),
            "EdgeSegPanopticPaste");
    }
    int num_classes, num_thing_classes;
    int64_t min_stuff_area;
    float overlap, score;
};
} // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(
    OrtSessionOptions* options, OrtApiBase const* api_base)
{
    Ort::InitApi(api_base->GetApi(ORT_API_VERSION));
    static std::vector<std::unique_ptr<Ort::Custom::OrtLiteCustomOp>> ops;
    static Ort::CustomOpDomain domain{"edgeseg"};
    if (ops.empty())
    {
        char const* cpu = "CPUExecutionProvider";
        ops.emplace_back(Ort::Custom::CreateLiteCustomOp<RoIAlign>("EdgeSegRoIAlign", cpu));
        ops.emplace_back(Ort::Custom::CreateLiteCustomOp<MultilevelRoIAlign>("EdgeSegMultilevelRoIAlign", cpu));
        ops.emplace_back(Ort::Custom::CreateLiteCustomOp<DeformConv2d>("EdgeSegDeformConv2d", cpu));
        ops.emplace_back(Ort::Custom::CreateLiteCustomOp<DCNv3>("EdgeSegDCNv3", cpu));
        ops.emplace_back(Ort::Custom::CreateLiteCustomOp<PasteMasks>("EdgeSegPasteMasks", cpu));
        ops.emplace_back(Ort::Custom::CreateLiteCustomOp<PanopticPaste>("EdgeSegPanopticPaste", cpu));
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
