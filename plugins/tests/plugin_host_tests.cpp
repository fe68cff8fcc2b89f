// Host tests of the TensorRT plugins (no GPU, no TensorRT library: only its headers): creators and
// their fields, output shapes over dynamic dimensions, format support, serialize -> deserialize round
// trips, and random or truncated field collections (untrusted payloads) that must never crash.
#include <NvInferRuntime.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda/dispatch.h"
#include "cuda/grid.h"
#include "cuda/launchers.h"
#include "edgeseg/paste.h"
#include "plugins.h"

using namespace nvinfer1;

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
extern "C" char const* edgeseg_plugin_last_error();

namespace
{
int failures = 0;
#define EXPECT(cond)                                                                                                   \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                                \
            ++failures;                                                                                                \
        }                                                                                                              \
    } while (0)

// A dimension expression that is a known value (what TensorRT resolves at run time).
class ValueImpl : public apiv::VDimensionExpr
{
public:
    explicit ValueImpl(int64_t v) : value(v) {}
    bool isConstant() const override { return true; }
    int64_t getConstantValue() const override { return value; }
    bool isSizeTensor() const override { return false; }
    int64_t value;
};

class Value : public IDimensionExpr
{
public:
    explicit Value(int64_t v) : impl(v) { mImpl = &impl; }
    ~Value() noexcept override = default;
    ValueImpl impl;
};

class BuilderImpl : public apiv::VExprBuilder
{
public:
    IDimensionExpr const* constant(int64_t v) override { return make(v); }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override
    {
        int64_t const x = a.getConstantValue(), y = b.getConstantValue();
        switch (op)
        {
        case DimensionOperation::kSUM: return make(x + y);
        case DimensionOperation::kPROD: return make(x * y);
        case DimensionOperation::kSUB: return make(x - y);
        case DimensionOperation::kMAX: return make(x > y ? x : y);
        case DimensionOperation::kMIN: return make(x < y ? x : y);
        case DimensionOperation::kFLOOR_DIV: return make(x / y);
        case DimensionOperation::kCEIL_DIV: return make((x + y - 1) / y);
        default: return make(0);
        }
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override { return nullptr; }
    IDimensionExpr const* make(int64_t v)
    {
        values.push_back(std::make_unique<Value>(v));
        return values.back().get();
    }
    std::vector<std::unique_ptr<Value>> values;
};

class Builder : public IExprBuilder
{
public:
    Builder() { mImpl = &impl; }
    ~Builder() noexcept override = default;
    BuilderImpl impl;
};

IPluginCreatorV3One* creator(char const* name)
{
    int32_t n = 0;
    auto* const* list = getCreators(n);
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(list[i]);
        if (std::strcmp(c->getPluginName(), name) == 0)
            return c;
    }
    return nullptr;
}

struct FieldSet
{
    std::vector<std::vector<int32_t>> ints;
    std::vector<std::vector<float>> floats;
    std::vector<PluginField> fields;
    FieldSet& i(char const* name, std::vector<int32_t> v)
    {
        ints.push_back(std::move(v));
        fields.emplace_back(name, ints.back().data(), PluginFieldType::kINT32, static_cast<int32_t>(ints.back().size()));
        return *this;
    }
    FieldSet& f(char const* name, std::vector<float> v)
    {
        floats.push_back(std::move(v));
        fields.emplace_back(name, floats.back().data(), PluginFieldType::kFLOAT32, static_cast<int32_t>(floats.back().size()));
        return *this;
    }
    PluginFieldCollection collection()
    {
        // Storage may have moved as vectors grew: point every field at its final buffer.
        size_t ii = 0, ff = 0;
        for (auto& field : fields)
            field.data = field.type == PluginFieldType::kINT32 ? static_cast<void const*>(ints[ii++].data())
                                                              : static_cast<void const*>(floats[ff++].data());
        return {static_cast<int32_t>(fields.size()), fields.data()};
    }
};

IPluginV3* create(char const* name, FieldSet& fs, TensorRTPhase phase = TensorRTPhase::kBUILD)
{
    auto fc = fs.collection();
    return creator(name)->createPlugin("test", &fc, phase);
}

template <class T>
T* cap(IPluginV3* p, PluginCapabilityType t)
{
    return static_cast<T*>(p->getCapabilityInterface(t));
}

DimsExprs dims(Builder& b, std::vector<int64_t> v)
{
    DimsExprs d{};
    d.nbDims = static_cast<int32_t>(v.size());
    for (size_t i = 0; i < v.size(); ++i)
        d.d[i] = b.impl.make(v[i]);
    return d;
}

std::vector<int64_t> values(DimsExprs const& d)
{
    std::vector<int64_t> v;
    for (int32_t i = 0; i < d.nbDims; ++i)
        v.push_back(d.d[i]->getConstantValue());
    return v;
}

DynamicPluginTensorDesc desc(DataType t)
{
    DynamicPluginTensorDesc d{};
    d.desc.type = t;
    d.desc.format = TensorFormat::kLINEAR;
    return d;
}

// Serialized fields of a plugin, flattened to bytes per field, for comparing round trips.
std::vector<std::string> flatten(PluginFieldCollection const* fc)
{
    std::vector<std::string> out;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        auto const& f = fc->fields[i];
        out.push_back(std::string(f.name) + ":" + std::to_string(static_cast<int>(f.type)) + ":"
            + std::string(static_cast<char const*>(f.data), static_cast<char const*>(f.data) + 4 * f.length));
    }
    return out;
}

