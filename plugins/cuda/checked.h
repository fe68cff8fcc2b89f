// The checked C ABI's shared helpers (capi_checked.cu, capi_checked_panoptic.cu): es_tensor -> Shape, the
// output's query/run handling and the refusal message. Host code only.
#pragma once
#include <initializer_list>
#include <string>

#include <cuda_runtime_api.h>

#include "cpu/edgeseg_cpu.h"
#include "edgeseg/validate.h"

namespace edgeseg
{
namespace checked
{

inline thread_local std::string last_error;

// A missing tensor or a rank outside 0..kMaxRank becomes rank -1, which every check refuses.
inline Shape shape_of(es_tensor const* t)
{
    Shape s;
    s.rank = -1;
    if (t == nullptr || t->rank < 0 || t->rank > kMaxRank)
        return s;
    s.rank = t->rank;
    for (int i = 0; i < s.rank; ++i)
        s.d[i] = t->dims[i];
    return s;
}

// 1: query answered or nothing to launch; 0: launch; -1: refused (last_error set).
inline int settle(Status const& st, char const* op, es_tensor* out, Shape const& want)
{
    if (!st)
    {
        last_error = st.message;
        return -1;
    }
    if (out == nullptr)
    {
        last_error = std::string(op) + ": no output tensor given";
        return -1;
    }
    if (out->data == nullptr)
    {
        out->rank = want.rank;
        for (int i = 0; i < want.rank; ++i)
            out->dims[i] = want.d[i];
        return 1;
    }
    if (!same(shape_of(out), want))
    {
        last_error = std::string(op) + ": output must be " + to_string(want) + ", got " + to_string(shape_of(out));
        return -1;
    }
    return numel(want) == 0 ? 1 : 0;
}

template <typename T>
T const* in(es_tensor const* t)
{
    return t ? static_cast<T const*>(t->data) : nullptr;
}

// A tensor with elements must come with data (the shape checks cannot see a NULL pointer).
inline bool has_data(std::initializer_list<es_tensor const*> ts)
{
    for (es_tensor const* t : ts)
        if (t != nullptr && t->data == nullptr && numel(shape_of(t)) != 0)
        {
            last_error = "an input with elements has no data";
            return false;
        }
    return true;
}

inline int status(int step, cudaError_t launched) { return step != 0 ? (step < 0 ? -1 : 0) : static_cast<int>(launched); }

} // namespace checked
} // namespace edgeseg

