// The edgeseg TensorRT plugins (IPluginV3, version "1", empty namespace). Each op's folder has the
// plugin's .cpp, its CUDA launcher (.cu) and a README with the node's specification.
#pragma once
#include "common/plugin_base.h"
#include "edgeseg/deform_conv.h"
#include "edgeseg/roi_align.h"

namespace edgeseg
{
namespace plugin
{

// The members every plugin declares the same way; the class body adds its parameters.
// Node: the node's entry in node_spec.h (its name and fields, generated from plugins/spec/nodes.json).
#define EDGESEG_PLUGIN_BODY(Class, Node, Outputs)                                                                       \
public:                                                                                                                \
    using F = spec::Node;                                                                                              \
    static constexpr char const* kName = F::kName;                                                                     \
    static std::vector<FieldSpec> const& specs() { return node_fields<F>(); }                                          \
    static bool check(Fields const& f, std::string& error);                                                           \
    explicit Class(Fields const& f);                                                                                   \
    IPluginV3* clone() noexcept override                                                                               \
    {                                                                                                                  \
        try { return new Class(*this); } catch (...) { return nullptr; }                                              \
    }                                                                                                                  \
    char const* getPluginName() const noexcept override { return kName; }                                              \
    int32_t getNbOutputs() const noexcept override { return Outputs; }                                                 \
    int32_t getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const* in, int32_t nbInputs) const noexcept override; \
    int32_t getOutputShapes(DimsExprs const* in, int32_t nbInputs, DimsExprs const* shapeInputs, int32_t nbShapeInputs,      \
        DimsExprs* out, int32_t nbOutputs, IExprBuilder& builder) noexcept override;                                 \
    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs, int32_t nbOutputs) noexcept override; \
    int32_t enqueue(PluginTensorDesc const* inDesc, PluginTensorDesc const* outDesc, void const* const* inputs,        \
        void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;                                 \
                                                                                                                       \
protected:                                                                                                             \
    void serialize(FieldStore& store) const override;

class RoIAlignPlugin : public PluginBase
{
    EDGESEG_PLUGIN_BODY(RoIAlignPlugin, RoIAlignNode, 1)
private:
    RoIAlignParams mParams;
};

class MultilevelRoIAlignPlugin : public PluginBase
{
    EDGESEG_PLUGIN_BODY(MultilevelRoIAlignPlugin, MultilevelRoIAlignNode, 1)
private:
    int32_t mOutH, mOutW, mSampling, mAligned;
    std::vector<float> mScales;
    float mCanonicalScale;
    int32_t mCanonicalLevel, mFirstLevel;
};

class DeformConv2dPlugin : public PluginBase
{
    EDGESEG_PLUGIN_BODY(DeformConv2dPlugin, DeformConv2dNode, 1)
private:
    DeformConvParams mParams; // kh, kw come from the weight's shape at enqueue
};

class DCNv3Plugin : public PluginBase
{
    EDGESEG_PLUGIN_BODY(DCNv3Plugin, DCNv3Node, 1)
private:
    DCNv3Params mParams;
};

class PasteMasksPlugin : public PluginBase
{
    EDGESEG_PLUGIN_BODY(PasteMasksPlugin, PasteMasksNode, 1)
private:
    float mThreshold;
};

// What EdgeSegPanopticPaste and EdgeSegPanopticMerge share: their common fields, both outputs (ids H×W int32,
// segments (R + stuff classes)×5 float32), the launcher's scratch and the launch report. Each node keeps its own
// inputs, checks and messages; nbInputs is its input count.
class PanopticPluginBase : public PluginBase
{
public:
    // The launcher's scratch (cuda::panoptic_scratch) for the profile's largest instance count.
    size_t getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs, DynamicPluginTensorDesc const* outputs,
        int32_t nbOutputs) const noexcept override;

protected:
    PanopticPluginBase(int32_t nbInputs, int32_t numClasses, int32_t numThingClasses, int32_t minStuffArea,
        float overlapThreshold, float scoreThreshold);
    // "<name>: num_thing_classes exceeds num_classes" when it does.
    static bool check_thing_classes(char const* name, int32_t numClasses, int32_t numThingClasses, std::string& error);
    void serialize_common(FieldStore& s) const;
    int32_t output_data_types(DataType* out, int32_t nbOutputs, int32_t nbInputs) const;
    // ids as the semantic map in[0], segments (R = in[1].d[0]) + stuff classes rows of 5.
    void output_shapes(DimsExprs const* in, DimsExprs* out, IExprBuilder& b) const;
    // Every input and output linear, of types[pos] (nbInputs + 2 entries).
    bool format_combination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs, int32_t nbOutputs,
        DataType const* types) const;
    PanopticParams params() const;
    // 0 on cudaSuccess, else reports "<name>: launch failed: ..." and returns -1.
    static int32_t launched(char const* name, cudaError_t e);

    int32_t mNbInputs;
    int32_t mNumClasses, mNumThingClasses, mMinStuffArea;
    float mOverlapThreshold, mScoreThreshold;
};

class PanopticPastePlugin : public PanopticPluginBase
{
    EDGESEG_PLUGIN_BODY(PanopticPastePlugin, PanopticPasteNode, 2)
};

class PanopticMergePlugin : public PanopticPluginBase
{
    EDGESEG_PLUGIN_BODY(PanopticMergePlugin, PanopticMergeNode, 2)
private:
    int32_t mMaskRule;
};

} // namespace plugin
} // namespace edgeseg