void round_trip(IPluginV3* p)
{
    auto* rt = cap<IPluginV3OneRuntime>(p, PluginCapabilityType::kRUNTIME);
    auto first = flatten(rt->getFieldsToSerialize());
    auto* core = cap<IPluginV3OneCore>(p, PluginCapabilityType::kCORE);
    IPluginV3* again = creator(core->getPluginName())->createPlugin("rt", rt->getFieldsToSerialize(), TensorRTPhase::kRUNTIME);
    EXPECT(again != nullptr);
    if (again)
    {
        EXPECT(flatten(cap<IPluginV3OneRuntime>(again, PluginCapabilityType::kRUNTIME)->getFieldsToSerialize()) == first);
        IPluginV3* copy = again->clone();
        EXPECT(copy && flatten(cap<IPluginV3OneRuntime>(copy, PluginCapabilityType::kRUNTIME)->getFieldsToSerialize()) == first);
        delete copy;
        delete again;
    }
}

void test_creators()
{
    int32_t n = 0;
    auto* const* list = getCreators(n);
    EXPECT(n == 7);
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(list[i]);
        EXPECT(std::string(c->getInterfaceInfo().kind) == "PLUGIN CREATOR_V3ONE");
        EXPECT(std::strcmp(c->getPluginVersion(), "1") == 0 && std::strncmp(c->getPluginName(), "EdgeSeg", 7) == 0);
        EXPECT(c->getFieldNames()->nbFields > 0);
    }
}

void test_roi_align()
{
    FieldSet fs;
    fs.i("output_height", {7}).i("output_width", {5}).f("spatial_scale", {0.25f}).i("aligned", {1});
    IPluginV3* p = create("EdgeSegRoIAlign", fs);
    EXPECT(p != nullptr);
    if (!p)
        return;
    Builder b;
    auto* build = cap<IPluginV3OneBuild>(p, PluginCapabilityType::kBUILD);
    DimsExprs in[3] = {dims(b, {2, 256, 50, 60}), dims(b, {17, 4}), dims(b, {17})};
    DimsExprs out[1];
    EXPECT(build->getOutputShapes(in, 3, nullptr, 0, out, 1, b) == 0);
    EXPECT((values(out[0]) == std::vector<int64_t>{17, 256, 7, 5}));
    DimsExprs wrong[3] = {dims(b, {2, 256, 50}), dims(b, {17, 4}), dims(b, {17})};
    EXPECT(build->getOutputShapes(wrong, 3, nullptr, 0, out, 1, b) != 0);
    for (DataType t : {DataType::kFLOAT, DataType::kHALF})
    {
        DynamicPluginTensorDesc io[4] = {desc(t), desc(DataType::kFLOAT), desc(DataType::kINT32), desc(t)};
        for (int pos = 0; pos < 4; ++pos)
            EXPECT(build->supportsFormatCombination(pos, io, 3, 1));
    }
    DynamicPluginTensorDesc half_boxes[4] = {desc(DataType::kHALF), desc(DataType::kHALF), desc(DataType::kINT32), desc(DataType::kHALF)};
    EXPECT(!build->supportsFormatCombination(1, half_boxes, 3, 1)); // boxes stay float32
    DynamicPluginTensorDesc mixed[4] = {desc(DataType::kHALF), desc(DataType::kFLOAT), desc(DataType::kINT32), desc(DataType::kFLOAT)};
    EXPECT(!build->supportsFormatCombination(3, mixed, 3, 1));
    DynamicPluginTensorDesc int8[4] = {desc(DataType::kINT8), desc(DataType::kINT8), desc(DataType::kINT32), desc(DataType::kINT8)};
    EXPECT(!build->supportsFormatCombination(0, int8, 3, 1));
    DataType types[1];
    DataType const in_types[3] = {DataType::kHALF, DataType::kHALF, DataType::kINT32};
    EXPECT(build->getOutputDataTypes(types, 1, in_types, 3) == 0 && types[0] == DataType::kHALF);
    round_trip(p);
    delete p;
}

