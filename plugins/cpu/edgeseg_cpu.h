// The CPU launchers: a C ABI over the math cores in include/edgeseg (float32, contiguous NCHW unless
// stated). Every function returns 0, or a negative code for arguments it refuses (see es_last_error).
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

char const* es_last_error(void);

// rois: k×5 (batch index, x1, y1, x2, y2). out: k×c×out_h×out_w.
int es_roi_align(float const* input, int n, int c, int h, int w, float const* rois, int k, int out_h, int out_w,
    float spatial_scale, int sampling_ratio, int aligned, float* out);

// features[l]: n×c×heights[l]×widths[l], finest first; spatial_scales[l] = 2^-(first_level + l).
int es_multilevel_roi_align(float const* const* features, int const* heights, int const* widths, int levels, int n,
    int c, float const* rois, int k, int out_h, int out_w, float const* spatial_scales, int sampling_ratio, int aligned,
    float canonical_scale, int canonical_level, int first_level, float* out);

// weight: cout×(cin/groups)×kh×kw; offset: n×(2·og·kh·kw)×ho×wo; mask (nullable): n×(og·kh·kw)×ho×wo;
// bias nullable. out: n×cout×ho×wo.
int es_deform_conv2d(float const* input, int n, int cin, int h, int w, float const* weight, int cout, int kh, int kw,
    float const* offset, float const* mask, float const* bias, int stride_h, int stride_w, int pad_h, int pad_w,
    int dil_h, int dil_w, int groups, int offset_groups, float* out);

// Channels-last: input n×h×w×c, offset n×ho×wo×(group·kh·kw·2), mask n×ho×wo×(group·kh·kw); out n×ho×wo×c.
int es_dcnv3(float const* input, int n, int h, int w, int c, float const* offset, float const* mask, int kh, int kw,
    int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, int group, float offset_scale, float* out);

// masks: r×mh×mw, boxes: r×4 (x1, y1, x2, y2). out: r×h×w.
int es_paste_masks(float const* masks, int r, int mh, int mw, float const* boxes, int h, int w, float threshold,
    float* out);

// semantic: h×w labels; masks: r×h×w; scores, classes: r. ids: h×w; segments: (r + num_classes −
// num_thing_classes)×5 (id, category, is_thing, area, score).
int es_panoptic_paste(int32_t const* semantic, int h, int w, float const* masks, float const* scores,
    int32_t const* classes, int r, int num_classes, int num_thing_classes, float overlap_threshold,
    int64_t min_stuff_area, float score_threshold, int32_t* ids, float* segments);

#ifdef __cplusplus
}
#endif
