// EdgeSegPasteMasks, EdgeSegPanopticPaste and EdgeSegPanopticMerge (version "1"): see README.md beside this file.
#include <cuda_fp16.h>

#include "cuda/launchers.h"
#include "cuda/dispatch.h"
#include "plugins.h"

namespace edgeseg
{
namespace plugin
{

bool PasteMasksPlugin::check(Fields const&, std::string&) { return true; }

PasteMasksPlugin::PasteMasksPlugin(Fields const& f)
    : mThreshold(f.f(F::threshold))
{
}

void PasteMasksPlugin::serialize(FieldStore& s) const { s.add_floats("threshold", {mThreshold}); }

int32_t PasteMasksPlugin::getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const* in, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 1 || nbInputs != 3)
        return -1;
    out[0] = in[0];
    return 0;
}

int32_t PasteMasksPlugin::getOutputShapes(DimsExprs const* in, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* out,
    int32_t nbOutputs, IExprBuilder&) noexcept
{
    if (nbInputs != 3 || nbOutputs != 1 || in[0].nbDims != 3 || in[1].nbDims != 2 || in[2].nbDims < 2)
    {
        report_error("EdgeSegPasteMasks: expects masks R×M×M', boxes R×4 and an image …×H×W");
        return -1;
    }
    out[0].nbDims = 3;
    out[0].d[0] = in[0].d[0];
    out[0].d[1] = in[2].d[in[2].nbDims - 2];
    out[0].d[2] = in[2].d[in[2].nbDims - 1];
    return 0;
}

bool PasteMasksPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != 3 || nbOutputs != 1 || pos < 0 || pos > 3)
        return false;
    if (io[pos].desc.format != TensorFormat::kLINEAR)
        return false;
    switch (pos)
    {
    case 0: return io[0].desc.type == DataType::kFLOAT || io[0].desc.type == DataType::kHALF;
    case 1: return io[1].desc.type == DataType::kFLOAT; // boxes stay float32
    case 2: return io[2].desc.type == DataType::kFLOAT || io[2].desc.type == DataType::kHALF; // only its shape is read
    default: return io[3].desc.type == io[0].desc.type;
    }
}

int32_t PasteMasksPlugin::enqueue(PluginTensorDesc const* in, PluginTensorDesc const* outDesc, void const* const* inputs,
    void* const* outputs, void*, cudaStream_t stream) noexcept
{
    Shape out;
    if (!enqueue_checks(validate_paste_masks(shape_of(in[0].dims), shape_of(in[1].dims), shape_of(in[2].dims), mThreshold, out),
            kName, outDesc, {out}))
        return -1;
    int const r = in[0].dims.d[0], mh = in[0].dims.d[1], mw = in[0].dims.d[2];
    int const h = outDesc[0].dims.d[1], w = outDesc[0].dims.d[2];
    cudaError_t const e = cuda::with_feature_type(in[0].type == DataType::kHALF, [&](auto* tag) {
        using T = cuda::feature_t<decltype(tag)>;
        return cuda::paste_masks(static_cast<T const*>(inputs[0]), r, mh, mw, static_cast<float const*>(inputs[1]), h, w,
            mThreshold, static_cast<T*>(outputs[0]), stream);
    });
    return e == cudaSuccess ? 0 : -1;
}

bool PanopticPastePlugin::check(Fields const& f, std::string& error)
{
    if (f.i(F::num_thing_classes) > f.i(F::num_classes))
    {
        error = "EdgeSegPanopticPaste: num_thing_classes exceeds num_classes";
        return false;
    }
    return true;
}

PanopticPastePlugin::PanopticPastePlugin(Fields const& f)
    : mNumClasses(f.i(F::num_classes))
    , mNumThingClasses(f.i(F::num_thing_classes))
    , mMinStuffArea(f.i(F::min_stuff_area))
    , mOverlapThreshold(f.f(F::overlap_threshold))
    , mScoreThreshold(f.f(F::score_threshold))
{
}

