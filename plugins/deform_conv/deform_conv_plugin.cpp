// EdgeSegDeformConv2d and EdgeSegDCNv3 (version "1"): see README.md beside this file.
#include <cuda_fp16.h>

#include "cuda/launchers.h"
#include "cuda/dispatch.h"
#include "plugins.h"

namespace edgeseg
{
namespace plugin
{

bool DeformConv2dPlugin::check(Fields const&, std::string&) { return true; }

DeformConv2dPlugin::DeformConv2dPlugin(Fields const& f)
    : mParams{0, 0, f.i(F::stride, 0), f.i(F::stride, 1), f.i(F::padding, 0), f.i(F::padding, 1), f.i(F::dilation, 0),
        f.i(F::dilation, 1), f.i(F::groups), f.i(F::offset_groups)}
{
}

void DeformConv2dPlugin::serialize(FieldStore& s) const
{
    s.add_ints("stride", {mParams.stride_h, mParams.stride_w});
    s.add_ints("padding", {mParams.pad_h, mParams.pad_w});
    s.add_ints("dilation", {mParams.dil_h, mParams.dil_w});
    s.add_ints("groups", {mParams.groups});
    s.add_ints("offset_groups", {mParams.offset_groups});
}

int32_t DeformConv2dPlugin::getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const* in, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 1 || nbInputs != 5)
        return -1;
    out[0] = in[0];
    return 0;
}

int32_t DeformConv2dPlugin::getOutputShapes(DimsExprs const* in, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* out,
    int32_t nbOutputs, IExprBuilder& b) noexcept
{
    // bias and mask may be empty tensors of any rank (absent); the others are 4-D.
    if (nbInputs != 5 || nbOutputs != 1 || in[0].nbDims != 4 || in[1].nbDims != 4 || in[2].nbDims != 4)
    {
        report_error("EdgeSegDeformConv2d: expects X N×C×H×W, W Cout×C/groups×kh×kw, offset, bias Cout (or empty), "
                     "mask (or empty)");
        return -1;
    }
    out[0].nbDims = 4;
    out[0].d[0] = in[0].d[0];
    out[0].d[1] = in[1].d[0];
    // The convolution's output size (conv_output_size), as every implementation computes it; enqueue
    // checks the offset against it.
    out[0].d[2] = conv_output_expr(b, *in[0].d[2], *in[1].d[2], mParams.pad_h, mParams.dil_h, mParams.stride_h);
    out[0].d[3] = conv_output_expr(b, *in[0].d[3], *in[1].d[3], mParams.pad_w, mParams.dil_w, mParams.stride_w);
    return 0;
}

bool DeformConv2dPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != 5 || nbOutputs != 1 || pos < 0 || pos > 5)
        return false;
    return pos == 5 ? io[5].desc.type == io[0].desc.type && io[5].desc.format == TensorFormat::kLINEAR
                    : same_float_linear(pos, io, 0, 5);
}

int32_t DeformConv2dPlugin::enqueue(PluginTensorDesc const* in, PluginTensorDesc const* outDesc, void const* const* inputs,
    void* const* outputs, void*, cudaStream_t stream) noexcept
{
    DeformConvParams p = mParams;
    Shape out;
    bool has_bias = false, has_mask = false;
    if (!enqueue_checks(validate_deform_conv2d(shape_of(in[0].dims), shape_of(in[1].dims), shape_of(in[2].dims),
                            shape_of(in[3].dims), shape_of(in[4].dims), p, out, has_bias, has_mask),
            kName, outDesc, {out}))
        return -1;
    auto const& x = in[0].dims;
    auto const& w = in[1].dims;
    int const cin = x.d[1];
    // An absent (empty) bias or mask is a null pointer to the launcher, never a pointer to no elements.
    void const* bias = has_bias ? inputs[3] : nullptr;
    void const* mask = has_mask ? inputs[4] : nullptr;
    int const ho = outDesc[0].dims.d[2], wo = outDesc[0].dims.d[3];
    cudaError_t const e = cuda::with_feature_type(in[0].type == DataType::kHALF, [&](auto* tag) {
        using T = cuda::feature_t<decltype(tag)>;
        return cuda::deform_conv2d(static_cast<T const*>(inputs[0]), x.d[0], cin, x.d[2], x.d[3],
            static_cast<T const*>(inputs[1]), w.d[0], static_cast<T const*>(inputs[2]), static_cast<T const*>(mask),
            static_cast<T const*>(bias), p, ho, wo, static_cast<T*>(outputs[0]), stream);
    });
    return e == cudaSuccess ? 0 : -1;
}