void test_shapes_of_the_others()
{
    Builder b;
    DimsExprs out[2];
    {
        FieldSet fs;
        fs.i("output_height", {14}).i("output_width", {14}).f("spatial_scales", {0.25f, 0.125f, 0.0625f, 0.03125f}).i("first_level", {2});
        IPluginV3* p = create("EdgeSegMultilevelRoIAlign", fs);
        EXPECT(p != nullptr);
        DimsExprs in[6] = {dims(b, {100, 4}), dims(b, {100}), dims(b, {1, 256, 200, 200}), dims(b, {1, 256, 100, 100}),
            dims(b, {1, 256, 50, 50}), dims(b, {1, 256, 25, 25})};
        EXPECT(p && cap<IPluginV3OneBuild>(p, PluginCapabilityType::kBUILD)->getOutputShapes(in, 6, nullptr, 0, out, 1, b) == 0);
        EXPECT((values(out[0]) == std::vector<int64_t>{100, 256, 14, 14}));
        EXPECT(p && cap<IPluginV3OneBuild>(p, PluginCapabilityType::kBUILD)->getOutputShapes(in, 5, nullptr, 0, out, 1, b) != 0);
        if (p)
            round_trip(p);
        delete p;
        FieldSet bad;
        bad.i("output_height", {14}).i("output_width", {14}).f("spatial_scales", {0.25f, 0.25f}).i("first_level", {2});
        EXPECT(create("EdgeSegMultilevelRoIAlign", bad) == nullptr);
        EXPECT(std::string(edgeseg_plugin_last_error()).find("spatial_scales") != std::string::npos);
    }
    {
        FieldSet fs;
        fs.i("stride", {2, 2}).i("padding", {1, 1}).i("dilation", {1, 1}).i("groups", {1}).i("offset_groups", {1});
        IPluginV3* p = create("EdgeSegDeformConv2d", fs);
        DimsExprs in[5] = {dims(b, {2, 256, 64, 64}), dims(b, {128, 256, 3, 3}), dims(b, {2, 18, 32, 32}), dims(b, {128}),
            dims(b, {2, 9, 32, 32})};
        EXPECT(p && cap<IPluginV3OneBuild>(p, PluginCapabilityType::kBUILD)->getOutputShapes(in, 5, nullptr, 0, out, 1, b) == 0);
        EXPECT((values(out[0]) == std::vector<int64_t>{2, 128, 32, 32}));
        if (p)
            round_trip(p);
        delete p;
    }
    {
        FieldSet fs;
        fs.i("kernel", {3, 3}).i("padding", {1, 1}).i("group", {4}).f("offset_scale", {1.f});
        IPluginV3* p = create("EdgeSegDCNv3", fs);
        DimsExprs in[3] = {dims(b, {1, 56, 56, 64}), dims(b, {1, 56, 56, 72}), dims(b, {1, 56, 56, 36})};
        EXPECT(p && cap<IPluginV3OneBuild>(p, PluginCapabilityType::kBUILD)->getOutputShapes(in, 3, nullptr, 0, out, 1, b) == 0);
        EXPECT((values(out[0]) == std::vector<int64_t>{1, 56, 56, 64}));
        if (p)
            round_trip(p);
        delete p;
    }
    {
        FieldSet fs;
        fs.f("threshold", {0.5f});
        IPluginV3* p = create("EdgeSegPasteMasks", fs);
        DimsExprs in[3] = {dims(b, {30, 28, 28}), dims(b, {30, 4}), dims(b, {1, 3, 480, 640})};
        EXPECT(p && cap<IPluginV3OneBuild>(p, PluginCapabilityType::kBUILD)->getOutputShapes(in, 3, nullptr, 0, out, 1, b) == 0);
        EXPECT((values(out[0]) == std::vector<int64_t>{30, 480, 640}));
        if (p)
            round_trip(p);
        delete p;
    }
    {
        FieldSet fs;
        fs.i("num_classes", {133}).i("num_thing_classes", {80}).f("overlap_threshold", {0.5f}).i("min_stuff_area", {4096});
        IPluginV3* p = create("EdgeSegPanopticPaste", fs);
        DimsExprs in[4] = {dims(b, {480, 640}), dims(b, {100, 480, 640}), dims(b, {100}), dims(b, {100})};
        auto* build = p ? cap<IPluginV3OneBuild>(p, PluginCapabilityType::kBUILD) : nullptr;
        EXPECT(build && build->getOutputShapes(in, 4, nullptr, 0, out, 2, b) == 0);
        EXPECT((values(out[0]) == std::vector<int64_t>{480, 640}) && (values(out[1]) == std::vector<int64_t>{153, 5}));
        DynamicPluginTensorDesc io[6] = {desc(DataType::kINT32), desc(DataType::kFLOAT), desc(DataType::kFLOAT),
            desc(DataType::kINT32), desc(DataType::kINT32), desc(DataType::kFLOAT)};
        for (int pos = 0; build && pos < 6; ++pos)
            EXPECT(build->supportsFormatCombination(pos, io, 4, 2));
        if (p)
            round_trip(p);
        delete p;
        FieldSet bad;
        bad.i("num_classes", {10}).i("num_thing_classes", {11});
        EXPECT(create("EdgeSegPanopticPaste", bad) == nullptr);
    }
    {
        FieldSet fs;
        fs.i("num_classes", {133}).i("num_thing_classes", {80}).i("mask_rule", {0});
        IPluginV3* p = create("EdgeSegPanopticMerge", fs);
        DimsExprs in[5] = {dims(b, {480, 640}), dims(b, {100, 28, 28}), dims(b, {100, 4}), dims(b, {100}), dims(b, {100})};
        auto* build = p ? cap<IPluginV3OneBuild>(p, PluginCapabilityType::kBUILD) : nullptr;
        EXPECT(build && build->getOutputShapes(in, 5, nullptr, 0, out, 2, b) == 0);
        EXPECT((values(out[0]) == std::vector<int64_t>{480, 640}) && (values(out[1]) == std::vector<int64_t>{153, 5}));
        DynamicPluginTensorDesc io[7] = {desc(DataType::kINT32), desc(DataType::kFLOAT), desc(DataType::kFLOAT),
            desc(DataType::kFLOAT), desc(DataType::kINT32), desc(DataType::kINT32), desc(DataType::kFLOAT)};
        for (int pos = 0; build && pos < 7; ++pos)
            EXPECT(build->supportsFormatCombination(pos, io, 5, 2));
        if (p)
            round_trip(p);
        delete p;
        FieldSet bad;
        bad.i("num_classes", {10}).i("num_thing_classes", {2}).i("mask_rule", {2});
        EXPECT(create("EdgeSegPanopticMerge", bad) == nullptr);
    }
}

