// EdgeSegRoIAlign and EdgeSegMultilevelRoIAlign (version "1"): see README.md beside this file.
#include <cuda_fp16.h>

#include "common/plugin_base.h"
#include "cuda/launchers.h"
#include "cuda/dispatch.h"
#include "plugins.h"

#include <cmath>

namespace edgeseg
{
namespace plugin
{

RoIAlignPlugin::RoIAlignPlugin(Fields const& f)
    : mParams{f.i(F::output_height), f.i(F::output_width), f.i(F::sampling_ratio), f.f(F::spatial_scale), f.i(F::aligned)}
{
}

void RoIAlignPlugin::serialize(FieldStore& s) const
{
    s.add_ints("output_height", {mParams.out_h});
    s.add_ints("output_width", {mParams.out_w});
    s.add_ints("sampling_ratio", {mParams.sampling_ratio});
    s.add_floats("spatial_scale", {mParams.spatial_scale});
    s.add_ints("aligned", {mParams.aligned});
}

int32_t RoIAlignPlugin::getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const* in, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 1 || nbInputs != 3)
        return -1;
    out[0] = in[0];
    return 0;
}

int32_t RoIAlignPlugin::getOutputShapes(DimsExprs const* in, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* out,
    int32_t nbOutputs, IExprBuilder& b) noexcept
{
    if (nbInputs != 3 || nbOutputs != 1 || in[0].nbDims != 4 || in[1].nbDims != 2 || in[2].nbDims != 1)
    {
        report_error("EdgeSegRoIAlign: expects X N×C×H×W, rois K×4 and batch_indices K");
        return -1;
    }
    out[0].nbDims = 4;
    out[0].d[0] = in[1].d[0];
    out[0].d[1] = in[0].d[1];
    out[0].d[2] = b.constant(mParams.out_h);
    out[0].d[3] = b.constant(mParams.out_w);
    return 0;
}

bool RoIAlignPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != 3 || nbOutputs != 1 || pos < 0 || pos > 3)
        return false;
    if (io[pos].desc.format != TensorFormat::kLINEAR)
        return false;
    switch (pos)
    {
    case 0: return io[0].desc.type == DataType::kFLOAT || io[0].desc.type == DataType::kHALF;
    case 1: return io[1].desc.type == DataType::kFLOAT; // boxes stay float32: half loses a pixel at 2048
    case 2: return io[2].desc.type == DataType::kINT32;
    default: return io[3].desc.type == io[0].desc.type;
    }
}

int32_t RoIAlignPlugin::enqueue(PluginTensorDesc const* in, PluginTensorDesc const* outDesc, void const* const* inputs,
    void* const* outputs, void*, cudaStream_t stream) noexcept
{
    Shape out;
    if (!enqueue_checks(validate_roi_align(shape_of(in[0].dims), shape_of(in[1].dims), shape_of(in[2].dims), mParams, out),
            kName, outDesc, {out}))
        return -1;
    auto const& x = in[0].dims;
    int const k = static_cast<int>(in[1].dims.d[0]);
    cudaError_t const e = cuda::with_feature_type(in[0].type == DataType::kHALF, [&](auto* tag) {
        using T = cuda::feature_t<decltype(tag)>;
        return cuda::roi_align(static_cast<T const*>(inputs[0]), x.d[0], x.d[1], x.d[2], x.d[3],
            static_cast<float const*>(inputs[1]), static_cast<int32_t const*>(inputs[2]), k, mParams,
            static_cast<T*>(outputs[0]), stream);
    });
    return e == cudaSuccess ? 0 : -1;
}

MultilevelRoIAlignPlugin::MultilevelRoIAlignPlugin(Fields const& f)
    : mOutH(f.i(F::output_height))
    , mOutW(f.i(F::output_width))
    , mSampling(f.i(F::sampling_ratio))
    , mAligned(f.i(F::aligned))
    , mScales(f.values[F::spatial_scales].begin(), f.values[F::spatial_scales].end())
    , mCanonicalScale(f.f(F::canonical_scale))
    , mCanonicalLevel(f.i(F::canonical_level))
    , mFirstLevel(f.i(F::first_level))
{
}

void MultilevelRoIAlignPlugin::serialize(FieldStore& s) const
{
    s.add_ints("output_height", {mOutH});
    s.add_ints("output_width", {mOutW});
    s.add_ints("sampling_ratio", {mSampling});
    s.add_ints("aligned", {mAligned});
    s.add_floats("spatial_scales", mScales);
    s.add_floats("canonical_scale", {mCanonicalScale});
    s.add_ints("canonical_level", {mCanonicalLevel});
    s.add_ints("first_level", {mFirstLevel});
}