bool DCNv3Plugin::check(Fields const&, std::string&) { return true; }

DCNv3Plugin::DCNv3Plugin(Fields const& f)
    : mParams{f.i(F::kernel, 0), f.i(F::kernel, 1), f.i(F::stride, 0), f.i(F::stride, 1), f.i(F::padding, 0),
        f.i(F::padding, 1), f.i(F::dilation, 0), f.i(F::dilation, 1), f.i(F::group), f.f(F::offset_scale)}
{
}

void DCNv3Plugin::serialize(FieldStore& s) const
{
    s.add_ints("kernel", {mParams.kh, mParams.kw});
    s.add_ints("stride", {mParams.stride_h, mParams.stride_w});
    s.add_ints("padding", {mParams.pad_h, mParams.pad_w});
    s.add_ints("dilation", {mParams.dil_h, mParams.dil_w});
    s.add_ints("group", {mParams.group});
    s.add_floats("offset_scale", {mParams.offset_scale});
}

int32_t DCNv3Plugin::getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const* in, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 1 || nbInputs != 3)
        return -1;
    out[0] = in[0];
    return 0;
}

int32_t DCNv3Plugin::getOutputShapes(DimsExprs const* in, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* out,
    int32_t nbOutputs, IExprBuilder& b) noexcept
{
    if (nbInputs != 3 || nbOutputs != 1 || in[0].nbDims != 4 || in[1].nbDims != 4 || in[2].nbDims != 4)
    {
        report_error("EdgeSegDCNv3: expects input N×H×W×C, offset N×Ho×Wo×(G·K·2), mask N×Ho×Wo×(G·K)");
        return -1;
    }
    out[0].nbDims = 4;
    out[0].d[0] = in[0].d[0];
    out[0].d[1] = conv_output_expr(b, *in[0].d[1], *b.constant(mParams.kh), mParams.pad_h, mParams.dil_h, mParams.stride_h);
    out[0].d[2] = conv_output_expr(b, *in[0].d[2], *b.constant(mParams.kw), mParams.pad_w, mParams.dil_w, mParams.stride_w);
    out[0].d[3] = in[0].d[3];
    return 0;
}

bool DCNv3Plugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != 3 || nbOutputs != 1 || pos < 0 || pos > 3)
        return false;
    return pos == 3 ? io[3].desc.type == io[0].desc.type && io[3].desc.format == TensorFormat::kLINEAR
                    : same_float_linear(pos, io, 0, 3);
}

int32_t DCNv3Plugin::enqueue(PluginTensorDesc const* in, PluginTensorDesc const* outDesc, void const* const* inputs,
    void* const* outputs, void*, cudaStream_t stream) noexcept
{
    Shape out;
    if (!enqueue_checks(validate_dcnv3(shape_of(in[0].dims), shape_of(in[1].dims), shape_of(in[2].dims), mParams, out),
            kName, outDesc, {out}))
        return -1;
    auto const& x = in[0].dims;
    int const ho = outDesc[0].dims.d[1], wo = outDesc[0].dims.d[2];
    cudaError_t const e = cuda::with_feature_type(in[0].type == DataType::kHALF, [&](auto* tag) {
        using T = cuda::feature_t<decltype(tag)>;
        return cuda::dcnv3(static_cast<T const*>(inputs[0]), x.d[0], x.d[1], x.d[2], x.d[3],
            static_cast<T const*>(inputs[1]), static_cast<T const*>(inputs[2]), mParams, ho, wo,
            static_cast<T*>(outputs[0]), stream);
    });
    return e == cudaSuccess ? 0 : -1;
}

} // namespace plugin
} // namespace edgeseg
