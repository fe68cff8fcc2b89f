// Mask pasting (Mask R-CNN) and the panoptic head's accept rule (LPSNet).
#pragma once
#include "common.h"

namespace edgeseg
{

// Mask pasting with torchvision's paste_masks_in_image semantics (padding 1), the reference users compare
// with: the mh×mw mask is zero-padded to (mh+2)×(mw+2); the box is expanded about its centre by
// (m+2)/m per axis and truncated to integers (x0, y0, x1, y1); the padded mask is resized bilinearly
// (align_corners=False, PyTorch's F.interpolate arithmetic) to the integer box's size
// (x1 − x0 + 1)×(y1 − y0 + 1), at least 1×1, and written with its top-left at (x0, y0), clipped to the
// image. A box with a NaN or ±inf corner pastes zeros (in every implementation).
struct PasteGrid
{
    int x0, y0, x1, y1;     // the expanded integer box (inclusive)
    float scale_x, scale_y; // padded mask cells per box pixel
    bool valid;
};

// torchvision truncates the expanded corner to int64; corners are clamped to ±2^29 first (no float →
// int overflow; a box that large covers any image either way).
ES_HD int paste_corner(float v)
{
    constexpr float kLimit = 536870912.f;
    return static_cast<int>(v < -kLimit ? -kLimit : (v > kLimit ? kLimit : v));
}

ES_HD PasteGrid paste_grid(float x1, float y1, float x2, float y2, int mh, int mw)
{
    PasteGrid g{};
    g.valid = finite(x1) && finite(y1) && finite(x2) && finite(y2);
    if (!g.valid)
        return g;
    // torchvision: scale = float(m + 2) / m (a double, applied to float32 boxes as float).
    float const ex = static_cast<float>(static_cast<double>(mw + 2) / mw);
    float const ey = static_cast<float>(static_cast<double>(mh + 2) / mh);
    float const w_half = (x2 - x1) * .5f * ex, h_half = (y2 - y1) * .5f * ey;
    float const xc = (x2 + x1) * .5f, yc = (y2 + y1) * .5f;
    g.x0 = paste_corner(xc - w_half);
    g.x1 = paste_corner(xc + w_half);
    g.y0 = paste_corner(yc - h_half);
    g.y1 = paste_corner(yc + h_half);
    int const bw = g.x1 - g.x0 + 1, bh = g.y1 - g.y0 + 1;
    g.scale_x = static_cast<float>(mw + 2) / static_cast<float>(bw > 1 ? bw : 1);
    g.scale_y = static_cast<float>(mh + 2) / static_cast<float>(bh > 1 ? bh : 1);
    return g;
}

// Bilinear source taps of box pixel d along one axis of a padded mask of `cells` cells (F.interpolate,
// align_corners=False): i0, i1 and the weight of i1.
ES_HD void paste_taps(float scale, int d, int cells, int& i0, int& i1, float& l1)
{
    float src = scale * (static_cast<float>(d) + .5f) - .5f;
    src = src < 0.f ? 0.f : src;
    i0 = static_cast<int>(src);
    i0 = i0 < cells - 1 ? i0 : cells - 1;
    i1 = i0 + (i0 < cells - 1 ? 1 : 0);
    l1 = src - static_cast<float>(i0);
    l1 = l1 < 0.f ? 0.f : (l1 > 1.f ? 1.f : l1);
}

// Cell (y, x) of the zero-padded mask.
template <typename T>
ES_HD float padded_cell(T const* mask, int mh, int mw, int y, int x)
{
    return (y >= 1 && y <= mh && x >= 1 && x <= mw) ? to_float(mask[(y - 1) * mw + (x - 1)]) : 0.f;
}

// Pixel (py, px) of the image from an mh×mw mask pasted by grid g. threshold >= 0: 1 where the value
// >= threshold, else 0; < 0: the value itself.
template <typename T>
ES_HD float paste_pixel(T const* mask, int mh, int mw, PasteGrid const& g, int py, int px, float threshold)
{
    if (!g.valid || px < g.x0 || px > g.x1 || py < g.y0 || py > g.y1)
        return 0.f;
    int y0, y1, x0, x1;
    float ly, lx;
    paste_taps(g.scale_y, py - g.y0, mh + 2, y0, y1, ly);
    paste_taps(g.scale_x, px - g.x0, mw + 2, x0, x1, lx);
    float const value = (1.f - ly) * ((1.f - lx) * padded_cell(mask, mh, mw, y0, x0) + lx * padded_cell(mask, mh, mw, y0, x1))
        + ly * ((1.f - lx) * padded_cell(mask, mh, mw, y1, x0) + lx * padded_cell(mask, mh, mw, y1, x1));
    return threshold < 0.f ? value : (value >= threshold ? 1.f : 0.f);
}

// Pixels [lo, hi) along one axis that box [a, b] (inclusive) can write in an image of `size` pixels.
ES_HD void paste_extent(int a, int b, int size, int& lo, int& hi)
{
    lo = a < 0 ? 0 : (a > size ? size : a);
    hi = b + 1 < lo ? lo : (b + 1 > size ? size : b + 1);
}

// An instance scoring under score_threshold (or NaN) is never accepted, so launchers need not read its pixels.
ES_HD bool panoptic_scores_enough(float score, float score_threshold) { return score >= score_threshold; }

// Whether an instance (in score order) becomes a segment: it must score enough, have pixels, keep
// some, and overlap what is already occupied by at most overlap_threshold of its area.
ES_HD bool panoptic_accept(float score, int64_t area, int64_t kept, float score_threshold, float overlap_threshold)
{
    return panoptic_scores_enough(score, score_threshold) && area > 0 && kept > 0
        && static_cast<float>(area - kept) <= overlap_threshold * static_cast<float>(area);
}

// A pixel belongs to an instance when its mask value exceeds 0.5 (NaN never does).
ES_HD bool panoptic_in_mask(float value) { return value > .5f; }

// A semantic label is stuff when it lies in [num_thing_classes, num_classes) (other labels are void).
ES_HD bool panoptic_is_stuff(int32_t label, int num_thing_classes, int num_classes)
{
    return label >= num_thing_classes && label < num_classes;
}

// A stuff class becomes a segment when it has free pixels, at least min_stuff_area of them.
ES_HD bool panoptic_accept_stuff(int64_t area, int64_t min_stuff_area) { return area > 0 && area >= min_stuff_area; }

// Segment `id`'s row of the segments table (row id − 1): id, category, is_thing, area, score.
ES_HD void panoptic_segment_row(float* table, int32_t id, float category, float is_thing, int64_t area, float score)
{
    float* row = table + static_cast<int64_t>(id - 1) * 5;
    row[0] = static_cast<float>(id);
    row[1] = category;
    row[2] = is_thing;
    row[3] = static_cast<float>(area);
    row[4] = score;
}

// The order instances are pasted in: score descending, ties by index (a stable sort). A NaN score
// ranks as -inf (last, by index) and is never accepted, so the order is total and every rank unique.
ES_HD float panoptic_key(float score) { return score == score ? score : -INFINITY; }
ES_HD bool panoptic_before(float score_a, int a, float score_b, int b)
{
    float const ka = panoptic_key(score_a), kb = panoptic_key(score_b);
    return ka > kb || (ka == kb && a < b);
}


// EdgeSegPanopticMerge: the merge reads each instance only inside its box, never as a full-image mask.
// mask_rule 0 (Mask R-CNN, Panoptic FPN): the instance's M×M' mask pasted into its box as paste_pixel does
// (soft), in where > 0.5; mask_rule 1 (LPSNet): the pixels whose centre (x + 0.5, y + 0.5) lies in the box
// (edges included) and whose semantic label is the instance's class. A box with a NaN or ±inf corner has
// no pixels under either rule.
constexpr int kMaskRulePaste = 0;
constexpr int kMaskRuleBoxClass = 1;

struct MergeInstance
{
    int y_lo, y_hi, x_lo, x_hi; // the pixels the rule can take: rows [y_lo, y_hi), columns [x_lo, x_hi)
    PasteGrid g;                // rule 0
    float x1, y1, x2, y2;       // rule 1
    int32_t cls;                // rule 1
};

ES_HD MergeInstance merge_instance(int rule, float const* box, int mh, int mw, int32_t cls, int h, int w)
{
    MergeInstance m{};
    m.x1 = box[0];
    m.y1 = box[1];
    m.x2 = box[2];
    m.y2 = box[3];
    m.cls = cls;
    if (!(finite(m.x1) && finite(m.y1) && finite(m.x2) && finite(m.y2)))
        return m; // empty extent
    if (rule == kMaskRulePaste)
    {
        m.g = paste_grid(m.x1, m.y1, m.x2, m.y2, mh, mw);
        paste_extent(m.g.y0, m.g.y1, h, m.y_lo, m.y_hi);
        paste_extent(m.g.x0, m.g.x1, w, m.x_lo, m.x_hi);
        return m;
    }
    // A superset of the centres inside (one pixel each side); merge_in_instance decides exactly.
    paste_extent(paste_corner(floorf(m.y1)) - 1, paste_corner(ceilf(m.y2)) + 1, h, m.y_lo, m.y_hi);
    paste_extent(paste_corner(floorf(m.x1)) - 1, paste_corner(ceilf(m.x2)) + 1, w, m.x_lo, m.x_hi);
    return m;
}

// Whether pixel (py, px), inside m's extent, belongs to the instance. mask: its M×M' mask (rule 0);
// semantic: the H×W label map, row length w (rule 1).
template <typename T>
ES_HD bool merge_in_instance(int rule, MergeInstance const& m, T const* mask, int mh, int mw, int32_t const* semantic,
    int w, int py, int px)
{
    if (rule == kMaskRulePaste)
        return panoptic_in_mask(paste_pixel(mask, mh, mw, m.g, py, px, -1.f));
    float const cx = static_cast<float>(px) + .5f, cy = static_cast<float>(py) + .5f;
    return cx >= m.x1 && cx <= m.x2 && cy >= m.y1 && cy <= m.y2
        && semantic[static_cast<int64_t>(py) * w + px] == m.cls;
}

} // namespace edgeseg