int32_t MultilevelRoIAlignPlugin::getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const* in, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 1 || nbInputs < 3)
        return -1;
    out[0] = in[2];
    return 0;
}

int32_t MultilevelRoIAlignPlugin::getOutputShapes(DimsExprs const* in, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* out, int32_t nbOutputs, IExprBuilder& b) noexcept
{
    if (nbOutputs != 1 || nbInputs != 2 + static_cast<int32_t>(mScales.size()) || in[0].nbDims != 2 || in[2].nbDims != 4)
    {
        report_error("EdgeSegMultilevelRoIAlign: expects rois K×4, batch_indices K and one N×C×H×W feature per spatial scale");
        return -1;
    }
    out[0].nbDims = 4;
    out[0].d[0] = in[0].d[0];
    out[0].d[1] = in[2].d[1];
    out[0].d[2] = b.constant(mOutH);
    out[0].d[3] = b.constant(mOutW);
    return 0;
}

bool MultilevelRoIAlignPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs)
        return false;
    if (io[pos].desc.format != TensorFormat::kLINEAR)
        return false;
    if (pos == 0)
        return io[0].desc.type == DataType::kFLOAT; // boxes stay float32
    if (pos == 1)
        return io[1].desc.type == DataType::kINT32;
    return pos == 2 ? (io[2].desc.type == DataType::kFLOAT || io[2].desc.type == DataType::kHALF)
                    : io[pos].desc.type == io[2].desc.type;
}

int32_t MultilevelRoIAlignPlugin::enqueue(PluginTensorDesc const* in, PluginTensorDesc const* outDesc,
    void const* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept
{
    MultilevelParams p{mOutH, mOutW, mSampling, mAligned, static_cast<int>(mScales.size()), {}, mCanonicalScale,
        mCanonicalLevel, mFirstLevel};
    Shape features[kMaxLevels];
    for (int l = 0; l < p.levels && l < kMaxLevels; ++l)
    {
        p.spatial_scales[l] = mScales[l];
        features[l] = shape_of(in[2 + l].dims);
    }
    Shape out;
    if (!enqueue_checks(validate_multilevel_roi_align(shape_of(in[0].dims), shape_of(in[1].dims), features, p.levels, p, out),
            kName, outDesc, {out}))
        return -1;
    cuda::Levels levels{};
    levels.count = static_cast<int>(mScales.size());
    for (int l = 0; l < levels.count; ++l)
    {
        levels.data[l] = inputs[2 + l];
        levels.height[l] = in[2 + l].dims.d[2];
        levels.width[l] = in[2 + l].dims.d[3];
        levels.scale[l] = mScales[l];
    }
    int const n = in[2].dims.d[0], c = in[2].dims.d[1], k = in[0].dims.d[0];
    auto const* batch = static_cast<int32_t const*>(inputs[1]);
    auto const* rois = static_cast<float const*>(inputs[0]);
    cudaError_t const e = cuda::with_feature_type(in[2].type == DataType::kHALF, [&](auto* tag) {
        return cuda::multilevel_roi_align(levels, n, c, rois, batch, k, mOutH, mOutW, mSampling, mAligned,
            mCanonicalScale, mCanonicalLevel, mFirstLevel, static_cast<decltype(tag)>(outputs[0]), stream);
    });
    return e == cudaSuccess ? 0 : -1;
}

} // namespace plugin
} // namespace edgeseg

namespace edgeseg
{
namespace plugin
{
bool RoIAlignPlugin::check(Fields const&, std::string&) { return true; }
bool MultilevelRoIAlignPlugin::check(Fields const& f, std::string& error)
{
    int const levels = static_cast<int>(f.values[4].size());
    int const first = f.i(7);
    if (first + levels - 1 > 16)
    {
        error = "EdgeSegMultilevelRoIAlign: first_level + levels exceeds 16";
        return false;
    }
    for (int l = 0; l < levels; ++l)
        if (std::fabs(f.values[4][l] * std::ldexp(1.0, first + l) - 1.0) > 1e-3)
        {
            error = "EdgeSegMultilevelRoIAlign field 'spatial_scales': level " + std::to_string(l)
                + " must be 2^-(first_level + " + std::to_string(l) + ")";
            return false;
        }
    return true;
}
} // namespace plugin
} // namespace edgeseg
