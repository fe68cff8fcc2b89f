// Mask pasting (Mask R-CNN) and the panoptic head's accept rule (LPSNet).
#pragma once
#include "common.h"

namespace edgeseg
{

// A box that pastes anything: finite corners, positive finite width and height. Any other box (NaN,
// inf, empty, inverted) pastes zeros, in every implementation.
ES_HD bool paste_box_valid(float x1, float y1, float x2, float y2)
{
    float const bw = x2 - x1, bh = y2 - y1;
    return finite(x1) && finite(y1) && bw > 0.f && bh > 0.f && finite(bw) && finite(bh);
}

// Pixel (py, px) of the image from an mh×mw RoI mask spanning box (x1, y1, x2, y2).
// threshold >= 0: 1 where the interpolated value >= threshold, else 0; < 0: the value itself.
template <typename T>
ES_HD float paste_pixel(T const* mask, int mh, int mw, float x1, float y1, float x2, float y2, int py, int px,
    float threshold)
{
    if (!paste_box_valid(x1, y1, x2, y2))
        return 0.f;
    float const bw = x2 - x1, bh = y2 - y1;
    float const v = (py + .5f - y1) / bh * mh - .5f;
    float const u = (px + .5f - x1) / bw * mw - .5f;
    float const value = bilinear_zero(mask, mh, mw, mw, 1, v, u);
    return threshold < 0.f ? value : (value >= threshold ? 1.f : 0.f);
}

// Pixels [lo, hi) along one axis outside which a mask spanning [a, b) with m cells pastes only zeros
// (its bilinear samples lie one cell or more outside the mask). Conservative by a pixel either side.
ES_HD void paste_extent(float a, float b, int m, int size, int& lo, int& hi)
{
    float const cell = (b - a) / m;
    float const first = floorf(a - .5f * cell - .5f) - 1.f, last = ceilf(b + .5f * cell - .5f) + 2.f;
    lo = first < 0.f ? 0 : (first > size ? size : static_cast<int>(first));
    hi = last < 0.f ? 0 : (last > size ? size : static_cast<int>(last));
}

// Whether an instance (in score order) becomes a segment: it must score enough, have pixels, keep
// some, and overlap what is already occupied by at most overlap_threshold of its area.
ES_HD bool panoptic_accept(float score, int64_t area, int64_t kept, float score_threshold, float overlap_threshold)
{
    return score >= score_threshold && area > 0 && kept > 0
        && static_cast<float>(area - kept) <= overlap_threshold * static_cast<float>(area);
}

// The order instances are pasted in: score descending, ties by index (a stable sort). A NaN score
// ranks as -inf (last, by index) and is never accepted, so the order is total and every rank unique.
ES_HD float panoptic_key(float score) { return score == score ? score : -INFINITY; }
ES_HD bool panoptic_before(float score_a, int a, float score_b, int b)
{
    float const ka = panoptic_key(score_a), kb = panoptic_key(score_b);
    return ka > kb || (ka == kb && a < b);
}

} // namespace edgeseg
