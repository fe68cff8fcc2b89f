// CUDA launchers of mask pasting (one thread per image pixel of each mask) and of the panoptic head
// (instances are sequential by definition: one pixel-parallel launch over many blocks per instance).
#include <cuda_fp16.h>

#include "cuda/launchers.h"
#include "edgeseg/paste.h"

namespace edgeseg
{
namespace cuda
{

template <typename T>
__global__ void paste_kernel(T const* masks, int r, int mh, int mw, float const* boxes, int h, int w, float threshold, T* out)
{
    int64_t const total = static_cast<int64_t>(r) * h * w;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int const px = i % w, py = (i / w) % h;
        int64_t const j = i / w / h;
        float const* box = boxes + j * 4;
        PasteGrid const g = paste_grid(box[0], box[1], box[2], box[3], mh, mw);
        out[i] = static_cast<T>(paste_pixel(masks + j * mh * mw, mh, mw, g, py, px, threshold));
    }
}

template <typename T>
cudaError_t paste_masks(T const* masks, int r, int mh, int mw, float const* boxes, int h, int w, float threshold, T* out,
    cudaStream_t stream)
{
    int64_t const total = static_cast<int64_t>(r) * h * w;
    if (total == 0)
        return cudaSuccess;
    int64_t const blocks = (total + 255) / 256;
    paste_kernel<<<static_cast<unsigned>(blocks < 2097120 ? blocks : 2097120), 256, 0, stream>>>(
        masks, r, mh, mw, boxes, h, w, threshold, out);
    return cudaGetLastError();
}

constexpr int kPanopticThreads = 256;
constexpr int kPanopticMaxBlocks = 2048; // enough to fill the largest GPUs; the pixel loops stride over the rest
constexpr int kPanopticSharedBins = 4096; // stuff classes counted in shared memory per block (16 KiB)

int panoptic_blocks(int64_t items)
{
    int64_t const blocks = (items + kPanopticThreads - 1) / kPanopticThreads;
    return static_cast<int>(blocks < 1 ? 1 : (blocks > kPanopticMaxBlocks ? kPanopticMaxBlocks : blocks));
}

// Adds the block's per-thread counts to *area and *kept: warp sums, then one atomic per block.
__device__ void panoptic_block_add(unsigned long long a, unsigned long long k, unsigned long long* area,
    unsigned long long* kept)
{
    __shared__ unsigned long long warp_area[kPanopticThreads / 32], warp_kept[kPanopticThreads / 32];
    for (int offset = 16; offset > 0; offset >>= 1)
    {
        a += __shfl_down_sync(0xffffffffu, a, offset);
        k += __shfl_down_sync(0xffffffffu, k, offset);
    }
    if ((threadIdx.x & 31) == 0)
    {
        warp_area[threadIdx.x / 32] = a;
        warp_kept[threadIdx.x / 32] = k;
    }
    __syncthreads();
    if (threadIdx.x == 0)
    {
        unsigned long long sum_a = 0, sum_k = 0;
        for (int i = 0; i < kPanopticThreads / 32; ++i)
        {
            sum_a += warp_area[i];
            sum_k += warp_kept[i];
        }
        if (sum_a)
            atomicAdd(area, sum_a);
        if (sum_k)
            atomicAdd(kept, sum_k);
    }
}

// order[rank of j] = j (panoptic_before is a total order: every rank is unique); base[0] = 1, the first id.
__global__ void panoptic_rank_kernel(float const* scores, int r, PanopticScratch ws)
{
    int const j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j == 0)
        ws.base[0] = 1;
    if (j >= r)
        return;
    float const score = scores[j];
    int rank = 0;
    for (int i = 0; i < r; ++i)
        rank += panoptic_before(scores[i], i, score, j);
    ws.order[rank] = j;
}

