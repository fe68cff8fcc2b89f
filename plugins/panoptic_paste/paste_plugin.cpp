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

PanopticPluginBase::PanopticPluginBase(int32_t nbInputs, int32_t numClasses, int32_t numThingClasses,
    int32_t minStuffArea, float overlapThreshold, float scoreThreshold)
    : mNbInputs(nbInputs)
    , mNumClasses(numClasses)
    , mNumThingClasses(numThingClasses)
    , mMinStuffArea(minStuffArea)
    , mOverlapThreshold(overlapThreshold)
    , mScoreThreshold(scoreThreshold)
{
}

bool PanopticPluginBase::check_thing_classes(char const* name, int32_t numClasses, int32_t numThingClasses, std::string& error)
{
    if (numThingClasses > numClasses)
    {
        error = std::string(name) + ": num_thing_classes exceeds num_classes";
        return false;
    }
    return true;
}

void PanopticPluginBase::serialize_common(FieldStore& s) const
{
    s.add_ints("num_classes", {mNumClasses});
    s.add_ints("num_thing_classes", {mNumThingClasses});
    s.add_floats("overlap_threshold", {mOverlapThreshold});
    s.add_ints("min_stuff_area", {mMinStuffArea});
    s.add_floats("score_threshold", {mScoreThreshold});
}

int32_t PanopticPluginBase::output_data_types(DataType* out, int32_t nbOutputs, int32_t nbInputs) const
{
    if (nbOutputs != 2 || nbInputs != mNbInputs)
        return -1;
    out[0] = DataType::kINT32;
    out[1] = DataType::kFLOAT;
    return 0;
}

void PanopticPluginBase::output_shapes(DimsExprs const* in, DimsExprs* out, IExprBuilder& b) const
{
    out[0] = in[0];
    out[1].nbDims = 2;
    out[1].d[0] = b.operation(DimensionOperation::kSUM, *in[1].d[0], *b.constant(mNumClasses - mNumThingClasses));
    out[1].d[1] = b.constant(5);
}

bool PanopticPluginBase::format_combination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs,
    int32_t nbOutputs, DataType const* types) const
{
    if (nbInputs != mNbInputs || nbOutputs != 2 || pos < 0 || pos > mNbInputs + 1)
        return false;
    return io[pos].desc.type == types[pos] && io[pos].desc.format == TensorFormat::kLINEAR;
}

size_t PanopticPluginBase::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const*, int32_t) const noexcept
{
    if (nbInputs != mNbInputs || inputs[1].max.nbDims != 3)
        return 0;
    int64_t const r = inputs[1].max.d[0];
    return cuda::panoptic_scratch(r > 0 ? r : 0, mNumClasses - mNumThingClasses);
}

PanopticParams PanopticPluginBase::params() const
{
    return PanopticParams{mNumClasses, mNumThingClasses, mOverlapThreshold, mMinStuffArea, mScoreThreshold};
}

int32_t PanopticPluginBase::launched(char const* name, cudaError_t e)
{
    if (e != cudaSuccess)
        report_error(std::string(name) + ": launch failed: " + cudaGetErrorString(e));
    return e == cudaSuccess ? 0 : -1;
}

bool PanopticPastePlugin::check(Fields const& f, std::string& error)
{
    return check_thing_classes(kName, f.i(F::num_classes), f.i(F::num_thing_classes), error);
}

PanopticPastePlugin::PanopticPastePlugin(Fields const& f)
    : PanopticPluginBase(4, f.i(F::num_classes), f.i(F::num_thing_classes), f.i(F::min_stuff_area),
        f.f(F::overlap_threshold), f.f(F::score_threshold))
{
}

void PanopticPastePlugin::serialize(FieldStore& s) const { serialize_common(s); }

int32_t PanopticPastePlugin::getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const*, int32_t nbInputs) const noexcept
{
    return output_data_types(out, nbOutputs, nbInputs);
}