void test_refusals_say_why()
{
    struct Case
    {
        char const* plugin;
        FieldSet fields;
        char const* says;
    };
    std::vector<Case> cases;
    cases.push_back({"EdgeSegRoIAlign", FieldSet().i("output_height", {0}).i("output_width", {7}), "output_height"});
    cases.push_back({"EdgeSegRoIAlign", FieldSet().i("output_width", {7}), "required field 'output_height'"});
    cases.push_back({"EdgeSegRoIAlign", FieldSet().f("output_height", {7.f}).i("output_width", {7}), "expected int32"});
    cases.push_back({"EdgeSegRoIAlign", FieldSet().i("output_height", {7, 7}).i("output_width", {7}), "value(s)"});
    cases.push_back({"EdgeSegDeformConv2d", FieldSet().i("stride", {0, 1}), "stride"});
    cases.push_back({"EdgeSegDCNv3", FieldSet().i("kernel", {3, 3}).f("offset_scale", {-1.f}), "offset_scale"});
    cases.push_back({"EdgeSegPasteMasks", FieldSet().f("threshold", {2.f}), "threshold"});
    for (auto& c : cases)
    {
        EXPECT(create(c.plugin, c.fields) == nullptr);
        std::string const msg = edgeseg_plugin_last_error();
        if (msg.find(c.says) == std::string::npos)
        {
            std::printf("FAIL: %s refusal says '%s', expected it to mention '%s'\n", c.plugin, msg.c_str(), c.says);
            ++failures;
        }
    }
    PluginFieldCollection null_fields{3, nullptr};
    EXPECT(creator("EdgeSegRoIAlign")->createPlugin("x", &null_fields, TensorRTPhase::kRUNTIME) == nullptr);
    EXPECT(creator("EdgeSegRoIAlign")->createPlugin("x", nullptr, TensorRTPhase::kRUNTIME) == nullptr);
}

// Random collections: names from the specs and junk, random types, lengths and bytes. Nothing may
// crash; what is accepted must round-trip.
void test_random_payloads()
{
    std::mt19937 rng(1234);
    int32_t n = 0;
    auto* const* list = getCreators(n);
    int accepted = 0, total = 0;
    for (int32_t ci = 0; ci < n; ++ci)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(list[ci]);
        auto const* names = c->getFieldNames();
        for (int trial = 0; trial < 3000; ++trial)
        {
            int const count = std::uniform_int_distribution<int>(0, names->nbFields + 2)(rng);
            std::vector<std::vector<uint8_t>> buffers(count);
            std::vector<PluginField> fields;
            std::vector<std::string> junk;
            junk.reserve(count);
            for (int f = 0; f < count; ++f)
            {
                bool const real = rng() % 5 != 0;
                char const* name = nullptr;
                if (real)
                    name = names->fields[rng() % names->nbFields].name;
                else
                {
                    junk.push_back("junk" + std::to_string(rng() % 7));
                    name = rng() % 10 == 0 ? nullptr : junk.back().c_str();
                }
                int32_t length = std::uniform_int_distribution<int32_t>(-2, 12)(rng);
                if (rng() % 20 == 0)
                    length = 1 << 30;
                buffers[f].resize(12 * 8);
                for (auto& byte : buffers[f])
                    byte = static_cast<uint8_t>(rng());
                if (rng() % 3 == 0) // plausible small values, so some collections pass
                    for (size_t k = 0; k + 4 <= buffers[f].size(); k += 4)
                    {
                        int32_t v = static_cast<int32_t>(rng() % 5);
                        std::memcpy(buffers[f].data() + k, &v, 4);
                    }
                auto const type = static_cast<PluginFieldType>(rng() % 14);
                fields.emplace_back(name, rng() % 15 == 0 ? nullptr : buffers[f].data(), type, length);
            }
            PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
            IPluginV3* p = c->createPlugin("fuzz", &fc, trial % 2 ? TensorRTPhase::kRUNTIME : TensorRTPhase::kBUILD);
            ++total;
            if (p)
            {
                ++accepted;
                round_trip(p);
                delete p;
            }
        }
    }
    std::printf("random payloads: %d collections, %d accepted and round-tripped, none crashed\n", total, accepted);
}

// Every valid collection with one field dropped, or its values truncated: refused or defaulted, never a crash.
void test_truncated_payloads()
{
    FieldSet fs;
    fs.i("output_height", {14}).i("output_width", {14}).i("sampling_ratio", {2}).i("aligned", {1})
        .f("spatial_scales", {0.25f, 0.125f}).f("canonical_scale", {224.f}).i("canonical_level", {4}).i("first_level", {2});
    auto full = fs.collection();
    IPluginV3* p = creator("EdgeSegMultilevelRoIAlign")->createPlugin("t", &full, TensorRTPhase::kRUNTIME);
    EXPECT(p != nullptr);
    delete p;
    for (int32_t drop = 0; drop < full.nbFields; ++drop)
    {
        std::vector<PluginField> fewer;
        for (int32_t i = 0; i < full.nbFields; ++i)
            if (i != drop)
                fewer.push_back(full.fields[i]);
        PluginFieldCollection fc{static_cast<int32_t>(fewer.size()), fewer.data()};
        IPluginV3* q = creator("EdgeSegMultilevelRoIAlign")->createPlugin("t", &fc, TensorRTPhase::kRUNTIME);
        bool const required = std::string(full.fields[drop].name) == "output_height" || std::string(full.fields[drop].name) == "output_width"
            || std::string(full.fields[drop].name) == "spatial_scales" || std::string(full.fields[drop].name) == "first_level";
        EXPECT((q == nullptr) == required);
        delete q;
        std::vector<PluginField> shorter(full.fields, full.fields + full.nbFields);
        shorter[drop].length = 0;
        PluginFieldCollection fc2{full.nbFields, shorter.data()};
        IPluginV3* r = creator("EdgeSegMultilevelRoIAlign")->createPlugin("t", &fc2, TensorRTPhase::kRUNTIME);
        EXPECT(r == nullptr); // a field present with no value is refused
        delete r;
    }
}
} // namespace