// Both step kernels' start: step s > 0 decides instance s - 1 (ws.order[s - 1]) from its counted area and kept
// pixels, block 0 writes its segment row and the next id. Returns that instance's index when it is accepted
// (paint = its id), else -1 (paint stays 0).
__device__ inline int panoptic_settle_previous(int s, float const* scores, int32_t const* classes,
    float overlap_threshold, float score_threshold, PanopticScratch ws, float* segments, int32_t& paint)
{
    if (s <= 0)
        return -1;
    int const j = ws.order[s - 1];
    int64_t const area = static_cast<int64_t>(ws.area[s - 1]), kept = static_cast<int64_t>(ws.kept[s - 1]);
    bool const accept = panoptic_accept(scores[j], area, kept, score_threshold, overlap_threshold);
    int32_t const id = ws.base[s - 1];
    if (accept)
        paint = id;
    if (blockIdx.x == 0 && threadIdx.x == 0)
    {
        ws.base[s] = id + (accept ? 1 : 0);
        if (accept)
            panoptic_segment_row(segments, id, static_cast<float>(classes[j]), 1.f, kept, scores[j]);
    }
    return accept ? j : -1;
}

// Step s of 0..r: decide instance s − 1 from its counts (every block alike; block 0 records the decision:
// the next id and the table row), paint its free pixels, and count instance s's area and free pixels. A
// pixel is painted and then counted by the same thread, so one launch per step is enough; the launch
// boundary orders the steps.
__global__ void __launch_bounds__(kPanopticThreads) panoptic_step_kernel(int s, int r, int64_t hw, float const* masks,
    float const* scores, int32_t const* classes, float overlap_threshold, float score_threshold, PanopticScratch ws,
    int32_t* ids, float* segments)
{
    int32_t paint = 0;
    int const j = panoptic_settle_previous(s, scores, classes, overlap_threshold, score_threshold, ws, segments, paint);
    float const* prev = j >= 0 ? masks + static_cast<int64_t>(j) * hw : nullptr;
    float const* cur = s < r ? masks + static_cast<int64_t>(ws.order[s]) * hw : nullptr;
    if (prev == nullptr && cur == nullptr)
        return;
    unsigned long long a = 0, k = 0;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < hw;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int32_t v = ids[i];
        if (prev != nullptr && v == 0 && panoptic_in_mask(prev[i]))
        {
            v = paint;
            ids[i] = v;
        }
        if (cur != nullptr && panoptic_in_mask(cur[i]))
        {
            ++a;
            k += v == 0;
        }
    }
    if (cur != nullptr)
        panoptic_block_add(a, k, ws.area + s, ws.kept + s);
}

// EdgeSegPanopticMerge's step s (as panoptic_step_kernel): the previous instance and the current one are read
// only inside their box extents (merge_instance), so the threads stride over the smallest rectangle holding both.
__global__ void __launch_bounds__(kPanopticThreads) panoptic_merge_step_kernel(int s, int r, int32_t const* semantic,
    int h, int w, float const* masks, int mh, int mw, float const* boxes, float const* scores, int32_t const* classes,
    int mask_rule, float overlap_threshold, float score_threshold, PanopticScratch ws, int32_t* ids, float* segments)
{
    int32_t paint = 0;
    int const prev = panoptic_settle_previous(s, scores, classes, overlap_threshold, score_threshold, ws, segments, paint);
    int cur = s < r ? ws.order[s] : -1;
    if (cur >= 0 && !panoptic_scores_enough(scores[cur], score_threshold))
        cur = -1; // never accepted: its area and kept stay 0, its pixels are not read
    int64_t const mm = static_cast<int64_t>(mh) * mw;
    MergeInstance const mp = prev >= 0 ? merge_instance(mask_rule, boxes + prev * 4, mh, mw, classes[prev], h, w) : MergeInstance{};
    MergeInstance const mc = cur >= 0 ? merge_instance(mask_rule, boxes + cur * 4, mh, mw, classes[cur], h, w) : MergeInstance{};
    bool const has_prev = mp.y_lo < mp.y_hi && mp.x_lo < mp.x_hi, has_cur = mc.y_lo < mc.y_hi && mc.x_lo < mc.x_hi;
    if (!has_prev && !has_cur)
        return; // an empty extent counts nothing: area and kept stay 0 (zeroed by the launcher)
    int const y_lo = has_prev && has_cur ? min(mp.y_lo, mc.y_lo) : (has_prev ? mp.y_lo : mc.y_lo);
    int const y_hi = has_prev && has_cur ? max(mp.y_hi, mc.y_hi) : (has_prev ? mp.y_hi : mc.y_hi);
    int const x_lo = has_prev && has_cur ? min(mp.x_lo, mc.x_lo) : (has_prev ? mp.x_lo : mc.x_lo);
    int const x_hi = has_prev && has_cur ? max(mp.x_hi, mc.x_hi) : (has_prev ? mp.x_hi : mc.x_hi);
    int64_t const rw = x_hi - x_lo, items = static_cast<int64_t>(y_hi - y_lo) * rw;
    float const* mask_prev = masks + (mask_rule == 0 && prev >= 0 ? prev * mm : 0);
    float const* mask_cur = masks + (mask_rule == 0 && cur >= 0 ? cur * mm : 0);
    unsigned long long a = 0, k = 0;
    for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < items;
         t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int const py = y_lo + static_cast<int>(t / rw), px = x_lo + static_cast<int>(t % rw);
        bool const in_prev = has_prev && py >= mp.y_lo && py < mp.y_hi && px >= mp.x_lo && px < mp.x_hi
            && merge_in_instance(mask_rule, mp, mask_prev, mh, mw, semantic, w, py, px);
        bool const in_cur = has_cur && py >= mc.y_lo && py < mc.y_hi && px >= mc.x_lo && px < mc.x_hi
            && merge_in_instance(mask_rule, mc, mask_cur, mh, mw, semantic, w, py, px);
        if (!in_prev && !in_cur)
            continue;
        int64_t const i = static_cast<int64_t>(py) * w + px;
        int32_t v = ids[i];
        if (in_prev && v == 0)
        {
            v = paint;
            ids[i] = v;
        }
        if (in_cur)
        {
            ++a;
            k += v == 0;
        }
    }
    if (has_cur)
        panoptic_block_add(a, k, ws.area + s, ws.kept + s);
}