int32_t PanopticPastePlugin::getOutputShapes(DimsExprs const* in, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* out, int32_t nbOutputs, IExprBuilder& b) noexcept
{
    if (nbInputs != 4 || nbOutputs != 2 || in[0].nbDims != 2 || in[1].nbDims != 3 || in[2].nbDims != 1 || in[3].nbDims != 1)
    {
        report_error("EdgeSegPanopticPaste: expects semantic H×W, masks R×H×W, scores R, classes R");
        return -1;
    }
    output_shapes(in, out, b);
    return 0;
}

bool PanopticPastePlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    static DataType const types[] = {DataType::kINT32, DataType::kFLOAT, DataType::kFLOAT, DataType::kINT32,
        DataType::kINT32, DataType::kFLOAT};
    return format_combination(pos, io, nbInputs, nbOutputs, types);
}

int32_t PanopticPastePlugin::enqueue(PluginTensorDesc const* in, PluginTensorDesc const* outDesc, void const* const* inputs,
    void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    Shape ids, segments;
    if (!enqueue_checks(validate_panoptic_paste(shape_of(in[0].dims), shape_of(in[1].dims), shape_of(in[2].dims),
                            shape_of(in[3].dims), params(), ids, segments),
            kName, outDesc, {ids, segments}))
        return -1;
    int const h = in[0].dims.d[0], w = in[0].dims.d[1], r = in[1].dims.d[0];
    return launched(kName, cuda::panoptic_paste(static_cast<int32_t const*>(inputs[0]), h, w,
        static_cast<float const*>(inputs[1]), static_cast<float const*>(inputs[2]), static_cast<int32_t const*>(inputs[3]),
        r, mNumClasses, mNumThingClasses, mOverlapThreshold, mMinStuffArea, mScoreThreshold,
        static_cast<int32_t*>(outputs[0]), static_cast<float*>(outputs[1]), workspace, stream));
}

bool PanopticMergePlugin::check(Fields const& f, std::string& error)
{
    return check_thing_classes(kName, f.i(F::num_classes), f.i(F::num_thing_classes), error);
}

PanopticMergePlugin::PanopticMergePlugin(Fields const& f)
    : PanopticPluginBase(5, f.i(F::num_classes), f.i(F::num_thing_classes), f.i(F::min_stuff_area),
        f.f(F::overlap_threshold), f.f(F::score_threshold))
    , mMaskRule(f.i(F::mask_rule))
{
}

void PanopticMergePlugin::serialize(FieldStore& s) const
{
    serialize_common(s);
    s.add_ints("mask_rule", {mMaskRule});
}

int32_t PanopticMergePlugin::getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const*, int32_t nbInputs) const noexcept
{
    return output_data_types(out, nbOutputs, nbInputs);
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
    output_shapes(in, out, b);
    return 0;
}

bool PanopticMergePlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    static DataType const types[] = {DataType::kINT32, DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT,
        DataType::kINT32, DataType::kINT32, DataType::kFLOAT};
    return format_combination(pos, io, nbInputs, nbOutputs, types);
}

int32_t PanopticMergePlugin::enqueue(PluginTensorDesc const* in, PluginTensorDesc const* outDesc, void const* const* inputs,
    void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    Shape ids, segments;
    if (!enqueue_checks(validate_panoptic_merge(shape_of(in[0].dims), shape_of(in[1].dims), shape_of(in[2].dims),
                            shape_of(in[3].dims), shape_of(in[4].dims), mMaskRule, params(), ids, segments),
            kName, outDesc, {ids, segments}))
        return -1;
    int const h = in[0].dims.d[0], w = in[0].dims.d[1];
    int const r = in[1].dims.d[0], mh = in[1].dims.d[1], mw = in[1].dims.d[2];
    return launched(kName, cuda::panoptic_merge(static_cast<int32_t const*>(inputs[0]), h, w,
        static_cast<float const*>(inputs[1]), mh, mw, static_cast<float const*>(inputs[2]),
        static_cast<float const*>(inputs[3]), static_cast<int32_t const*>(inputs[4]), r, mMaskRule, mNumClasses,
        mNumThingClasses, mOverlapThreshold, mMinStuffArea, mScoreThreshold, static_cast<int32_t*>(outputs[0]),
        static_cast<float*>(outputs[1]), workspace, stream));
}

} // namespace plugin
} // namespace edgeseg
