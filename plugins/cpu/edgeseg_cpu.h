// The CPU launchers: a C ABI over the math cores in include/edgeseg. Every tensor is passed with its
// shape (es_tensor: float32 unless stated, contiguous, row-major), so the launcher checks all shapes
// against each other and every attribute against the node spec (include/edgeseg/validate.h) before it
// reads or writes anything. Each function returns 0, or -1 for arguments it refuses (es_last_error()
// says which input or field and why; nothing was written).
//
// Query mode: pass an output whose data is NULL and the launcher only validates and fills in the
// output's rank and dims. Otherwise the output's shape must equal the one validation computes.
// An optional input (mask, bias) is absent when its data is NULL or it has no elements.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ES_MAX_RANK 8

typedef struct es_tensor
{
    void* data; // read-only for inputs
    int32_t rank;
    int64_t dims[ES_MAX_RANK];
} es_tensor;

char const* es_last_error(void);

// x N×C×H×W, rois K×4 (x1, y1, x2, y2), batch_indices K int32 -> out K×C×out_h×out_w. A RoI with a
// non-finite coordinate or a batch index outside [0, N) gets zeros.
int es_roi_align(es_tensor const* x, es_tensor const* rois, es_tensor const* batch_indices, int out_h, int out_w,
    float spatial_scale, int sampling_ratio, int aligned, es_tensor* out);

// features[l] N×C×H_l×W_l, finest first, one per spatial scale (2^-(first_level + l)).
int es_multilevel_roi_align(es_tensor const* rois, es_tensor const* batch_indices, es_tensor const* features,
    int levels, int out_h, int out_w, float const* spatial_scales, int sampling_ratio, int aligned,
    float canonical_scale, int canonical_level, int first_level, es_tensor* out);

// x N×Cin×H×W, weight Cout×(Cin/groups)×kh×kw, offset N×(2·og·kh·kw)×Ho×Wo, bias Cout (optional),
// mask N×(og·kh·kw)×Ho×Wo (optional) -> out N×Cout×Ho×Wo, Ho/Wo by the convolution formula.
int es_deform_conv2d(es_tensor const* x, es_tensor const* weight, es_tensor const* offset, es_tensor const* bias,
    es_tensor const* mask, int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, int groups,
    int offset_groups, es_tensor* out);

// Channels-last: x N×H×W×C, offset N×Ho×Wo×(group·kh·kw·2), mask N×Ho×Wo×(group·kh·kw) -> out N×Ho×Wo×C.
int es_dcnv3(es_tensor const* x, es_tensor const* offset, es_tensor const* mask, int kh, int kw, int stride_h,
    int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, int group, float offset_scale, es_tensor* out);

// masks R×M×M', boxes R×4 (x1, y1, x2, y2), image …×H×W (only its shape is read; data may be NULL)
// -> out R×H×W, torchvision's paste_masks_in_image arithmetic. A box with a non-finite corner pastes zeros.
int es_paste_masks(es_tensor const* masks, es_tensor const* boxes, es_tensor const* image, float threshold,
    es_tensor* out);

// semantic H×W int32, masks R×H×W, scores R, classes R int32 -> ids H×W int32, segments
// (R + num_classes − num_thing_classes)×5 (id, category, is_thing, area, score). A NaN score is last
// in the order and never accepted.
int es_panoptic_paste(es_tensor const* semantic, es_tensor const* masks, es_tensor const* scores,
    es_tensor const* classes, int num_classes, int num_thing_classes, float overlap_threshold, int64_t min_stuff_area,
    float score_threshold, es_tensor* ids, es_tensor* segments);

// EdgeSegPanopticMerge: es_panoptic_paste's merge with each instance read only inside its box. semantic H×W
// int32, masks R×M×M' (mask_rule 0: pasted into the boxes as es_paste_masks, in where > 0.5) or R×0×0
// (mask_rule 1: a pixel whose centre lies in the box and whose label is the instance's class), boxes R×4,
// scores R, classes R int32 -> ids H×W int32, segments (R + num_classes − num_thing_classes)×5.
int es_panoptic_merge(es_tensor const* semantic, es_tensor const* masks, es_tensor const* boxes,
    es_tensor const* scores, es_tensor const* classes, int mask_rule, int num_classes, int num_thing_classes,
    float overlap_threshold, int64_t min_stuff_area, float score_threshold, es_tensor* ids, es_tensor* segments);

#ifdef __cplusplus
}
#endif