// A run-time tensor description (what enqueue receives).
PluginTensorDesc run_desc(std::vector<int64_t> v, DataType t = DataType::kFLOAT)
{
    PluginTensorDesc d{};
    d.type = t;
    d.format = TensorFormat::kLINEAR;
    d.dims.nbDims = static_cast<int32_t>(v.size());
    for (size_t i = 0; i < v.size(); ++i)
        d.dims.d[i] = v[i];
    return d;
}

// enqueue with shapes that disagree: refused by the validation layer before any CUDA call (so this runs
// without a GPU), with a message naming the input; the data pointers are never read.
bool enqueue_refuses(IPluginV3* p, std::vector<PluginTensorDesc> in, std::vector<PluginTensorDesc> out, char const* word)
{
    if (!p)
        return false;
    std::vector<void const*> inputs(in.size(), nullptr);
    std::vector<void*> outputs(out.size(), nullptr);
    int32_t const rc = cap<IPluginV3OneRuntime>(p, PluginCapabilityType::kRUNTIME)
                           ->enqueue(in.data(), out.data(), inputs.data(), outputs.data(), nullptr, nullptr);
    std::string const error = edgeseg_plugin_last_error();
    delete p;
    if (rc == 0 || error.find(word) == std::string::npos)
        std::printf("  enqueue said: rc %d, '%s' (wanted '%s')\n", rc, error.c_str(), word);
    return rc != 0 && error.find(word) != std::string::npos;
}

void test_enqueue_validates_shapes()
{
    FieldSet roi;
    roi.i("output_height", {7}).i("output_width", {7});
    EXPECT(enqueue_refuses(create("EdgeSegRoIAlign", roi),
        {run_desc({1, 8, 32, 32}), run_desc({5, 4}), run_desc({4}, DataType::kINT32)}, {run_desc({5, 8, 7, 7})},
        "batch_indices"));
    FieldSet ml;
    ml.i("output_height", {7}).i("output_width", {7}).f("spatial_scales", {0.25f, 0.125f}).i("first_level", {2});
    EXPECT(enqueue_refuses(create("EdgeSegMultilevelRoIAlign", ml),
        {run_desc({5, 4}), run_desc({5}, DataType::kINT32), run_desc({1, 8, 32, 32}), run_desc({1, 6, 16, 16})},
        {run_desc({5, 8, 7, 7})}, "feature map 1"));
    FieldSet dc;
    dc.i("stride", {1, 1}).i("padding", {0, 0});
    // The offset sized like the input (8×8) for a 3×3 kernel without padding (6×6): once a heap overflow.
    EXPECT(enqueue_refuses(create("EdgeSegDeformConv2d", dc),
        {run_desc({1, 4, 8, 8}), run_desc({6, 4, 3, 3}), run_desc({1, 18, 8, 8}), run_desc({0}), run_desc({0})},
        {run_desc({1, 6, 8, 8})}, "offset"));
    FieldSet dc2;
    dc2.i("stride", {1, 1}).i("padding", {0, 0});
    EXPECT(enqueue_refuses(create("EdgeSegDeformConv2d", dc2),
        {run_desc({1, 4, 8, 8}), run_desc({6, 4, 3, 3}), run_desc({1, 18, 6, 6}), run_desc({0}), run_desc({1, 9, 5, 5})},
        {run_desc({1, 6, 6, 6})}, "mask"));
    FieldSet v3;
    v3.i("kernel", {3, 3}).i("padding", {1, 1}).i("group", {2});
    EXPECT(enqueue_refuses(create("EdgeSegDCNv3", v3),
        {run_desc({1, 8, 8, 4}), run_desc({1, 8, 8, 36}), run_desc({1, 8, 8, 9})}, {run_desc({1, 8, 8, 4})}, "mask"));
    FieldSet pm;
    pm.f("threshold", {0.5f});
    EXPECT(enqueue_refuses(create("EdgeSegPasteMasks", pm),
        {run_desc({3, 28, 28}), run_desc({2, 4}), run_desc({1, 3, 64, 64})}, {run_desc({3, 64, 64})}, "boxes"));
    FieldSet pp;
    pp.i("num_classes", {4}).i("num_thing_classes", {2});
    EXPECT(enqueue_refuses(create("EdgeSegPanopticPaste", pp),
        {run_desc({16, 16}, DataType::kINT32), run_desc({3, 16, 16}), run_desc({2}), run_desc({3}, DataType::kINT32)},
        {run_desc({16, 16}, DataType::kINT32), run_desc({5, 5})}, "scores"));
    FieldSet mg;
    mg.i("num_classes", {4}).i("num_thing_classes", {2}).i("mask_rule", {0});
    EXPECT(enqueue_refuses(create("EdgeSegPanopticMerge", mg),
        {run_desc({16, 16}, DataType::kINT32), run_desc({3, 28, 28}), run_desc({2, 4}), run_desc({3}),
            run_desc({3}, DataType::kINT32)},
        {run_desc({16, 16}, DataType::kINT32), run_desc({5, 5})}, "boxes"));
    FieldSet mg1;
    mg1.i("num_classes", {4}).i("num_thing_classes", {2}).i("mask_rule", {1});
    EXPECT(enqueue_refuses(create("EdgeSegPanopticMerge", mg1),
        {run_desc({16, 16}, DataType::kINT32), run_desc({3, 28, 28}), run_desc({3, 4}), run_desc({3}),
            run_desc({3}, DataType::kINT32)},
        {run_desc({16, 16}, DataType::kINT32), run_desc({5, 5})}, "masks"));
    // An output shape TensorRT allocated differently from what the inputs give is refused too.
    FieldSet pm2;
    pm2.f("threshold", {0.5f});
    EXPECT(enqueue_refuses(create("EdgeSegPasteMasks", pm2),
        {run_desc({3, 28, 28}), run_desc({3, 4}), run_desc({1, 3, 64, 64})}, {run_desc({3, 32, 64})}, "output"));
}

