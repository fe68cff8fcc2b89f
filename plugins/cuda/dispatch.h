// The one FP32/FP16 dispatch: every caller of a templated launcher (the TensorRT plugins' enqueue, the
// C ABI of libedgeseg_cuda) picks the feature type here, once, instead of writing the call twice.
#pragma once
#include <cuda_fp16.h>
#include <type_traits>

namespace edgeseg
{
namespace cuda
{

// Calls f with a null T* (T = __half when `half`, else float) as a type tag and returns what f returns:
//   with_feature_type(half, [&](auto* tag) { using T = feature_t<decltype(tag)>; return launch<T>(...); });
template <class F>
auto with_feature_type(bool half, F&& f) -> decltype(f(static_cast<float*>(nullptr)))
{
    return half ? f(static_cast<__half*>(nullptr)) : f(static_cast<float*>(nullptr));
}

template <class Tag>
using feature_t = std::remove_pointer_t<Tag>;

} // namespace cuda
} // namespace edgeseg