void PanopticPastePlugin::serialize(FieldStore& s) const
{
    s.add_ints("num_classes", {mNumClasses});
    s.add_ints("num_thing_classes", {mNumThingClasses});
    s.add_floats("overlap_threshold", {mOverlapThreshold});
    s.add_ints("min_stuff_area", {mMinStuffArea});
    s.add_floats("score_threshold", {mScoreThreshold});
}

int32_t PanopticPastePlugin::getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const*, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 2 || nbInputs != 4)
        return -1;
    out[0] = DataType::kINT32;
    out[1] = DataType::kFLOAT;
    return 0;
}

int32_t PanopticPastePlugin::getOutputShapes(DimsExprs const* in, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* out, int32_t nbOutputs, IExprBuilder& b) noexcept
{
    if (nbInputs != 4 || nbOutputs != 2 || in[0].nbDims != 2 || in[1].nbDims != 3 || in[2].nbDims != 1 || in[3].nbDims != 1)
    {
        report_error("EdgeSegPanopticPaste: expects semantic H×W, masks R×H×W, scores R, classes R");
        return -1;
    }
    out[0] = in[0];
    out[1].nbDims = 2;
    out[1].d[0] = b.operation(DimensionOperation::kSUM, *in[1].d[0], *b.constant(mNumClasses - mNumThingClasses));
    out[1].d[1] = b.constant(5);
    return 0;
}

bool PanopticPastePlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    static DataType const types[] = {DataType::kINT32, DataType::kFLOAT, DataType::kFLOAT, DataType::kINT32,
        DataType::kINT32, DataType::kFLOAT};
    if (nbInputs != 4 || nbOutputs != 2 || pos < 0 || pos > 5)
        return false;
    return io[pos].desc.type == types[pos] && io[pos].desc.format == TensorFormat::kLINEAR;
}

size_t PanopticPastePlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const*, int32_t) const noexcept
{
    if (nbInputs != 4 || inputs[1].max.nbDims != 3)
        return 0;
    int64_t const r = inputs[1].max.d[0];
    return cuda::panoptic_scratch(r > 0 ? r : 0, mNumClasses - mNumThingClasses);
}

int32_t PanopticPastePlugin::enqueue(PluginTensorDesc const* in, PluginTensorDesc const* outDesc, void const* const* inputs,
    void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    PanopticParams const p{mNumClasses, mNumThingClasses, mOverlapThreshold, mMinStuffArea, mScoreThreshold};
    Shape ids, segments;
    if (!enqueue_checks(validate_panoptic_paste(shape_of(in[0].dims), shape_of(in[1].dims), shape_of(in[2].dims),
                            shape_of(in[3].dims), p, ids, segments),
            kName, outDesc, {ids, segments}))
        return -1;
    int const h = in[0].dims.d[0], w = in[0].dims.d[1], r = in[1].dims.d[0];
    cudaError_t const e = cuda::panoptic_paste(static_cast<int32_t const*>(inputs[0]), h, w,
        static_cast<float const*>(inputs[1]), static_cast<float const*>(inputs[2]), static_cast<int32_t const*>(inputs[3]),
        r, mNumClasses, mNumThingClasses, mOverlapThreshold, mMinStuffArea, mScoreThreshold,
        static_cast<int32_t*>(outputs[0]), static_cast<float*>(outputs[1]), workspace, stream);
    if (e != cudaSuccess)
        report_error(std::string("EdgeSegPanopticPaste: launch failed: ") + cudaGetErrorString(e));
    return e == cudaSuccess ? 0 : -1;
}

bool PanopticMergePlugin::check(Fields const& f, std::string& error)
{
    if (f.i(F::num_thing_classes) > f.i(F::num_classes))
    {
        error = "EdgeSegPanopticMerge: num_thing_classes exceeds num_classes";
        return false;
    }
    return true;
}

PanopticMergePlugin::PanopticMergePlugin(Fields const& f)
    : mNumClasses(f.i(F::num_classes))
    , mNumThingClasses(f.i(F::num_thing_classes))
    , mMinStuffArea(f.i(F::min_stuff_area))
    , mMaskRule(f.i(F::mask_rule))
    , mOverlapThreshold(f.f(F::overlap_threshold))
    , mScoreThreshold(f.f(F::score_threshold))
{
}