// Absent bias or mask = an input with no elements, of any rank (the one definition, validate.h's
// optional_input): enqueue then hands the launcher a null pointer. A tensor with elements is present and
// must have exactly its shape; a scalar (rank 0) has one element, so it is present (and refused).
void test_deform_absent_bias_and_mask_are_empty_of_any_rank()
{
    using edgeseg::make_shape;
    auto run = [](edgeseg::Shape bias, edgeseg::Shape mask, bool& has_bias, bool& has_mask) {
        edgeseg::DeformConvParams p{0, 0, 1, 1, 0, 0, 1, 1, 1, 1};
        edgeseg::Shape out;
        return edgeseg::validate_deform_conv2d(make_shape({1, 4, 8, 8}), make_shape({6, 4, 3, 3}),
            make_shape({1, 18, 6, 6}), bias, mask, p, out, has_bias, has_mask);
    };
    bool b = true, m = true;
    for (auto const& empty : {make_shape({0}), make_shape({1, 0, 6, 6}), make_shape({0, 9}), make_shape({6, 0})})
    {
        b = m = true;
        EXPECT(run(empty, empty, b, m).ok && !b && !m);
    }
    EXPECT(run(make_shape({6}), make_shape({1, 9, 6, 6}), b, m).ok && b && m);
    EXPECT(!run(make_shape({}), make_shape({0}), b, m).ok);            // a scalar bias is not "absent"
    EXPECT(!run(make_shape({0}), make_shape({9, 6, 6}), b, m).ok);     // a mask without N: refused
    // The build-time shape check takes any rank for bias and mask (TensorRT gives them as they are).
    Builder bld;
    DimsExprs out[1];
    FieldSet fs;
    IPluginV3* p = create("EdgeSegDeformConv2d", fs);
    DimsExprs in[5] = {dims(bld, {1, 4, 8, 8}), dims(bld, {6, 4, 3, 3}), dims(bld, {1, 18, 6, 6}), dims(bld, {0, 6}),
        dims(bld, {1, 0, 6, 6})};
    EXPECT(p && cap<IPluginV3OneBuild>(p, PluginCapabilityType::kBUILD)->getOutputShapes(in, 5, nullptr, 0, out, 1, bld) == 0);
    EXPECT((values(out[0]) == std::vector<int64_t>{1, 6, 6, 6}));
    delete p;
}

void test_deform_output_size_is_the_convolution_formula()
{
    Builder b;
    DimsExprs out[1];
    FieldSet fs;
    fs.i("stride", {2, 1}).i("padding", {0, 2}).i("dilation", {1, 3});
    IPluginV3* p = create("EdgeSegDeformConv2d", fs);
    // Offset given at the input's size and bias/mask empty (1-D, no elements: absent).
    DimsExprs in[5] = {dims(b, {1, 4, 17, 20}), dims(b, {6, 4, 3, 3}), dims(b, {1, 18, 17, 20}), dims(b, {0}), dims(b, {0})};
    EXPECT(p && cap<IPluginV3OneBuild>(p, PluginCapabilityType::kBUILD)->getOutputShapes(in, 5, nullptr, 0, out, 1, b) == 0);
    // H: (17 − 3) / 2 + 1 = 8; W: (20 + 4 − 7) / 1 + 1 = 18.
    EXPECT((values(out[0]) == std::vector<int64_t>{1, 6, 8, 18}));
    delete p;
    FieldSet v3;
    v3.i("kernel", {5, 3}).i("stride", {2, 2}).i("padding", {1, 1});
    p = create("EdgeSegDCNv3", v3);
    DimsExprs in3[3] = {dims(b, {1, 20, 20, 8}), dims(b, {1, 1, 1, 30}), dims(b, {1, 1, 1, 15})};
    EXPECT(p && cap<IPluginV3OneBuild>(p, PluginCapabilityType::kBUILD)->getOutputShapes(in3, 3, nullptr, 0, out, 1, b) == 0);
    EXPECT((values(out[0]) == std::vector<int64_t>{1, 9, 10, 8})); // (20+2−5)/2+1 = 9, (20+2−3)/2+1 = 10
    delete p;
}

