// The checked entry points of the panoptic launchers (see capi_checked.cu): es_panoptic_paste's and
// es_panoptic_merge's signatures over device pointers (+ a stream), validate.h's checks first. The workspace the
// plugins get from TensorRT is allocated here on the stream. Follows the panoptic node as plugins/ defines it.
#include "cuda/checked.h"
#include "cuda/launchers.h"

using namespace edgeseg;
using checked::in;
using checked::shape_of;

namespace
{
// Both outputs settled: -1 refused, 1 query answered (ids without data), 0 launch. ids always has elements (the
// semantic map's H×W ≥ 1); segments may have none (no instances, no stuff classes), then it needs no data.
int settle_two(Status const& st, char const* op, es_tensor* ids, Shape const& want_ids, es_tensor* segments,
    Shape const& want_segments)
{
    if (checked::settle(st, op, ids, want_ids) < 0 || checked::settle(Status{}, op, segments, want_segments) < 0)
        return -1;
    if (ids->data == nullptr)
        return 1;
    if (segments->data == nullptr && numel(want_segments) != 0)
    {
        checked::last_error = std::string(op) + ": output 'segments' has no data";
        return -1;
    }
    return 0;
}

template <typename Launch>
int with_workspace(int64_t r, int64_t stuff, cudaStream_t stream, Launch launch)
{
    size_t const bytes = cuda::panoptic_scratch(r, stuff);
    void* workspace = nullptr;
    cudaError_t err = cudaMallocAsync(&workspace, bytes, stream);
    if (err != cudaSuccess)
        return static_cast<int>(err);
    err = launch(workspace);
    cudaError_t const freed = cudaFreeAsync(workspace, stream);
    return static_cast<int>(err != cudaSuccess ? err : freed);
}
} // namespace

extern "C" int es_cuda_checked_panoptic_paste(es_tensor const* semantic, es_tensor const* masks, es_tensor const* scores,
    es_tensor const* classes, int num_classes, int num_thing_classes, float overlap_threshold, int64_t min_stuff_area,
    float score_threshold, es_tensor* ids, es_tensor* segments, void* stream)
{
    char const* op = "EdgeSegPanopticPaste";
    PanopticParams const p{num_classes, num_thing_classes, overlap_threshold, min_stuff_area, score_threshold};
    Shape want_ids, want_segments;
    Status const st = validate_panoptic_paste(shape_of(semantic), shape_of(masks), shape_of(scores), shape_of(classes),
        p, want_ids, want_segments);
    int const step = settle_two(st, op, ids, want_ids, segments, want_segments);
    if (step != 0)
        return step < 0 ? -1 : 0;
    if (!checked::has_data({semantic, masks, scores, classes}))
        return -1;
    int const h = static_cast<int>(want_ids.d[0]), w = static_cast<int>(want_ids.d[1]);
    int const r = static_cast<int>(masks->dims[0]);
    auto s = static_cast<cudaStream_t>(stream);
    return with_workspace(r, num_classes - num_thing_classes, s, [&](void* workspace) {
        return cuda::panoptic_paste(in<int32_t>(semantic), h, w, in<float>(masks), in<float>(scores),
            in<int32_t>(classes), r, num_classes, num_thing_classes, overlap_threshold, min_stuff_area, score_threshold,
            static_cast<int32_t*>(ids->data), static_cast<float*>(segments->data), workspace, s);
    });
}

extern "C" int es_cuda_checked_panoptic_merge(es_tensor const* semantic, es_tensor const* masks, es_tensor const* boxes,
    es_tensor const* scores, es_tensor const* classes, int mask_rule, int num_classes, int num_thing_classes,
    float overlap_threshold, int64_t min_stuff_area, float score_threshold, es_tensor* ids, es_tensor* segments,
    void* stream)
{
    char const* op = "EdgeSegPanopticMerge";
    PanopticParams const p{num_classes, num_thing_classes, overlap_threshold, min_stuff_area, score_threshold};
    Shape want_ids, want_segments;
    Status const st = validate_panoptic_merge(shape_of(semantic), shape_of(masks), shape_of(boxes), shape_of(scores),
        shape_of(classes), mask_rule, p, want_ids, want_segments);
    int const step = settle_two(st, op, ids, want_ids, segments, want_segments);
    if (step != 0)
        return step < 0 ? -1 : 0;
    if (!checked::has_data({semantic, masks, boxes, scores, classes}))
        return -1;
    int const h = static_cast<int>(want_ids.d[0]), w = static_cast<int>(want_ids.d[1]);
    int const r = static_cast<int>(masks->dims[0]), mh = static_cast<int>(masks->dims[1]);
    int const mw = static_cast<int>(masks->dims[2]);
    auto s = static_cast<cudaStream_t>(stream);
    return with_workspace(r, num_classes - num_thing_classes, s, [&](void* workspace) {
        return cuda::panoptic_merge(in<int32_t>(semantic), h, w, in<float>(masks), mh, mw, in<float>(boxes),
            in<float>(scores), in<int32_t>(classes), r, mask_rule, num_classes, num_thing_classes, overlap_threshold,
            min_stuff_area, score_threshold, static_cast<int32_t*>(ids->data), static_cast<float*>(segments->data),
            workspace, s);
    });
}