// Free pixels per stuff class: the first kPanopticSharedBins classes in a per-block shared histogram, the
// rest straight to global memory.
__global__ void __launch_bounds__(kPanopticThreads) panoptic_stuff_count_kernel(int32_t const* semantic, int64_t hw,
    int num_classes, int num_thing_classes, int32_t const* ids, PanopticScratch ws)
{
    extern __shared__ unsigned int bins[];
    int const stuff = num_classes - num_thing_classes;
    int const shared_bins = stuff < kPanopticSharedBins ? stuff : kPanopticSharedBins;
    for (int b = threadIdx.x; b < shared_bins; b += blockDim.x)
        bins[b] = 0;
    __syncthreads();
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < hw;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int32_t const label = semantic[i];
        if (ids[i] != 0 || !panoptic_is_stuff(label, num_thing_classes, num_classes))
            continue;
        int const c = label - num_thing_classes;
        if (c < shared_bins)
            atomicAdd(bins + c, 1u);
        else
            atomicAdd(ws.stuff_area + c, 1ull);
    }
    __syncthreads();
    for (int b = threadIdx.x; b < shared_bins; b += blockDim.x)
        if (bins[b])
            atomicAdd(ws.stuff_area + b, static_cast<unsigned long long>(bins[b]));
}

// Stuff segment ids in class order after the instances' (one thread: a running count over the classes).
__global__ void panoptic_stuff_ids_kernel(int r, int num_classes, int num_thing_classes, int64_t min_stuff_area,
    PanopticScratch ws, float* segments)
{
    int32_t next_id = ws.base[r];
    for (int c = 0; c < num_classes - num_thing_classes; ++c)
    {
        int64_t const area = static_cast<int64_t>(ws.stuff_area[c]);
        bool const accept = panoptic_accept_stuff(area, min_stuff_area);
        ws.stuff_id[c] = accept ? next_id : 0;
        if (accept)
            panoptic_segment_row(segments, next_id++, static_cast<float>(num_thing_classes + c), 0.f, area, 1.f);
    }
}

__global__ void __launch_bounds__(kPanopticThreads) panoptic_stuff_label_kernel(int32_t const* semantic, int64_t hw,
    int num_classes, int num_thing_classes, PanopticScratch ws, int32_t* ids)
{
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < hw;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        if (ids[i] == 0 && panoptic_is_stuff(semantic[i], num_thing_classes, num_classes))
            ids[i] = ws.stuff_id[semantic[i] - num_thing_classes];
}