// DCNv2's launch grid: gridDim.y and gridDim.z never above 65,535 (the kernel loops over the rest); once
// gridDim.z was N·groups unchecked, an invalid launch at N·groups > 65,535.
void test_deform_grid_is_within_cuda_limits()
{
    using edgeseg::cuda::deform_conv_grid;
    auto const g = deform_conv_grid(70000, 1, 8, 1, 64, 64);
    EXPECT(g.z == 65535 && g.y == 1 && g.x == 1);
    auto const g2 = deform_conv_grid(4, 65536, 65536, 100, 64, 64);
    EXPECT(g2.z == 65535 && g2.y == 1 && g2.x == 2);
    auto const g3 = deform_conv_grid(1, 1, 64 * 70000, 4096, 64, 64);
    EXPECT(g3.y == 65535 && g3.z == 1 && g3.x == 64);
    auto const small = deform_conv_grid(2, 3, 96, 130, 64, 64);
    EXPECT(small.x == 3 && small.y == 1 && small.z == 6);
}

// EdgeSegPanopticPaste's scratch: parts in order, each on a 256-byte boundary, none overlapping the next; the
// zeroed prefix is exactly the three count arrays; the plugin asks TensorRT for that much at the profile's
// largest instance count.
void test_panoptic_scratch_layout()
{
    using edgeseg::cuda::PanopticScratch;
    using edgeseg::cuda::panoptic_scratch;
    for (auto const& rs : std::vector<std::pair<int64_t, int64_t>>{{0, 0}, {1, 0}, {0, 53}, {100, 53}, {4097, 65535}})
    {
        size_t const bytes = panoptic_scratch(rs.first, rs.second);
        std::vector<char> memory(bytes + 256);
        char* base = memory.data();
        PanopticScratch ws{};
        EXPECT(panoptic_scratch(rs.first, rs.second, base, &ws) == bytes);
        auto at = [base](void const* p) { return static_cast<size_t>(static_cast<char const*>(p) - base); };
        size_t const offsets[] = {at(ws.area), at(ws.kept), at(ws.stuff_area), at(ws.base), at(ws.order), at(ws.stuff_id), bytes};
        size_t const sizes[] = {size_t(rs.first) * 8, size_t(rs.first) * 8, size_t(rs.second) * 8, size_t(rs.first + 1) * 4,
            size_t(rs.first) * 4, size_t(rs.second) * 4};
        for (int i = 0; i < 6; ++i)
            EXPECT(offsets[i] % 256 == 0 && offsets[i] + sizes[i] <= offsets[i + 1]);
        EXPECT(ws.zeroed == at(ws.base));
    }
    FieldSet fs;
    fs.i("num_classes", {133}).i("num_thing_classes", {80});
    IPluginV3* p = create("EdgeSegPanopticPaste", fs);
    auto* build = p ? cap<IPluginV3OneBuild>(p, PluginCapabilityType::kBUILD) : nullptr;
    DynamicPluginTensorDesc io[4] = {desc(DataType::kINT32), desc(DataType::kFLOAT), desc(DataType::kFLOAT), desc(DataType::kINT32)};
    io[1].max.nbDims = 3;
    io[1].max.d[0] = 100;
    io[1].max.d[1] = 480;
    io[1].max.d[2] = 640;
    EXPECT(build && build->getWorkspaceSize(io, 4, nullptr, 2) == panoptic_scratch(100, 53));
    delete p;
}

// The one FP32/FP16 dispatch every enqueue and the CUDA C ABI use: kHALF picks __half, anything else float.
void test_feature_type_dispatch()
{
    auto size = [](auto* tag) { return static_cast<int>(sizeof(edgeseg::cuda::feature_t<decltype(tag)>)); };
    EXPECT(edgeseg::cuda::with_feature_type(true, size) == 2);
    EXPECT(edgeseg::cuda::with_feature_type(false, size) == 4);
    auto is_half = [](auto* tag) { return std::is_same<edgeseg::cuda::feature_t<decltype(tag)>, __half>::value; };
    EXPECT(edgeseg::cuda::with_feature_type(true, is_half) && !edgeseg::cuda::with_feature_type(false, is_half));
}

