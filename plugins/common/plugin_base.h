// What every edgeseg TensorRT plugin shares: field specs and their validation (plugin payloads are
// untrusted: every field is checked for name, type, length and range before use), the IPluginV3
// plumbing (Core / Build / Runtime capabilities), and the creator.
#pragma once
#include <NvInferRuntime.h>

#include "edgeseg/validate.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace edgeseg
{
namespace plugin
{
using namespace nvinfer1;

constexpr char const* kVersion = "1";
constexpr char const* kNamespace = "";

void report_error(std::string const& message); // to TensorRT's logger, and kept for edgeseg_plugin_last_error()

// One field: name, type (kINT32 or kFLOAT32), element count (min..max), the range of each value, and
// required or the default values an absent field gets. Built from the node spec (node_spec.h), never
// written by hand.
struct FieldSpec
{
    char const* name;
    PluginFieldType type;
    int32_t min_length, max_length;
    double lo, hi;
    bool required;
    std::vector<double> defaults;
};

// The creator's field list of a node of node_spec.h (spec::RoIAlignNode, ...), in the spec's order.
template <class Node>
std::vector<FieldSpec> const& node_fields()
{
    static std::vector<FieldSpec> const s = [] {
        std::vector<FieldSpec> v;
        for (spec::FieldDef const& d : Node::kFields)
            v.push_back({d.name, d.type == spec::FieldType::kInt32 ? PluginFieldType::kINT32 : PluginFieldType::kFLOAT32,
                d.min_count, d.max_count, d.range.lo, d.range.hi, d.required,
                std::vector<double>(d.defaults, d.defaults + d.n_defaults)});
        return v;
    }();
    return s;
}

// Parsed values of one collection, by spec index (a node's Field enum); an absent optional field holds its
// default. Validation fills `error` and returns false.
struct Fields
{
    std::vector<std::vector<double>> values;
    int32_t i(size_t k, size_t at = 0) const { return static_cast<int32_t>(values[k][at]); }
    float f(size_t k, size_t at = 0) const { return static_cast<float>(values[k][at]); }
};

bool parse_fields(char const* plugin, std::vector<FieldSpec> const& specs, PluginFieldCollection const* fc,
    Fields& out, std::string& error);

// Keeps the storage of a collection that getFieldsToSerialize / getFieldNames hand out.
class FieldStore
{
public:
    void clear();
    void add_ints(char const* name, std::vector<int32_t> v);
    void add_floats(char const* name, std::vector<float> v);
    PluginFieldCollection const* collection();

private:
    std::vector<std::vector<int32_t>> mInts;
    std::vector<std::vector<float>> mFloats;
    std::vector<PluginField> mFields;
    PluginFieldCollection mCollection{};
    struct Pending
    {
        char const* name;
        bool is_int;
        size_t index;
    };
    std::vector<Pending> mPending;
};

// The capabilities in one object. Derived provides the op: outputs, shapes, formats, enqueue, fields.
class PluginBase : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild, public IPluginV3OneRuntime
{
public:
    IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override;
    char const* getPluginVersion() const noexcept override { return kVersion; }
    char const* getPluginNamespace() const noexcept override { return kNamespace; }
    int32_t configurePlugin(DynamicPluginTensorDesc const*, int32_t, DynamicPluginTensorDesc const*, int32_t) noexcept override
    {
        return 0;
    }
    int32_t onShapeChange(PluginTensorDesc const*, int32_t, PluginTensorDesc const*, int32_t) noexcept override { return 0; }
    IPluginV3* attachToContext(IPluginResourceContext*) noexcept override { return clone(); }
    PluginFieldCollection const* getFieldsToSerialize() noexcept override;

protected:
    virtual void serialize(FieldStore& store) const = 0;
    // Float or half I/O, linear, all the same type: the rule most of these ops follow.
    static bool same_float_linear(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t first_float, int32_t end);

private:
    FieldStore mStore;
};

// A creator for plugin class P, which provides: static kName, static specs(), and a constructor from Fields.
template <class P>
class Creator : public IPluginCreatorV3One
{
public:
    Creator()
    {
        for (auto const& s : P::specs())
            mNames.emplace_back(s.name, nullptr, s.type, s.max_length);
        mCollection.nbFields = static_cast<int32_t>(mNames.size());
        mCollection.fields = mNames.data();
    }
    char const* getPluginName() const noexcept override { return P::kName; }
    char const* getPluginVersion() const noexcept override { return kVersion; }
    char const* getPluginNamespace() const noexcept override { return kNamespace; }
    PluginFieldCollection const* getFieldNames() noexcept override { return &mCollection; }
    IPluginV3* createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept override
    {
        try
        {
            Fields fields;
            std::string error;
            if (!parse_fields(P::kName, P::specs(), fc, fields, error) || !P::check(fields, error))
            {
                report_error(error);
                return nullptr;
            }
            return new P(fields);
        }
        catch (...)
        {
            report_error(std::string(P::kName) + ": could not create the plugin");
            return nullptr;
        }
    }

private:
    std::vector<PluginField> mNames;
    PluginFieldCollection mCollection{};
};

inline DataType io_type(DynamicPluginTensorDesc const& d) { return d.desc.type; }

// TensorRT dimensions as the validation layer's shape.
inline Shape shape_of(Dims const& d)
{
    Shape s;
    s.rank = d.nbDims;
    for (int32_t i = 0; i < d.nbDims && i < kMaxRank; ++i)
        s.d[i] = d.d[i];
    return s;
}

// enqueue's first step: the validation layer's verdict on the run-time shapes, and the output shapes
// TensorRT allocated against those validation computed. Returns false (reported) on any refusal.
inline bool enqueue_checks(Status const& status, char const* op, PluginTensorDesc const* outDesc,
    std::initializer_list<Shape> want)
{
    if (!status.ok)
    {
        report_error(status.message);
        return false;
    }
    int i = 0;
    for (Shape const& s : want)
    {
        if (!same(s, shape_of(outDesc[i].dims)))
        {
            report_error(std::string(op) + ": output " + std::to_string(i) + " is " + to_string(shape_of(outDesc[i].dims))
                + ", the inputs give " + to_string(s));
            return false;
        }
        ++i;
    }
    return true;
}

// (size + 2·pad − (dil·(k − 1) + 1)) / stride + 1 as dimension expressions: conv_output_size's formula.
inline IDimensionExpr const* conv_output_expr(IExprBuilder& b, IDimensionExpr const& size, IDimensionExpr const& kernel,
    int32_t pad, int32_t dil, int32_t stride)
{
    auto const* span = b.operation(DimensionOperation::kSUB,
        *b.operation(DimensionOperation::kSUM, size, *b.constant(2 * int64_t{pad} + dil - 1)),
        *b.operation(DimensionOperation::kPROD, kernel, *b.constant(dil)));
    return b.operation(DimensionOperation::kSUM, *b.operation(DimensionOperation::kFLOOR_DIV, *span, *b.constant(stride)),
        *b.constant(1));
}

} // namespace plugin
} // namespace edgeseg