// The launches both panoptic nodes share: zeroing, the rank kernel, step(s, blocks) for s = 0..r, then stuff.
template <typename Step>
cudaError_t panoptic_launch(int32_t const* semantic, int h, int w, float const* scores, int r, int num_classes,
    int num_thing_classes, int64_t min_stuff_area, int32_t* ids, float* segments, void* workspace, cudaStream_t stream,
    PanopticScratch& ws, Step step)
{
    int64_t const hw = static_cast<int64_t>(h) * w;
    int const stuff = num_classes - num_thing_classes;
    panoptic_scratch(r, stuff, workspace, &ws);
    cudaError_t e = cudaMemsetAsync(ids, 0, static_cast<size_t>(hw) * sizeof(int32_t), stream);
    if (e == cudaSuccess)
        e = cudaMemsetAsync(segments, 0, static_cast<size_t>(r + stuff) * 5 * sizeof(float), stream);
    if (e == cudaSuccess)
        e = cudaMemsetAsync(workspace, 0, ws.zeroed, stream);
    if (e != cudaSuccess)
        return e;
    panoptic_rank_kernel<<<panoptic_blocks(r), kPanopticThreads, 0, stream>>>(scores, r, ws);
    if ((e = cudaGetLastError()) != cudaSuccess)
        return e;
    int const blocks = panoptic_blocks(hw);
    for (int s = 0; s < r + 1 && r > 0; ++s)
    {
        step(s, blocks);
        if ((e = cudaGetLastError()) != cudaSuccess)
            return e;
    }
    if (stuff == 0)
        return cudaSuccess;
    size_t const shared = static_cast<size_t>(stuff < kPanopticSharedBins ? stuff : kPanopticSharedBins) * sizeof(unsigned int);
    panoptic_stuff_count_kernel<<<blocks, kPanopticThreads, shared, stream>>>(semantic, hw, num_classes, num_thing_classes,
        ids, ws);
    panoptic_stuff_ids_kernel<<<1, 1, 0, stream>>>(r, num_classes, num_thing_classes, min_stuff_area, ws, segments);
    panoptic_stuff_label_kernel<<<blocks, kPanopticThreads, 0, stream>>>(semantic, hw, num_classes, num_thing_classes, ws, ids);
    return cudaGetLastError();
}

cudaError_t panoptic_paste(int32_t const* semantic, int h, int w, float const* masks, float const* scores,
    int32_t const* classes, int r, int num_classes, int num_thing_classes, float overlap_threshold,
    int64_t min_stuff_area, float score_threshold, int32_t* ids, float* segments, void* workspace, cudaStream_t stream)
{
    int64_t const hw = static_cast<int64_t>(h) * w;
    PanopticScratch ws{};
    return panoptic_launch(semantic, h, w, scores, r, num_classes, num_thing_classes, min_stuff_area, ids, segments,
        workspace, stream, ws, [&](int s, int blocks) {
            panoptic_step_kernel<<<blocks, kPanopticThreads, 0, stream>>>(s, r, hw, masks, scores, classes,
                overlap_threshold, score_threshold, ws, ids, segments);
        });
}

cudaError_t panoptic_merge(int32_t const* semantic, int h, int w, float const* masks, int mh, int mw, float const* boxes,
    float const* scores, int32_t const* classes, int r, int mask_rule, int num_classes, int num_thing_classes,
    float overlap_threshold, int64_t min_stuff_area, float score_threshold, int32_t* ids, float* segments, void* workspace,
    cudaStream_t stream)
{
    PanopticScratch ws{};
    return panoptic_launch(semantic, h, w, scores, r, num_classes, num_thing_classes, min_stuff_area, ids, segments,
        workspace, stream, ws, [&](int s, int blocks) {
            panoptic_merge_step_kernel<<<blocks, kPanopticThreads, 0, stream>>>(s, r, semantic, h, w, masks, mh, mw, boxes,
                scores, classes, mask_rule, overlap_threshold, score_threshold, ws, ids, segments);
        });
}

template cudaError_t paste_masks<float>(float const*, int, int, int, float const*, int, int, float, float*, cudaStream_t);
template cudaError_t paste_masks<__half>(__half const*, int, int, int, float const*, int, int, float, __half*, cudaStream_t);

} // namespace cuda
} // namespace edgeseg