// The creators follow the node spec (node_spec.h, generated from plugins/spec/nodes.json) field by field:
// the field list's names, types and order; a plugin made from the required fields alone serializes every
// optional field at the spec's default; and each required field left out is refused, naming it.
template <class Node>
void check_node_against_spec()
{
    IPluginCreatorV3One* c = creator(Node::kName);
    EXPECT(c != nullptr);
    if (!c)
        return;
    PluginFieldCollection const* names = c->getFieldNames();
    EXPECT(names->nbFields == Node::kFieldCount);
    for (int k = 0; k < Node::kFieldCount && k < names->nbFields; ++k)
    {
        auto const& d = Node::kFields[k];
        EXPECT(std::strcmp(names->fields[k].name, d.name) == 0);
        EXPECT(names->fields[k].type
            == (d.type == edgeseg::spec::FieldType::kInt32 ? PluginFieldType::kINT32 : PluginFieldType::kFLOAT32));
    }
    FieldSet required;
    for (auto const& d : Node::kFields)
        if (d.required && d.type == edgeseg::spec::FieldType::kInt32)
            required.i(d.name, std::vector<int32_t>(d.min_count, static_cast<int32_t>(d.range.lo)));
        else if (d.required)
            required.f(d.name, std::vector<float>(d.min_count, static_cast<float>(d.range.hi)));
    IPluginV3* p = create(Node::kName, required);
    EXPECT(p != nullptr);
    if (p)
    {
        auto const* fc = cap<IPluginV3OneRuntime>(p, PluginCapabilityType::kRUNTIME)->getFieldsToSerialize();
        EXPECT(fc->nbFields == Node::kFieldCount);
        for (int k = 0; k < Node::kFieldCount && k < fc->nbFields; ++k)
        {
            auto const& d = Node::kFields[k];
            EXPECT(std::strcmp(fc->fields[k].name, d.name) == 0);
            if (d.required)
                continue;
            EXPECT(fc->fields[k].length == d.n_defaults);
            for (int i = 0; i < d.n_defaults && i < fc->fields[k].length; ++i)
            {
                double const v = fc->fields[k].type == PluginFieldType::kINT32
                    ? static_cast<int32_t const*>(fc->fields[k].data)[i]
                    : static_cast<double>(static_cast<float const*>(fc->fields[k].data)[i]);
                if (v != static_cast<double>(static_cast<float>(d.defaults[i])))
                    std::printf("  %s field '%s' serializes %g, the spec's default is %g\n", Node::kName, d.name, v, d.defaults[i]);
                EXPECT(v == static_cast<double>(static_cast<float>(d.defaults[i])));
            }
        }
        delete p;
    }
    for (auto const& left_out : Node::kFields)
    {
        if (!left_out.required)
            continue;
        FieldSet fs;
        for (auto const& d : Node::kFields)
            if (d.required && &d != &left_out && d.type == edgeseg::spec::FieldType::kInt32)
                fs.i(d.name, std::vector<int32_t>(d.min_count, static_cast<int32_t>(d.range.lo)));
            else if (d.required && &d != &left_out)
                fs.f(d.name, std::vector<float>(d.min_count, static_cast<float>(d.range.hi)));
        IPluginV3* q = create(Node::kName, fs);
        EXPECT(q == nullptr && std::string(edgeseg_plugin_last_error()).find(left_out.name) != std::string::npos);
        delete q;
    }
}

void test_creators_follow_the_node_spec()
{
    using namespace edgeseg::spec;
    check_node_against_spec<RoIAlignNode>();
    check_node_against_spec<MultilevelRoIAlignNode>();
    check_node_against_spec<DeformConv2dNode>();
    check_node_against_spec<DCNv3Node>();
    check_node_against_spec<PasteMasksNode>();
    check_node_against_spec<PanopticPasteNode>();
    check_node_against_spec<PanopticMergeNode>();
}

// The panoptic paste order as the CUDA kernel builds it (each instance's rank = how many come before it,
// order[rank] = instance): a permutation for any scores — NaN (ranked as −inf, ties by index), ±inf and
// duplicates included — so no order slot is left unset and none written twice.
void test_panoptic_order_is_a_permutation_with_nan_scores()
{
    float const nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    std::vector<std::vector<float>> cases{{nan, 0.9f, nan, 0.9f, -inf, inf, 0.f, nan, -inf},
        {nan, nan, nan}, {0.5f, 0.5f, 0.5f, 0.5f}, {-0.f, 0.f, nan}};
    std::mt19937 rng(3);
    for (int t = 0; t < 50; ++t)
    {
        std::vector<float> v(1 + rng() % 40);
        for (auto& x : v)
            x = std::vector<float>{nan, inf, -inf, 0.5f, 0.25f, 1.f, 0.f}[rng() % 7];
        cases.push_back(v);
    }
    for (auto const& scores : cases)
    {
        int const r = static_cast<int>(scores.size());
        std::vector<int> order(r, -1);
        bool twice = false;
        for (int j = 0; j < r; ++j)
        {
            int rank = 0;
            for (int i = 0; i < r; ++i)
                rank += edgeseg::panoptic_before(scores[i], i, scores[j], j);
            twice |= rank >= r || order[rank] != -1;
            if (rank < r)
                order[rank] = j;
        }
        EXPECT(!twice);
        for (int k = 0; k < r; ++k)
            EXPECT(order[k] != -1);
        for (int k = 1; k < r; ++k) // NaN ranks as −inf: after it only NaN or −inf, by index
            if (scores[order[k - 1]] != scores[order[k - 1]])
                EXPECT(edgeseg::panoptic_key(scores[order[k]]) == -inf && order[k] > order[k - 1]);
    }
}

int main()
{
    test_creators();
    test_roi_align();
    test_shapes_of_the_others();
    test_refusals_say_why();
    test_random_payloads();
    test_truncated_payloads();
    test_enqueue_validates_shapes();
    test_deform_output_size_is_the_convolution_formula();
    test_deform_absent_bias_and_mask_are_empty_of_any_rank();
    test_panoptic_order_is_a_permutation_with_nan_scores();
    test_deform_grid_is_within_cuda_limits();
    test_panoptic_scratch_layout();
    test_feature_type_dispatch();
    test_creators_follow_the_node_spec();
    std::printf(failures ? "%d FAILED\n" : "all plugin host tests passed\n", failures);
    return failures ? 1 : 0;
}