void PanopticMergePlugin::serialize(FieldStore& s) const
{
    s.add_ints("num_classes", {mNumClasses});
    s.add_ints("num_thing_classes", {mNumThingClasses});
    s.add_floats("overlap_threshold", {mOverlapThreshold});
    s.add_ints("min_stuff_area", {mMinStuffArea});
    s.add_floats("score_threshold", {mScoreThreshold});
    s.add_ints("mask_rule", {mMaskRule});
}

int32_t PanopticMergePlugin::getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const*, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 2 || nbInputs != 5)
        return -1;
    out[0] = DataType::kINT32;
    out[1] = DataType::kFLOAT;
    return 0;
}

int32_t PanopticMergePlugin::getOutputShapes(DimsExprs const* in, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* out, int32_t nbOutputs, IExprBuilder& b) noexcept
{
    if (nbInputs != 5 || nbOutputs != 2 || in[0].nbDims != 2 || in[1].nbDims != 3 || in[2].nbDims != 2 || in[3].nbDims != 1
        || in[4].nbDims != 1)
    {
        report_error("EdgeSegPanopticMerge: expects semantic H×W, masks R×M×M', boxes R×4, scores R, classes R");
        return -1;
    }
    out[0] = in[0];
    out[1].nbDims = 2;
    out[1].d[0] = b.operation(DimensionOperation::kSUM, *in[1].d[0], *b.constant(mNumClasses - mNumThingClasses));
    out[1].d[1] = b.constant(5);
    return 0;
}

bool PanopticMergePlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    static DataType const types[] = {DataType::kINT32, DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT,
        DataType::kINT32, DataType::kINT32, DataType::kFLOAT};
    if (nbInputs != 5 || nbOutputs != 2 || pos < 0 || pos > 6)
        return false;
    return io[pos].desc.type == types[pos] && io[pos].desc.format == TensorFormat::kLINEAR;
}

size_t PanopticMergePlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const*, int32_t) const noexcept
{
    if (nbInputs != 5 || inputs[1].max.nbDims != 3)
        return 0;
    int64_t const r = inputs[1].max.d[0];
    return cuda::panoptic_scratch(r > 0 ? r : 0, mNumClasses - mNumThingClasses);
}

int32_t PanopticMergePlugin::enqueue(PluginTensorDesc const* in, PluginTensorDesc const* outDesc, void const* const* inputs,
    void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    PanopticParams const p{mNumClasses, mNumThingClasses, mOverlapThreshold, mMinStuffArea, mScoreThreshold};
    Shape ids, segments;
    if (!enqueue_checks(validate_panoptic_merge(shape_of(in[0].dims), shape_of(in[1].dims), shape_of(in[2].dims),
                            shape_of(in[3].dims), shape_of(in[4].dims), mMaskRule, p, ids, segments),
            kName, outDesc, {ids, segments}))
        return -1;
    int const h = in[0].dims.d[0], w = in[0].dims.d[1];
    int const r = in[1].dims.d[0], mh = in[1].dims.d[1], mw = in[1].dims.d[2];
    cudaError_t const e = cuda::panoptic_merge(static_cast<int32_t const*>(inputs[0]), h, w,
        static_cast<float const*>(inputs[1]), mh, mw, static_cast<float const*>(inputs[2]),
        static_cast<float const*>(inputs[3]), static_cast<int32_t const*>(inputs[4]), r, mMaskRule, mNumClasses,
        mNumThingClasses, mOverlapThreshold, mMinStuffArea, mScoreThreshold, static_cast<int32_t*>(outputs[0]),
        static_cast<float*>(outputs[1]), workspace, stream);
    if (e != cudaSuccess)
        report_error(std::string("EdgeSegPanopticMerge: launch failed: ") + cudaGetErrorString(e));
    return e == cudaSuccess ? 0 : -1;
}

} // namespace plugin
} // namespace edgeseg
