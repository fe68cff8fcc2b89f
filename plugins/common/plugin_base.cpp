#include "common/plugin_base.h"

#include <cmath>
#include <cstdio>
#include <mutex>

namespace edgeseg
{
namespace plugin
{

namespace
{
std::mutex error_mutex;
std::string last_error;
ILogger* logger = nullptr;
} // namespace

void set_logger(ILogger* l) { logger = l; }

void report_error(std::string const& message)
{
    {
        std::lock_guard<std::mutex> lock(error_mutex);
        last_error = message;
    }
    if (logger)
        logger->log(ILogger::Severity::kERROR, message.c_str());
}

std::string get_last_error()
{
    std::lock_guard<std::mutex> lock(error_mutex);
    return last_error;
}

static char const* type_name(PluginFieldType t)
{
    switch (t)
    {
    case PluginFieldType::kINT32: return "int32";
    case PluginFieldType::kFLOAT32: return "float32";
    case PluginFieldType::kINT64: return "int64";
    case PluginFieldType::kFLOAT64: return "float64";
    case PluginFieldType::kCHAR: return "char";
    default: return "another type";
    }
}

bool parse_fields(char const* plugin, std::vector<FieldSpec> const& specs, PluginFieldCollection const* fc,
    Fields& out, std::string& error)
{
    out.values.assign(specs.size(), {});
    std::vector<bool> seen(specs.size(), false);
    if (fc == nullptr || fc->nbFields < 0 || (fc->nbFields > 0 && fc->fields == nullptr))
    {
        error = std::string(plugin) + ": no field collection";
        return false;
    }
    if (fc->nbFields > 64)
    {
        error = std::string(plugin) + ": " + std::to_string(fc->nbFields) + " fields is more than any version had";
        return false;
    }
    for (int32_t f = 0; f < fc->nbFields; ++f)
    {
        PluginField const& field = fc->fields[f];
        if (field.name == nullptr)
        {
            error = std::string(plugin) + ": a field without a name";
            return false;
        }
        size_t k = 0;
        while (k < specs.size() && std::strncmp(specs[k].name, field.name, 64) != 0)
            ++k;
        if (k == specs.size())
            continue; // unknown fields (e.g. the parser's plugin_version) are ignored
        FieldSpec const& s = specs[k];
        std::string const where = std::string(plugin) + " field '" + s.name + "'";
        if (seen[k])
        {
            error = where + " given twice";
            return false;
        }
        seen[k] = true;
        if (field.type != s.type && !(s.type == PluginFieldType::kINT32 && field.type == PluginFieldType::kINT64)
            && !(s.type == PluginFieldType::kFLOAT32 && field.type == PluginFieldType::kFLOAT64))
        {
            error = where + " is " + type_name(field.type) + ", expected " + type_name(s.type);
            return false;
        }
        if (field.length < s.min_length || field.length > s.max_length || (field.length > 0 && field.data == nullptr))
        {
            error = where + " has " + std::to_string(field.length) + " value(s), expected " + std::to_string(s.min_length)
                + (s.max_length != s.min_length ? ".." + std::to_string(s.max_length) : "");
            return false;
        }
        auto& vals = out.values[k];
        for (int32_t i = 0; i < field.length; ++i)
        {
            double v = 0;
            switch (field.type)
            {
            case PluginFieldType::kINT32: { int32_t x; std::memcpy(&x, static_cast<char const*>(field.data) + 4 * i, 4); v = x; break; }
            case PluginFieldType::kINT64: { int64_t x; std::memcpy(&x, static_cast<char const*>(field.data) + 8 * i, 8); v = static_cast<double>(x); break; }
            case PluginFieldType::kFLOAT32: { float x; std::memcpy(&x, static_cast<char const*>(field.data) + 4 * i, 4); v = x; break; }
            default: { double x; std::memcpy(&x, static_cast<char const*>(field.data) + 8 * i, 8); v = x; break; }
            }
            if (!std::isfinite(v) || v < s.lo || v > s.hi)
            {
                char buf[160];
                std::snprintf(buf, sizeof buf, " value %g is outside [%g, %g]", v, s.lo, s.hi);
                error = where + buf;
                return false;
            }
            vals.push_back(v);
        }
    }
    for (size_t k = 0; k < specs.size(); ++k)
    {
        if (specs[k].required && !seen[k])
        {
            error = std::string(plugin) + ": required field '" + specs[k].name + "' is missing";
            return false;
        }
        if (!seen[k])
            out.values[k] = specs[k].defaults;
    }
    return true;
}

void FieldStore::clear()
{
    mInts.clear();
    mFloats.clear();
    mPending.clear();
    mFields.clear();
}

void FieldStore::add_ints(char const* name, std::vector<int32_t> v)
{
    mInts.push_back(std::move(v));
    mPending.push_back({name, true, mInts.size() - 1});
}

void FieldStore::add_floats(char const* name, std::vector<float> v)
{
    mFloats.push_back(std::move(v));
    mPending.push_back({name, false, mFloats.size() - 1});
}

PluginFieldCollection const* FieldStore::collection()
{
    mFields.clear();
    for (auto const& p : mPending)
    {
        if (p.is_int)
            mFields.emplace_back(p.name, mInts[p.index].data(), PluginFieldType::kINT32, static_cast<int32_t>(mInts[p.index].size()));
        else
            mFields.emplace_back(p.name, mFloats[p.index].data(), PluginFieldType::kFLOAT32, static_cast<int32_t>(mFloats[p.index].size()));
    }
    mCollection.nbFields = static_cast<int32_t>(mFields.size());
    mCollection.fields = mFields.data();
    return &mCollection;
}

IPluginCapability* PluginBase::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

PluginFieldCollection const* PluginBase::getFieldsToSerialize() noexcept
{
    mStore.clear();
    serialize(mStore);
    return mStore.collection();
}

bool PluginBase::same_float_linear(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t first, int32_t end)
{
    auto const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
        return false;
    if (pos == first)
        return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
    return pos < end ? d.type == inOut[first].desc.type : true;
}

} // namespace plugin
} // namespace edgeseg
