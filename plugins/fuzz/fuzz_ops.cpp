// Fuzz target for the CPU launchers' C ABI (plugins/cpu/edgeseg_cpu.h): hostile shapes, attributes and
// values must never crash, read or write out of bounds, or leave an accepted output partly unwritten.
//
// One input (a byte string) decodes to one Case: an op, its input tensors (shape, how their contents
// are generated, optional explicit values), its attributes and how the output is passed. Two encodings:
//   * structured (first byte != kExplicitMagic): the bytes are choices. A coherent configuration of the
//     op is generated (shapes that fit together, attributes in range), then up to three mutations
//     replace an attribute, a dimension or a rank with a hostile value, drop an input's data or poison
//     its contents. Coverage-guided fuzzers mutate these choices; random bytes are random cases.
//   * explicit (first byte == kExplicitMagic): every field spelled out (see encode()). The regression
//     corpus (plugins/fuzz/corpus/*.bin, written by --write-corpus from the fixed cases below) is in it.
// Every input tensor is allocated to exactly its declared size (ASan flags any access beyond it); the
// launcher is called in query mode, the output allocated to the shape it returns (prefilled with a
// sentinel) and the launcher run; then the invariants are checked (check_* below). A case whose
// buffers exceed 64 MiB or whose work is too large is queried but not run.
//
// Build: cmake -DEDGESEG_SANITIZE=ON (scripts/sanitize.sh). Without ES_LIBFUZZER the file has its own
// main(): the fixed regression cases, then the files/folders given, then random inputs (half fresh,
// half mutated corpus entries) from a seeded PRNG for --seconds / --iterations. With clang,
// -DEDGESEG_LIBFUZZER=ON builds fuzz_ops_libfuzzer, the same target under libFuzzer.
#include "edgeseg_cpu.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <csignal>
#include <limits>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>
#include <dirent.h>
#include <sys/stat.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ES_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ES_ASAN 1
#endif
#ifdef ES_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace
{

// ---- the case ------------------------------------------------------------------------------------

enum Op : uint8_t
{
    kRoIAlign,
    kMultilevel,
    kDeformConv,
    kDCNv3,
    kPaste,
    kPanoptic,
    kMerge, // last: the corpus's op bytes of the others stay valid
    kOps
};
char const* const kOpNames[kOps] = {"roi_align", "multilevel_roi_align", "deform_conv2d", "dcnv3", "paste_masks",
    "panoptic_paste", "panoptic_merge"};

// How a tensor's contents are generated (from the case's seed), unless explicit values are given.
enum Fill : uint8_t
{
    kZeros,
    kSmall,   // uniform [-2, 2]
    kPixels,  // uniform [0, 255]
    kUnit,    // uniform [0, 1], 1 in 20 hostile
    kBoxes,   // coordinates in [-10, 70], 1 in 4 hostile
    kIndices, // small integers in [-2, 5]
    kHostile, // NaN, ±inf, ±FLT_MAX, denormals, huge integers, -0 ...
    kRaw,     // random bit patterns (NaNs made canonical)
    kFills
};

enum OutMode : uint8_t
{
    kOutExact,    // query, allocate what it says, run
    kOutWrong,    // first a run with an output of the wrong shape (must be refused, untouched), then exact
    kOutNull,     // the output struct pointer itself is NULL (must be refused)
    kOutHalf,     // panoptic: one output queried, the other given (must be refused)
    kOutModes
};

enum Expect : uint8_t
{
    kAny,     // random cases: only the invariants
    kRefused, // the query must return -1
    kRuns,    // the query must return 0 and the run must happen and return 0
    kExpects
};

struct TensorSpec
{
    int32_t rank = 1;
    int64_t dims[ES_MAX_RANK] = {};
    uint8_t fill = kSmall;
    uint8_t null_data = 0;          // pass data = NULL whatever the shape
    std::vector<uint32_t> values;   // explicit contents (bit patterns), used cyclically
};

struct Case
{
    uint8_t op = kRoIAlign;
    std::vector<TensorSpec> in;
    std::vector<int32_t> ints;
    std::vector<float> floats;
    uint32_t seed = 1;
    uint8_t out_mode = kOutExact;
    uint8_t expect = kAny;
    std::string name; // fixed cases only
};

// Inputs read as int32 (the rest are float32).
bool is_int_input(int op, size_t i)
{
    return (op == kRoIAlign && i == 2) || (op == kMultilevel && i == 1) || (op == kPanoptic && (i == 0 || i == 3))
        || (op == kMerge && (i == 0 || i == 4));
}

// The attribute layout per op, and inputs (multilevel: 2 + levels).
size_t const kInputs[kOps] = {3, 2, 5, 3, 3, 4, 5};
size_t const kInts[kOps] = {4, 6, 8, 9, 0, 4, 5};
size_t const kFloats[kOps] = {1, 1, 0, 1, 1, 2, 2};

uint32_t bits(float f)
{
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
float from_bits(uint32_t u)
{
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

TensorSpec tensor(std::initializer_list<int64_t> dims, uint8_t fill = kSmall)
{
    TensorSpec t;
    t.rank = 0;
    for (int64_t d : dims)
        t.dims[t.rank++] = d;
    t.fill = fill;
    return t;
}

// Pads or trims a decoded case to its op's layout, so any bytes give a callable case.
void normalize(Case& c)
{
    c.op %= kOps;
    size_t const want_in = kInputs[c.op];
    if (c.op == kMultilevel)
    {
        if (c.in.size() < want_in)
            c.in.resize(want_in);
        if (c.in.size() > 2 + 12)
            c.in.resize(2 + 12);
    }
    else
        c.in.resize(want_in);
    size_t const levels = c.op == kMultilevel ? c.in.size() - 2 : 0;
    c.ints.resize(kInts[c.op], 0);
    c.floats.resize(kFloats[c.op] + levels, 0.25f);
    c.out_mode %= kOutModes;
    c.expect %= kExpects;
    for (auto& t : c.in)
    {
        t.fill %= kFills;
        if (t.values.size() > 65536)
            t.values.resize(65536);
    }
}

// ---- the two decoders ----------------------------------------------------------------------------

uint8_t const kExplicitMagic = 0xE5;

// Little-endian reader; past the end every read is 0.
struct Reader
{
    uint8_t const* p;
    size_t n, at = 0;
    uint8_t u8() { return at < n ? p[at++] : 0; }
    uint64_t le(int bytes)
    {
        uint64_t v = 0;
        for (int i = 0; i < bytes; ++i)
            v |= static_cast<uint64_t>(u8()) << (8 * i);
        return v;
    }
    uint32_t u32() { return static_cast<uint32_t>(le(4)); }
    int64_t i64() { return static_cast<int64_t>(le(8)); }
    uint32_t pick(uint32_t k) { return k ? u8() % k : 0; }
    bool chance(int in256) { return u8() < in256; }
};

// Explicit encoding: magic, op, out_mode, expect, seed u32; n_in u8 then per tensor rank i8, dims
// (min(max(rank, 0), 8) × i64), fill u8, null u8, n_values u32, values (u32 each); n_ints u8, ints
// (i32); n_floats u8, floats (f32 bits).
Case decode_explicit(Reader& r)
{
    Case c;
    c.op = r.u8();
    c.out_mode = r.u8();
    c.expect = r.u8();
    c.seed = r.u32();
    int const n_in = r.u8() % 16;
    for (int i = 0; i < n_in; ++i)
    {
        TensorSpec t;
        t.rank = static_cast<int8_t>(r.u8());
        int const stored = std::min(std::max(t.rank, 0), ES_MAX_RANK);
        for (int d = 0; d < stored; ++d)
            t.dims[d] = r.i64();
        t.fill = r.u8();
        t.null_data = r.u8() & 1;
        uint32_t const nv = std::min<uint32_t>(r.u32(), 65536);
        for (uint32_t v = 0; v < nv && r.at < r.n; ++v)
            t.values.push_back(r.u32());
        c.in.push_back(t);
    }
    int const n_ints = r.u8() % 32;
    for (int i = 0; i < n_ints; ++i)
        c.ints.push_back(static_cast<int32_t>(r.u32()));
    int const n_floats = r.u8() % 32;
    for (int i = 0; i < n_floats; ++i)
        c.floats.push_back(from_bits(r.u32()));
    return c;
}

void put(std::vector<uint8_t>& out, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; ++i)
        out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

[[maybe_unused]] std::vector<uint8_t> encode(Case const& c) // used by main() (the corpus)
{
    std::vector<uint8_t> out{kExplicitMagic, c.op, c.out_mode, c.expect};
    put(out, c.seed, 4);
    out.push_back(static_cast<uint8_t>(c.in.size()));
    for (auto const& t : c.in)
    {
        out.push_back(static_cast<uint8_t>(static_cast<int8_t>(t.rank)));
        for (int d = 0; d < std::min(std::max(t.rank, 0), ES_MAX_RANK); ++d)
            put(out, static_cast<uint64_t>(t.dims[d]), 8);
        out.push_back(t.fill);
        out.push_back(t.null_data);
        put(out, t.values.size(), 4);
        for (uint32_t v : t.values)
            put(out, v, 4);
    }
    out.push_back(static_cast<uint8_t>(c.ints.size()));
    for (int32_t v : c.ints)
        put(out, static_cast<uint32_t>(v), 4);
    out.push_back(static_cast<uint8_t>(c.floats.size()));
    for (float v : c.floats)
        put(out, bits(v), 4);
    return out;
}

float const kNaN = std::numeric_limits<float>::quiet_NaN();
float const kInf = std::numeric_limits<float>::infinity();
float const kFltMax = std::numeric_limits<float>::max();

int32_t const kHostileInts[] = {0, 1, 2, 3, 4, 7, 8, 15, 16, 63, 64, 65, 1024, 1025, 4096, 10000, 65535, 65536,
    1 << 20, INT32_MAX, -1, -2, -64, INT32_MIN};
float const kHostileFloats[] = {0.f, -0.f, 1.f, -1.f, .5f, .25f, 1.f / 32, 1e-6f, 1e-7f, 1e-3f, 1e4f, 1e5f, 1e6f,
    1e30f, kFltMax, -kFltMax, std::numeric_limits<float>::min(), 1e-40f, std::numeric_limits<float>::denorm_min(),
    kNaN, -kNaN, kInf, -kInf, 458752.f, 65536.f};
int64_t const kHostileDims[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 64, 65, 1000, 65536, 1 << 20, INT32_MAX,
    int64_t{INT32_MAX} + 1, int64_t{1} << 40, INT64_MAX, -1, -2, INT32_MIN, INT64_MIN};
float const kHostileValues[] = {kNaN, -kNaN, kInf, -kInf, kFltMax, -kFltMax, 1e30f, -1e30f, 1e-40f,
    std::numeric_limits<float>::denorm_min(), -0.f, 0.f, 1.f, -1.f, 458752.f, 1e6f, 16777217.f, 2147483648.f,
    -2147483648.f, .5f};
int32_t const kHostileIndexValues[] = {INT32_MIN, INT32_MAX, -1, 0, 1, 2, 65535, 65536, -65536, 1 << 30};

template <typename T, size_t N>
T pick_from(Reader& r, T const (&list)[N])
{
    return list[r.u8() % N];
}

// A coherent configuration of op `c.op` (shapes that fit, attributes in range) from the choices in `r`.
void generate(Case& c, Reader& r)
{
    auto between = [&](int lo, int hi) { return lo + static_cast<int>(r.pick(static_cast<uint32_t>(hi - lo + 1))); };
    c.seed = r.u32();
    uint8_t const x_fill = static_cast<uint8_t>(r.chance(200) ? (r.chance(128) ? kSmall : kPixels) : kHostile);
    switch (c.op)
    {
    case kRoIAlign:
    case kMultilevel:
    {
        int64_t const n = between(0, 3) == 0 ? between(0, 1) : between(1, 3), ch = between(1, 4), k = between(0, 6);
        int const out_h = between(1, 8), out_w = between(1, 8);
        int const sampling = pick_from(r, {-1, 0, 1, 2, 3, 64});
        int const aligned = between(0, 1);
        TensorSpec rois = tensor({k, 4}, kBoxes), batch = tensor({k}, kIndices);
        if (c.op == kRoIAlign)
        {
            c.in = {tensor({n, ch, between(1, 24), between(1, 24)}, x_fill), rois, batch};
            c.ints = {out_h, out_w, sampling, aligned};
            c.floats = {pick_from(r, {1.f, .5f, .25f, .125f, 2.f})};
        }
        else
        {
            int const levels = between(1, 4), first = between(0, 3);
            int64_t const base = between(1, 32);
            c.in = {rois, batch};
            c.floats = {pick_from(r, {224.f, 56.f, 16.f})};
            for (int l = 0; l < levels; ++l)
            {
                c.in.push_back(tensor({n, ch, std::max<int64_t>(1, base >> l), std::max<int64_t>(1, (base + 3) >> l)}, x_fill));
                c.floats.push_back(std::ldexp(1.f, -(first + l)));
            }
            c.ints = {out_h, out_w, sampling, aligned, between(0, 6), first};
        }
        break;
    }
    case kDeformConv:
    {
        int const g = between(1, 3), og = between(1, 2);
        int64_t const n = between(1, 2), cin = g * og * between(1, 2), cout = g * between(1, 3);
        int const kh = between(1, 3), kw = between(1, 3), sh = between(1, 3), sw = between(1, 3), ph = between(0, 2),
                  pw = between(0, 2), dh = between(1, 2), dw = between(1, 2);
        int64_t const h = between(1, 10), w = between(1, 10);
        int64_t const ho = (h + 2 * ph - (dh * (kh - 1) + 1)) / sh + 1, wo = (w + 2 * pw - (dw * (kw - 1) + 1)) / sw + 1;
        int64_t const kk = kh * kw;
        TensorSpec bias = r.chance(128) ? tensor({cout}) : tensor({0});
        TensorSpec mask = r.chance(128) ? tensor({n, og * kk, ho, wo}, kUnit) : tensor({0});
        c.in = {tensor({n, cin, h, w}, x_fill), tensor({cout, cin / g, kh, kw}), tensor({n, 2 * og * kk, ho, wo}), bias, mask};
        c.ints = {sh, sw, ph, pw, dh, dw, g, og};
        break;
    }
    case kDCNv3:
    {
        int const g = between(1, 4), kh = between(1, 5), kw = between(1, 5), sh = between(1, 2), sw = between(1, 2),
                  ph = between(0, 2), pw = between(0, 2), dh = between(1, 2), dw = between(1, 2);
        int64_t const n = between(1, 2), ch = g * between(1, 4), h = between(1, 10), w = between(1, 10);
        int64_t const ho = (h + 2 * ph - (dh * (kh - 1) + 1)) / sh + 1, wo = (w + 2 * pw - (dw * (kw - 1) + 1)) / sw + 1;
        int64_t const gk = g * kh * kw;
        c.in = {tensor({n, h, w, ch}, x_fill), tensor({n, ho, wo, gk * 2}), tensor({n, ho, wo, gk}, kUnit)};
        c.ints = {kh, kw, sh, sw, ph, pw, dh, dw, g};
        c.floats = {pick_from(r, {1.f, .5f, 2.f, 1e-3f})};
        break;
    }
    case kPaste:
    {
        int64_t const rr = between(0, 4);
        TensorSpec image = tensor({between(1, 40), between(1, 40)});
        if (r.chance(64))
            image = tensor({between(1, 2), between(1, 3), between(1, 40), between(1, 40)});
        image.null_data = 1; // only its shape is read
        c.in = {tensor({rr, between(1, 8), between(1, 8)}, kUnit), tensor({rr, 4}, kBoxes), image};
        c.floats = {pick_from(r, {.5f, -1.f, 0.f, 1.f})};
        break;
    }
    case kPanoptic:
    {
        int64_t const h = between(1, 24), w = between(1, 24), rr = between(0, 5);
        int const classes = between(1, 8), things = between(0, classes);
        c.in = {tensor({h, w}, kIndices), tensor({rr, h, w}, kUnit), tensor({rr}, kUnit), tensor({rr}, kIndices)};
        c.ints = {classes, things, pick_from(r, {0, 1, 4, 4096}), 0};
        c.floats = {pick_from(r, {.5f, 0.f, 1.f}), pick_from(r, {.5f, 0.f, 1.f})};
        break;
    }
    case kMerge:
    {
        int64_t const h = between(1, 24), w = between(1, 24), rr = between(0, 5);
        int const classes = between(1, 8), things = between(0, classes), rule = between(0, 1);
        TensorSpec const masks = rule ? tensor({rr, 0, 0}) : tensor({rr, between(1, 8), between(1, 8)}, kUnit);
        c.in = {tensor({h, w}, kIndices), masks, tensor({rr, 4}, kBoxes), tensor({rr}, kUnit), tensor({rr}, kIndices)};
        c.ints = {classes, things, pick_from(r, {0, 1, 4, 4096}), 0, rule};
        c.floats = {pick_from(r, {.5f, 0.f, 1.f}), pick_from(r, {.5f, 0.f, 1.f})};
        break;
    }
    }
}

// Up to three hostile edits of a coherent case.
void mutate(Case& c, Reader& r)
{
    int const edits = static_cast<int>(r.pick(4));
    for (int e = 0; e < edits; ++e)
    {
        switch (r.pick(7))
        {
        case 0:
            if (!c.ints.empty())
                c.ints[r.pick(static_cast<uint32_t>(c.ints.size()))] = pick_from(r, kHostileInts);
            break;
        case 1:
            if (!c.floats.empty())
                c.floats[r.pick(static_cast<uint32_t>(c.floats.size()))] = pick_from(r, kHostileFloats);
            break;
        case 2:
        case 3:
        {
            TensorSpec& t = c.in[r.pick(static_cast<uint32_t>(c.in.size()))];
            if (t.rank < 1 || t.rank > ES_MAX_RANK)
                break;
            int64_t& d = t.dims[r.pick(static_cast<uint32_t>(t.rank))];
            uint32_t const how = r.pick(3);
            d = how == 0 ? pick_from(r, kHostileDims) : (how == 1 ? (d < INT64_MAX ? d + 1 : d) : (d > INT64_MIN ? d - 1 : d));
            break;
        }
        case 4:
        {
            TensorSpec& t = c.in[r.pick(static_cast<uint32_t>(c.in.size()))];
            int const was = t.rank;
            t.rank = pick_from(r, {-1, 0, 1, 2, 3, 4, 5, 8, 9, 64});
            for (int d = std::max(was, 0); d < std::min(t.rank, ES_MAX_RANK); ++d)
                t.dims[d] = 1 + r.pick(3);
            break;
        }
        case 5:
            c.in[r.pick(static_cast<uint32_t>(c.in.size()))].null_data ^= 1;
            break;
        case 6:
            c.in[r.pick(static_cast<uint32_t>(c.in.size()))].fill = static_cast<uint8_t>(r.chance(128) ? kHostile : kRaw);
            break;
        }
    }
    uint8_t const m = r.u8();
    c.out_mode = static_cast<uint8_t>(m < 224 ? 0 : 1 + m % 3); // mostly kOutExact
}

Case decode(uint8_t const* data, size_t size)
{
    Reader r{data, size};
    Case c;
    uint8_t const first = r.u8();
    if (first == kExplicitMagic)
        c = decode_explicit(r);
    else
    {
        c.op = first % kOps;
        generate(c, r);
        mutate(c, r);
    }
    normalize(c);
    return c;
}

// ---- running a case ------------------------------------------------------------------------------

uint64_t const kMaxBytes = uint64_t{64} << 20; // per run: inputs together, outputs together
double g_max_work = 3e7;                         // approximate inner-loop steps allowed per run
double g_slow_seconds = 30;                      // one launcher call taking longer is a failure

std::string describe(Case const& c)
{
    std::string s = std::string(kOpNames[c.op]) + (c.name.empty() ? "" : " [" + c.name + "]") + ":";
    char buf[64];
    for (size_t i = 0; i < c.in.size(); ++i)
    {
        auto const& t = c.in[i];
        s += " in" + std::to_string(i) + "=[";
        for (int d = 0; d < std::min(std::max(t.rank, 0), ES_MAX_RANK); ++d)
            s += (d ? "," : "") + std::to_string(t.dims[d]);
        s += "]";
        if (t.rank < 0 || t.rank > ES_MAX_RANK)
            s += "(rank " + std::to_string(t.rank) + ")";
        s += "/f" + std::to_string(t.fill) + (t.null_data ? "/null" : "");
        if (!t.values.empty())
        {
            s += "{";
            for (size_t v = 0; v < std::min<size_t>(t.values.size(), 16); ++v)
            {
                if (is_int_input(c.op, i))
                    std::snprintf(buf, sizeof buf, "%s%d", v ? "," : "", static_cast<int32_t>(t.values[v]));
                else
                    std::snprintf(buf, sizeof buf, "%s%g", v ? "," : "", from_bits(t.values[v]));
                s += buf;
            }
            s += t.values.size() > 16 ? ",…}" : "}";
        }
    }
    s += " ints=(";
    for (size_t i = 0; i < c.ints.size(); ++i)
        s += (i ? "," : "") + std::to_string(c.ints[i]);
    s += ") floats=(";
    for (size_t i = 0; i < c.floats.size(); ++i)
    {
        std::snprintf(buf, sizeof buf, "%s%g", i ? "," : "", c.floats[i]);
        s += buf;
    }
    s += ") out_mode=" + std::to_string(c.out_mode) + " seed=" + std::to_string(c.seed);
    return s;
}

// The input that is running, for the crash handlers (a sanitizer report or a signal).
std::vector<uint8_t> g_current;
std::string g_current_text;
char g_artifact_dir[512] = ".";

void dump_current(char const* why)
{
    char path[640];
    std::snprintf(path, sizeof path, "%s/fuzz-crash.bin", g_artifact_dir);
    int const fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0)
    {
        ssize_t const w = write(fd, g_current.data(), g_current.size());
        (void)w;
        close(fd);
    }
    char msg[1024];
    int const len = std::snprintf(msg, sizeof msg, "\n[fuzz_ops] %s while running: %.700s\n[fuzz_ops] input saved to %s (replay: fuzz_ops %s)\n",
        why, g_current_text.c_str(), path, path);
    ssize_t const w = write(2, msg, static_cast<size_t>(std::min<int>(len, sizeof msg - 1)));
    (void)w;
}

[[noreturn]] void fail(Case const& c, std::string const& what)
{
    g_current_text = describe(c);
    dump_current(("invariant broken: " + what).c_str());
    std::abort();
}

struct Stats
{
    long cases = 0, refused[kOps] = {}, queried_only[kOps] = {}, ran[kOps] = {};
};
Stats g_stats;

uint64_t splitmix(uint64_t& s)
{
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Element count of a spec, or -1 when a dimension is negative, the rank is invalid or it overflows.
int64_t count(TensorSpec const& t)
{
    if (t.rank < 0 || t.rank > ES_MAX_RANK)
        return -1;
    int64_t n = 1;
    for (int d = 0; d < t.rank; ++d)
    {
        if (t.dims[d] < 0)
            return -1;
        if (t.dims[d] && n > INT64_MAX / t.dims[d])
            return -1;
        n *= t.dims[d];
    }
    return n;
}

uint32_t const kFloatSentinel = 0x7fa5a5a5u; // a NaN payload no input or computation produces
uint32_t const kIntSentinel = 0x5a5a5a5au;

// A malloc'd buffer of exactly `bytes` (malloc(0) for none: any access is out of bounds under ASan).
struct Buffer
{
    void* p = nullptr;
    size_t bytes = 0;
    explicit Buffer(size_t b) : p(std::malloc(b)), bytes(b)
    {
        if (!p && !b)
            p = std::malloc(1);
        if (!p)
            std::abort();
    }
    ~Buffer() { std::free(p); }
    Buffer(Buffer const&) = delete;
    Buffer& operator=(Buffer const&) = delete;
    uint32_t* u32() const { return static_cast<uint32_t*>(p); }
};

void fill_values(Case const& c, size_t index, uint32_t* out, int64_t n)
{
    TensorSpec const& t = c.in[index];
    bool const is_int = is_int_input(c.op, index);
    uint64_t s = (static_cast<uint64_t>(c.seed) << 8) ^ index;
    auto uni = [&](float lo, float hi) { return lo + (hi - lo) * static_cast<float>(splitmix(s) >> 40) / 16777216.f; };
    for (int64_t i = 0; i < n; ++i)
    {
        uint32_t v;
        if (!t.values.empty())
            v = t.values[static_cast<size_t>(i) % t.values.size()];
        else
        {
            uint64_t const roll = splitmix(s);
            float f = 0.f;
            bool hostile = false;
            switch (t.fill)
            {
            case kZeros: f = 0.f; break;
            case kSmall: f = uni(-2.f, 2.f); break;
            case kPixels: f = uni(0.f, 255.f); break;
            case kUnit: hostile = roll % 20 == 0; f = uni(0.f, 1.f); break;
            case kBoxes: hostile = roll % 4 == 0; f = uni(-10.f, 70.f); break;
            case kIndices: f = static_cast<float>(static_cast<int>(roll % 8) - 2); break;
            case kHostile: hostile = true; break;
            case kRaw: f = from_bits(static_cast<uint32_t>(roll >> 32)); break;
            }
            if (hostile)
            {
                if (is_int)
                {
                    out[i] = static_cast<uint32_t>(kHostileIndexValues[(roll >> 8) % (sizeof kHostileIndexValues / 4)]);
                    continue;
                }
                f = kHostileValues[(roll >> 8) % (sizeof kHostileValues / 4)];
            }
            if (is_int)
                v = t.fill == kRaw ? static_cast<uint32_t>(roll >> 32) : static_cast<uint32_t>(static_cast<int32_t>(f));
            else
                v = bits(f);
        }
        if (!is_int && std::isnan(from_bits(v)))
            v = (v & 0x80000000u) | 0x7fc00000u; // never the sentinel's payload
        out[i] = v;
    }
}

struct Output
{
    es_tensor t{};
    std::unique_ptr<Buffer> buf;
    uint32_t sentinel = kFloatSentinel;
    int64_t n = 0;
};

void allocate(Output& o, es_tensor const& shape, uint32_t sentinel)
{
    o.t = shape;
    o.n = 1;
    for (int d = 0; d < shape.rank; ++d)
        o.n *= shape.dims[d];
    o.buf = std::make_unique<Buffer>(static_cast<size_t>(o.n) * 4);
    o.sentinel = sentinel;
    for (int64_t i = 0; i < o.n; ++i)
        o.buf->u32()[i] = sentinel;
    o.t.data = o.n ? o.buf->p : nullptr;
    if (o.n == 0) // no elements: a non-NULL pointer that is not a buffer to write to
        o.t.data = o.buf->p;
}

bool untouched(Output const& o)
{
    for (int64_t i = 0; i < o.n; ++i)
        if (o.buf->u32()[i] != o.sentinel)
            return false;
    return true;
}

int64_t first_sentinel(Output const& o)
{
    for (int64_t i = 0; i < o.n; ++i)
        if (o.buf->u32()[i] == o.sentinel)
            return i;
    return -1;
}

// Calls the op's launcher with the case's tensors and the outputs given.
int call(Case const& c, std::vector<es_tensor> const& in, es_tensor* out0, es_tensor* out1)
{
    auto const& i = c.ints;
    auto const& f = c.floats;
    switch (c.op)
    {
    case kRoIAlign: return es_roi_align(&in[0], &in[1], &in[2], i[0], i[1], f[0], i[2], i[3], out0);
    case kMultilevel:
    {
        int const levels = static_cast<int>(in.size()) - 2;
        es_tensor none{};
        return es_multilevel_roi_align(&in[0], &in[1], levels ? &in[2] : &none, levels, i[0], i[1], f.data() + 1,
            i[2], i[3], f[0], i[4], i[5], out0);
    }
    case kDeformConv:
        return es_deform_conv2d(&in[0], &in[1], &in[2], &in[3], &in[4], i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7], out0);
    case kDCNv3: return es_dcnv3(&in[0], &in[1], &in[2], i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7], i[8], f[0], out0);
    case kPaste: return es_paste_masks(&in[0], &in[1], &in[2], f[0], out0);
    case kPanoptic:
    {
        int64_t const min_area = static_cast<int64_t>(static_cast<uint64_t>(static_cast<uint32_t>(i[3])) << 32
            | static_cast<uint32_t>(i[2]));
        return es_panoptic_paste(&in[0], &in[1], &in[2], &in[3], i[0], i[1], f[0], min_area, f[1], out0, out1);
    }
    case kMerge:
    {
        int64_t const min_area = static_cast<int64_t>(static_cast<uint64_t>(static_cast<uint32_t>(i[3])) << 32
            | static_cast<uint32_t>(i[2]));
        return es_panoptic_merge(&in[0], &in[1], &in[2], &in[3], &in[4], i[4], i[0], i[1], f[0], min_area, f[1], out0,
            out1);
    }
    }
    return -2;
}

// rc must be 0 or -1; -1 must come with a message.
void check_rc(Case const& c, int rc, char const* when)
{
    if (rc != 0 && rc != -1)
        fail(c, std::string(when) + " returned " + std::to_string(rc) + " (only 0 or -1 are allowed)");
    if (rc == -1 && (!es_last_error() || !*es_last_error()))
        fail(c, std::string(when) + " returned -1 with an empty es_last_error()");
}

double dim(TensorSpec const& t, int d) { return d < t.rank ? static_cast<double>(t.dims[d]) : 1.0; }

// Approximate inner-loop steps of a run (shapes are validated by then).
double work(Case const& c, es_tensor const& out0)
{
    auto const& i = c.ints;
    double outn = 1;
    for (int d = 0; d < out0.rank; ++d)
        outn *= static_cast<double>(out0.dims[d]);
    switch (c.op)
    {
    case kRoIAlign:
    case kMultilevel:
    {
        double const samples = i[2] > 0 ? std::pow(std::min(i[2], 64), 2) : 64.0 * 64.0; // kMaxRoISamples per axis
        double const ch = out0.rank == 4 ? static_cast<double>(out0.dims[1]) : 1.0;
        return outn / std::max(ch, 1.0) * samples * (ch + 1);
    }
    case kDeformConv:
    {
        double const cin = dim(c.in[0], 1), kk = dim(c.in[1], 2) * dim(c.in[1], 3);
        double const plane = outn / std::max(1.0, static_cast<double>(out0.dims[1])) ;
        return plane * cin * kk + outn * cin / std::max(1, i[6]) * kk;
    }
    case kDCNv3: return outn * static_cast<double>(i[0]) * i[1];
    case kPaste: return 2 * outn;
    case kPanoptic:
    case kMerge: // each instance is read inside its box, at most the image
        return (dim(c.in[1], 0) + i[0] + 1) * dim(c.in[0], 0) * dim(c.in[0], 1) * 2;
    }
    return 0;
}

bool finite(float v) { return std::isfinite(v); }

// Known failures: classes of input the launchers mishandle today, reported and awaiting a fix. A class
// named in --known (plugins/fuzz/known_failures.txt in CI) is tolerated, so everything else stays
// checked; delete its line once fixed and those cases are checked again.
std::vector<std::string> g_known;
long g_known_skipped = 0;
bool known(char const* cls) { return std::find(g_known.begin(), g_known.end(), cls) != g_known.end(); }

// The op-specific promises of the header, on an accepted run.
void check_semantics(Case const& c, std::vector<es_tensor> const& in, Output const& o0, Output const& o1)
{
    auto f32 = [&](size_t k) { return static_cast<float const*>(in[k].data); };
    auto i32 = [&](size_t k) { return static_cast<int32_t const*>(in[k].data); };
    switch (c.op)
    {
    case kRoIAlign:
    case kMultilevel:
    {
        size_t const bi = c.op == kRoIAlign ? 1 : 0;
        int64_t const k = in[bi].dims[0], n = c.op == kRoIAlign ? in[0].dims[0] : in[2].dims[0];
        if (k == 0 || !f32(bi) || !i32(bi + 1))
            return;
        int64_t const per = o0.n / k;
        float const* y = static_cast<float const*>(o0.t.data);
        for (int64_t r = 0; r < k; ++r)
        {
            float const* b = f32(bi) + r * 4;
            int32_t const bidx = i32(bi + 1)[r];
            if (finite(b[0]) && finite(b[1]) && finite(b[2]) && finite(b[3]) && bidx >= 0 && bidx < n)
                continue;
            // roi_grid() clamps the unaligned RoI size with `rw > 1 ? rw : 1`, which turns NaN and -inf
            // (from x2 or y2) into 1 before its finiteness test: such a RoI is pooled, not zeroed.
            bool const only_far_corner = finite(b[0]) && finite(b[1]) && bidx >= 0 && bidx < n
                && !(b[2] == kInf || b[3] == kInf) && c.ints[3] == 0;
            if (only_far_corner && known("roi-nan-x2y2-unaligned"))
                continue;
            for (int64_t j = 0; j < per; ++j)
                if (y[r * per + j] != 0.f)
                    fail(c, "RoI " + std::to_string(r) + " has a non-finite box or batch index " + std::to_string(bidx)
                        + " outside [0, " + std::to_string(n) + ") but its output is not zeros");
        }
        return;
    }
    case kPaste:
    {
        int64_t const rr = in[0].dims[0];
        if (rr == 0 || !f32(1))
            return;
        int64_t const plane = o0.n / rr;
        float const* y = static_cast<float const*>(o0.t.data);
        for (int64_t r = 0; r < rr; ++r)
        {
            float const* b = f32(1) + r * 4;
            bool const pastes = finite(b[0]) && finite(b[1]) && finite(b[2]) && finite(b[3]);
            for (int64_t j = 0; j < plane; ++j)
            {
                float const v = y[r * plane + j];
                if (!pastes && v != 0.f)
                    fail(c, "box " + std::to_string(r) + " (" + std::to_string(b[0]) + ", " + std::to_string(b[1]) + ", "
                        + std::to_string(b[2]) + ", " + std::to_string(b[3]) + ") pastes nothing (a non-finite corner) but "
                        + "its plane holds " + std::to_string(v) + " at " + std::to_string(j));
                if (c.floats[0] >= 0.f && v != 0.f && v != 1.f)
                    fail(c, "a thresholded paste wrote " + std::to_string(v) + " (only 0 or 1)");
            }
        }
        return;
    }
    case kPanoptic:
    case kMerge: // the same table and id-map invariants
    {
        int32_t const* ids = static_cast<int32_t const*>(o0.t.data);
        float const* seg = static_cast<float const*>(o1.t.data);
        int64_t const rows = o1.t.dims[0], hw = o0.n;
        int64_t used = 0;
        while (used < rows && seg[used * 5] != 0.f)
            ++used;
        for (int64_t r = 0; r < rows; ++r)
        {
            float const* row = seg + r * 5;
            if (r < used)
            {
                if (row[0] != static_cast<float>(r + 1))
                    fail(c, "segment row " + std::to_string(r) + " has id " + std::to_string(row[0]));
                if (std::isnan(row[4]))
                    fail(c, "a segment with a NaN score was accepted");
                if (row[2] == 1.f && !(row[4] >= c.floats[1]))
                    fail(c, "a thing segment scores below score_threshold");
            }
            else
                for (int q = 0; q < 5; ++q)
                    if (row[q] != 0.f)
                        fail(c, "segment row " + std::to_string(r) + " after the last segment is not zeros");
        }
        std::vector<int64_t> area(static_cast<size_t>(used) + 1, 0);
        for (int64_t p = 0; p < hw; ++p)
        {
            if (ids[p] < 0 || ids[p] > used)
                fail(c, "pixel " + std::to_string(p) + " has id " + std::to_string(ids[p]) + " with "
                    + std::to_string(used) + " segments");
            ++area[static_cast<size_t>(ids[p])];
        }
        for (int64_t r = 0; r < used; ++r)
            if (static_cast<float>(area[static_cast<size_t>(r) + 1]) != seg[r * 5 + 3])
                fail(c, "segment " + std::to_string(r + 1) + " reports area " + std::to_string(seg[r * 5 + 3])
                    + " but holds " + std::to_string(area[static_cast<size_t>(r) + 1]) + " pixels");
        return;
    }
    default: return;
    }
}

// The class of a case that crashes a launcher today (skipped whole when known), or "".
char const* failure_class(Case const& c)
{
    for (auto const& t : c.in)
        if (t.rank > ES_MAX_RANK)
            return "rank-above-8"; // shape_of() keeps the rank, validate.h's numel/to_string read dims[rank-1]
    return "";
}

void run_case(Case const& c)
{
    char const* cls = failure_class(c);
    if (*cls && known(cls))
    {
        ++g_known_skipped;
        return;
    }
    ++g_stats.cases;
    g_current_text = describe(c);
    // Inputs, allocated to exactly their shapes when the total fits the cap.
    size_t const n_in = c.in.size();
    std::vector<int64_t> counts(n_in);
    uint64_t total = 0;
    bool allocatable = true;
    for (size_t k = 0; k < n_in; ++k)
    {
        counts[k] = count(c.in[k]);
        if (counts[k] < 0 || static_cast<uint64_t>(counts[k]) > kMaxBytes / 4)
            allocatable = false;
        else
            total += static_cast<uint64_t>(counts[k]) * 4;
    }
    allocatable = allocatable && total <= kMaxBytes;
    std::vector<std::unique_ptr<Buffer>> bufs(n_in);
    std::vector<std::vector<uint32_t>> copies(n_in);
    std::vector<es_tensor> in(n_in);
    bool all_data = true, empty_null = false;
    for (size_t k = 0; k < n_in; ++k)
    {
        TensorSpec const& t = c.in[k];
        es_tensor& e = in[k];
        e.rank = t.rank;
        for (int d = 0; d < ES_MAX_RANK; ++d)
            e.dims[d] = t.dims[d];
        size_t const elems = allocatable ? static_cast<size_t>(counts[k]) : 0;
        bufs[k] = std::make_unique<Buffer>(elems * 4);
        if (allocatable)
        {
            fill_values(c, k, bufs[k]->u32(), counts[k]);
            copies[k].assign(bufs[k]->u32(), bufs[k]->u32() + elems);
        }
        // Unallocatable: a 0-byte buffer stands in (query mode must not read it).
        e.data = t.null_data ? nullptr : bufs[k]->p;
        if (t.null_data && counts[k] != 0)
            all_data = false;
        if (t.null_data && counts[k] == 0)
            empty_null = true;
    }
    auto inputs_intact = [&] {
        for (size_t k = 0; k < n_in; ++k)
            if (allocatable && !copies[k].empty() && std::memcmp(copies[k].data(), bufs[k]->p, copies[k].size() * 4))
                fail(c, "input " + std::to_string(k) + " was modified");
    };
    bool const two_outputs = c.op == kPanoptic || c.op == kMerge;
    es_tensor q0{}, q1{};

    if (c.out_mode == kOutNull)
    {
        int const rc = call(c, in, nullptr, two_outputs ? &q1 : nullptr);
        check_rc(c, rc, "a call with a NULL output");
        if (rc != -1)
            fail(c, "a call with a NULL output was not refused");
        if (two_outputs && call(c, in, &q0, nullptr) != -1)
            fail(c, "a call with a NULL segments output was not refused");
        q0 = q1 = es_tensor{};
    }

    int const rc_query = call(c, in, &q0, &q1);
    check_rc(c, rc_query, "the query");
    if (c.expect == kRefused && rc_query != -1)
        fail(c, "the query accepted a case that must be refused");
    if (c.expect == kRuns && rc_query != 0)
        fail(c, std::string("the query refused a valid case: ") + es_last_error());
    if (rc_query == -1)
    {
        // Run mode must refuse too, and write nothing.
        es_tensor shape{};
        shape.rank = 1;
        shape.dims[0] = 3;
        Output o0, o1;
        allocate(o0, shape, kFloatSentinel);
        allocate(o1, shape, kFloatSentinel);
        int const rc = call(c, in, &o0.t, &o1.t);
        check_rc(c, rc, "a run after a refused query");
        if (rc != -1)
            fail(c, "the query refused but a run with a [3] output was accepted");
        if (!untouched(o0) || !untouched(o1))
            fail(c, "a refused run wrote its output");
        inputs_intact();
        ++g_stats.refused[c.op];
        return;
    }
    // The shapes the query returned: valid ranks and dims, within 2^31-1 elements.
    for (es_tensor const* q : {&q0, &q1})
    {
        if (q == &q1 && !two_outputs)
            break;
        if (q->rank < 0 || q->rank > ES_MAX_RANK)
            fail(c, "the query returned rank " + std::to_string(q->rank));
        double n = 1;
        for (int d = 0; d < q->rank; ++d)
        {
            if (q->dims[d] < 0)
                fail(c, "the query returned a negative dimension");
            n *= static_cast<double>(q->dims[d]);
        }
        if (n > 2147483647.0)
            fail(c, "the query returned an output above 2^31-1 elements");
        if (q->data)
            fail(c, "the query set the output's data pointer");
    }
    auto out_count = [](es_tensor const& q) {
        double n = 1;
        for (int d = 0; d < q.rank; ++d)
            n *= static_cast<double>(q.dims[d]);
        return n;
    };
    double const out_bytes = 4 * (out_count(q0) + (two_outputs ? out_count(q1) : 0));
    if (!allocatable || out_bytes > static_cast<double>(kMaxBytes) || work(c, q0) > g_max_work)
    {
        if (c.expect == kRuns)
            fail(c, "a fixed case meant to run exceeds the fuzz driver's size or work cap");
        ++g_stats.queried_only[c.op];
        return;
    }

    if (c.out_mode == kOutHalf && two_outputs)
    {
        Output o1;
        allocate(o1, q1, kFloatSentinel);
        es_tensor none{};
        int const rc = call(c, in, &none, &o1.t);
        check_rc(c, rc, "a half query");
        if (rc != -1 || !untouched(o1))
            fail(c, "a call with one output queried and one given was accepted or wrote");
    }
    if (c.out_mode == kOutWrong)
    {
        es_tensor wrong = q0;
        if (wrong.rank > 0)
            wrong.dims[wrong.rank - 1] += 1;
        else
            wrong.rank = 1, wrong.dims[0] = 2;
        if (out_count(wrong) > static_cast<double>(kMaxBytes / 4))
            wrong.rank = 1, wrong.dims[0] = 2;
        Output o0, o1;
        allocate(o0, wrong, kFloatSentinel);
        allocate(o1, two_outputs ? q1 : wrong, kFloatSentinel);
        int const rc = call(c, in, &o0.t, &o1.t);
        check_rc(c, rc, "a run with a wrong output shape");
        if (rc != -1)
            fail(c, "a run with an output of the wrong shape was accepted");
        if (!untouched(o0) || !untouched(o1))
            fail(c, "a run refused for its output shape wrote the output");
    }

    Output o0, o1;
    allocate(o0, q0, two_outputs ? kIntSentinel : kFloatSentinel);
    if (two_outputs)
        allocate(o1, q1, kFloatSentinel);
    auto const t0 = std::chrono::steady_clock::now();
    int const rc = call(c, in, &o0.t, two_outputs ? &o1.t : nullptr);
    double const seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    check_rc(c, rc, "the run");
    if (seconds > g_slow_seconds)
        fail(c, "one run took " + std::to_string(seconds) + " s");
    inputs_intact();
    if (rc == -1)
    {
        // An input without elements may come with NULL data (edgeseg/ops/native.py passes it so).
        bool const tolerated = empty_null && known("null-empty-input");
        if ((all_data && !tolerated) || c.expect == kRuns)
            fail(c, std::string("the query accepted but the run refused: ") + es_last_error());
        if (!untouched(o0) || (two_outputs && !untouched(o1)))
            fail(c, "a refused run wrote its output");
        ++g_stats.refused[c.op];
        return;
    }
    // Zero-element outputs are not written; every other output is written everywhere.
    for (Output const* o : {&o0, &o1})
    {
        if (o == &o1 && !two_outputs)
            break;
        int64_t const at = first_sentinel(*o);
        if (at >= 0)
            fail(c, "the run returned 0 but output element " + std::to_string(at) + " of " + std::to_string(o->n)
                + " was never written");
    }
    check_semantics(c, in, o0, o1);
    ++g_stats.ran[c.op];
}

// Expected outcomes are honoured only for replayed corpus files: a mutated input keeps the byte but
// not the meaning.
void run_bytes(uint8_t const* data, size_t size, bool honour_expect)
{
    g_current.assign(data, data + size);
    Case c = decode(data, size);
    if (!honour_expect)
        c.expect = kAny;
    run_case(c);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(uint8_t const* data, size_t size)
{
    run_bytes(data, size, false);
    return 0;
}

#ifndef ES_LIBFUZZER
namespace
{

// ---- fixed regression cases ----------------------------------------------------------------------
// Each hostile input that once crashed or hung a launcher (issue 10), with the outcome it must have.

std::vector<uint32_t> fl(std::initializer_list<float> v)
{
    std::vector<uint32_t> out;
    for (float f : v)
        out.push_back(bits(f));
    return out;
}
std::vector<uint32_t> in32(std::initializer_list<int32_t> v)
{
    std::vector<uint32_t> out;
    for (int32_t i : v)
        out.push_back(static_cast<uint32_t>(i));
    return out;
}

Case roi_case(std::string name, std::vector<uint32_t> boxes, std::vector<uint32_t> batch, int sampling, float scale,
    uint8_t expect, int64_t h = 16, int64_t w = 16, int out = 7)
{
    Case c;
    c.name = std::move(name);
    c.op = kRoIAlign;
    int64_t const k = static_cast<int64_t>(boxes.size() / 4);
    c.in = {tensor({2, 3, h, w}, kPixels), tensor({k, 4}), tensor({k})};
    c.in[1].values = std::move(boxes);
    c.in[2].values = batch.empty() ? in32({0}) : std::move(batch);
    c.ints = {out, out, sampling, 0};
    c.floats = {scale};
    c.expect = expect;
    return c;
}

Case multilevel_case(std::string name, std::vector<uint32_t> boxes, std::vector<uint32_t> batch, int sampling,
    std::vector<int64_t> channels, uint8_t expect)
{
    Case c;
    c.name = std::move(name);
    c.op = kMultilevel;
    int64_t const k = static_cast<int64_t>(boxes.size() / 4);
    c.in = {tensor({k, 4}), tensor({k})};
    c.in[0].values = std::move(boxes);
    c.in[1].values = batch.empty() ? in32({0}) : std::move(batch);
    c.floats = {224.f};
    for (size_t l = 0; l < channels.size(); ++l)
    {
        c.in.push_back(tensor({2, channels[l], 32 >> l, 24 >> l}, kPixels));
        c.floats.push_back(std::ldexp(1.f, -static_cast<int>(2 + l)));
    }
    c.ints = {7, 7, sampling, 1, 4, 2};
    c.expect = expect;
    return c;
}

// DeformConv2d: x 1×4×7×7, weight 6×(4/groups)×3×3, offset/mask at the given H×W.
Case deform_case(std::string name, int64_t offset_hw, int64_t mask_hw, int64_t w_in, int groups, uint8_t expect,
    int stride = 1)
{
    Case c;
    c.name = std::move(name);
    c.op = kDeformConv;
    c.in = {tensor({1, 4, 7, 7}), tensor({6, w_in, 3, 3}), tensor({1, 18, offset_hw, offset_hw}), tensor({6}),
        mask_hw ? tensor({1, 9, mask_hw, mask_hw}, kUnit) : tensor({0})};
    c.ints = {stride, stride, 0, 0, 1, 1, groups, 1};
    c.expect = expect;
    return c;
}

// DCNv3: x 1×7×7×8 (group 2), kernel 3 -> 5×5 out; offset N×Ho×Wo×36, mask N×Ho×Wo×18 unless changed.
Case dcnv3_case(std::string name, int64_t offset_hw, int64_t mask_hw, int64_t mask_c, uint8_t expect,
    std::vector<uint32_t> offsets = {})
{
    Case c;
    c.name = std::move(name);
    c.op = kDCNv3;
    c.in = {tensor({1, 7, 7, 8}), tensor({1, offset_hw, offset_hw, 36}), tensor({1, mask_hw, mask_hw, mask_c}, kUnit)};
    c.in[1].values = std::move(offsets);
    c.ints = {3, 3, 1, 1, 0, 0, 1, 1, 2};
    c.floats = {1.f};
    c.expect = expect;
    return c;
}

Case paste_case(std::string name, int64_t masks, int64_t boxes, std::vector<uint32_t> box_values, float threshold,
    uint8_t expect)
{
    Case c;
    c.name = std::move(name);
    c.op = kPaste;
    c.in = {tensor({masks, 5, 6}, kUnit), tensor({boxes, 4}, kBoxes), tensor({3, 30, 40})};
    c.in[1].values = std::move(box_values);
    c.in[2].null_data = 1;
    c.floats = {threshold};
    c.expect = expect;
    return c;
}

Case panoptic_case(std::string name, int64_t masks, int64_t scores, int64_t classes, std::vector<uint32_t> score_values,
    uint8_t expect, int64_t mask_h = 12)
{
    Case c;
    c.name = std::move(name);
    c.op = kPanoptic;
    c.in = {tensor({12, 10}, kIndices), tensor({masks, mask_h, 10}, kUnit), tensor({scores}, kUnit), tensor({classes}, kIndices)};
    c.in[2].values = std::move(score_values);
    c.ints = {5, 2, 1, 0};
    c.floats = {.5f, .3f};
    c.expect = expect;
    return c;
}

Case merge_case(std::string name, int64_t masks, int64_t boxes, int rule, std::vector<uint32_t> box_values, uint8_t expect,
    int64_t mask_side = 6)
{
    Case c;
    c.name = std::move(name);
    c.op = kMerge;
    c.in = {tensor({12, 10}, kIndices), tensor({masks, mask_side, mask_side}, kUnit), tensor({boxes, 4}, kBoxes),
        tensor({masks}, kUnit), tensor({masks}, kIndices)};
    c.in[2].values = std::move(box_values);
    c.in[3].values = fl({.9f, kNaN, .7f, .95f});
    c.ints = {5, 2, 1, 0, rule};
    c.floats = {.5f, .3f};
    c.expect = expect;
    return c;
}

std::vector<Case> fixed_cases()
{
    std::vector<Case> v;
    float const nan = kNaN, inf = kInf;
    // RoIAlign: non-finite coordinates give zeros; non-finite scales are refused.
    v.push_back(roi_case("roi_align_nan_box", fl({nan, 1, 5, 5, 1, 1, 9, 9}), in32({0, 1}), -1, .5f, kRuns));
    v.push_back(roi_case("roi_align_inf_box", fl({1, 1, inf, 5, -inf, 0, 4, 4, 0, 0, 3, inf}), in32({0, 1, 1}), 2, 1.f, kRuns));
    v.push_back(roi_case("roi_align_nan_scale", fl({1, 1, 5, 5}), {}, 2, nan, kRefused));
    v.push_back(roi_case("roi_align_inf_scale", fl({1, 1, 5, 5}), {}, 2, inf, kRefused));
    v.push_back(roi_case("roi_align_neg_inf_scale", fl({1, 1, 5, 5}), {}, 2, -inf, kRefused));
    // Sampling ratios past the cap: refused; huge boxes with adaptive sampling: capped, finish quickly.
    v.push_back(roi_case("roi_align_sampling_65536", fl({0, 0, 8, 8}), {}, 65536, 1.f, kRefused));
    v.push_back(roi_case("roi_align_sampling_10000", fl({0, 0, 8, 8}), {}, 10000, 1.f, kRefused));
    v.push_back(roi_case("roi_align_box_458752px", fl({0, 0, 458752, 1, 0, 0, 1, 458752}), in32({0, 1}), -1, 1.f, kRuns));
    v.push_back(roi_case("roi_align_box_1e6px", fl({-1e6f, -1e6f, 1e6f, 1e6f}), in32({1}), 0, 1.f, kRuns));
    v.push_back(roi_case("roi_align_box_1e6px_sampling_64", fl({0, 0, 1e6f, 1e6f}), in32({0}), 64, 1.f, kRuns));
    // Batch indices outside [0, N): zeros, never a read outside X.
    v.push_back(roi_case("roi_align_batch_minus1_and_N", fl({1, 1, 9, 9, 1, 1, 9, 9, 2, 2, 6, 6}), in32({-1, 2, 1}), 2,
        1.f, kRuns));
    v.push_back(roi_case("roi_align_batch_int_min_max", fl({1, 1, 9, 9, 1, 1, 9, 9}), in32({INT32_MIN, INT32_MAX}), 2,
        1.f, kRuns));
    // Known failures (known_failures.txt): a rank above ES_MAX_RANK; NaN/-inf x2/y2 with aligned=0.
    {
        Case c = roi_case("known_rank_above_8", fl({1, 1, 5, 5}), {}, 2, 1.f, kRefused);
        c.in[0].rank = 9;
        for (int d = 4; d < ES_MAX_RANK; ++d)
            c.in[0].dims[d] = 1;
        v.push_back(c);
    }
    {
        Case c = roi_case("known_null_empty_input", fl({1, 1, 5, 5}), in32({0}), 2, 1.f, kAny);
        c.in[0] = tensor({0, 3, 8, 8});
        c.in[0].null_data = 1;
        v.push_back(c);
    }
    v.push_back(roi_case("known_roi_nan_x2y2_unaligned", fl({1, 1, nan, 5, 1, 1, 5, -inf}), in32({0, 1}), 2, 1.f, kRuns));
    // Multi-level: same promises, plus feature maps that disagree in C are refused.
    v.push_back(multilevel_case("multilevel_channels_differ", fl({0, 0, 50, 50}), {}, 2, {4, 4, 3}, kRefused));
    v.push_back(multilevel_case("multilevel_channels_grow", fl({0, 0, 50, 50}), {}, 2, {1, 2}, kRefused));
    v.push_back(multilevel_case("multilevel_batch_minus1_and_N_nan", fl({0, 0, 50, 50, 0, 0, 300, 300, nan, 0, 9, 9}),
        in32({-1, 2, 0}), 2, {3, 3, 3}, kRuns));
    v.push_back(multilevel_case("multilevel_box_1e6px", fl({0, 0, 1e6f, 1e6f, 0, 0, 458752, 2}), in32({0, 1}), -1, {2, 2},
        kRuns));
    // DeformConv2d: offset and mask sized from the input's H×W (7×7) instead of the conv output (5×5).
    v.push_back(deform_case("deform_offset_input_hw", 7, 0, 4, 1, kRefused));
    v.push_back(deform_case("deform_offset_too_small", 3, 0, 4, 1, kRefused));
    v.push_back(deform_case("deform_mask_input_hw", 5, 7, 4, 1, kRefused));
    v.push_back(deform_case("deform_stride2_offset_input_hw", 5, 5, 4, 1, kRefused, 2));
    v.push_back(deform_case("deform_valid", 5, 5, 4, 1, kRuns));
    // Weight channels vs groups.
    v.push_back(deform_case("deform_weight_channels_vs_groups", 5, 0, 4, 2, kRefused));
    v.push_back(deform_case("deform_groups_not_dividing", 5, 0, 1, 3, kRefused));
    v.push_back(deform_case("deform_groups_valid", 5, 0, 2, 2, kRuns));
    // DCNv3: offset from the input's H×W; masks of the wrong size; hostile offsets.
    v.push_back(dcnv3_case("dcnv3_offset_input_hw", 7, 5, 18, kRefused));
    v.push_back(dcnv3_case("dcnv3_mask_input_hw", 5, 7, 18, kRefused));
    v.push_back(dcnv3_case("dcnv3_mask_channels", 5, 5, 9, kRefused));
    v.push_back(dcnv3_case("dcnv3_mask_channels_more", 5, 5, 36, kRefused));
    v.push_back(dcnv3_case("dcnv3_hostile_offsets", 5, 5, 18, kRuns, fl({nan, inf, -inf, 1e30f, -1e30f, 2147483648.f,
        1e-40f, 3.5f, -0.f})));
    // Mask pasting: fewer (or more) boxes than masks; non-finite, empty, inverted and huge boxes.
    v.push_back(paste_case("paste_fewer_boxes_than_masks", 3, 2, {}, .5f, kRefused));
    v.push_back(paste_case("paste_more_boxes_than_masks", 1, 3, {}, .5f, kRefused));
    v.push_back(paste_case("paste_hostile_boxes", 4, 4, fl({nan, 0, 5, 5, 0, 0, inf, 9, 1e30f, -1e30f, 1e30f, 1e30f, -5,
        -5, 1e6f, 1e6f}), .5f, kRuns));
    v.push_back(paste_case("paste_soft_hostile_boxes", 2, 2, fl({2, 2, 2, 9, -inf, -inf, inf, inf}), -1.f, kRuns));
    // Panoptic: masks, scores and classes that disagree; NaN scores.
    v.push_back(panoptic_case("panoptic_fewer_scores", 3, 2, 3, {}, kRefused));
    v.push_back(panoptic_case("panoptic_fewer_classes", 3, 3, 1, {}, kRefused));
    v.push_back(panoptic_case("panoptic_more_scores", 2, 4, 2, {}, kRefused));
    v.push_back(panoptic_case("panoptic_masks_hw", 2, 2, 2, {}, kRefused, 11));
    v.push_back(panoptic_case("panoptic_nan_scores", 4, 4, 4, fl({nan, .9f, -nan, .8f}), kRuns));
    v.push_back(panoptic_case("panoptic_all_nan_scores", 3, 3, 3, fl({nan}), kRuns));
    // Panoptic merge on boxes: boxes that disagree with the masks, a rule that disagrees with the masks' shape,
    // hostile corners (NaN, ±inf, ±1e30) and NaN scores.
    v.push_back(merge_case("merge_fewer_boxes", 3, 2, 0, {}, kRefused));
    v.push_back(merge_case("merge_rule1_with_masks", 2, 2, 1, {}, kRefused));
    v.push_back(merge_case("merge_rule0_without_masks", 2, 2, 0, {}, kRefused, 0));
    v.push_back(merge_case("merge_rule2", 2, 2, 2, {}, kRefused));
    for (int rule = 0; rule < 2; ++rule)
        v.push_back(merge_case(rule ? "merge_hostile_boxes_rule1" : "merge_hostile_boxes_rule0", 4, 4, rule,
            fl({nan, 0, 5, 5, 0, 0, inf, 9, -1e30f, -1e30f, 1e30f, 1e30f, -5, -inf, 1e6f, 1e6f}), kRuns, rule ? 0 : 6));
    return v;
}

bool is_dir(char const* path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<uint8_t> read_file(std::string const& path)
{
    std::vector<uint8_t> out;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f)
    {
        std::fprintf(stderr, "[fuzz_ops] cannot read %s\n", path.c_str());
        std::exit(2);
    }
    uint8_t buf[4096];
    size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, f)) > 0)
        out.insert(out.end(), buf, buf + got);
    std::fclose(f);
    return out;
}

std::vector<std::string> list_inputs(char const* path)
{
    std::vector<std::string> out;
    if (!is_dir(path))
        return {path};
    DIR* d = opendir(path);
    if (!d)
        return out;
    while (dirent* e = readdir(d))
        if (e->d_name[0] != '.')
            out.push_back(std::string(path) + "/" + e->d_name);
    closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

void on_signal(int sig)
{
    dump_current(sig == SIGALRM ? "timeout (SIGALRM)" : "signal");
    signal(sig, SIG_DFL);
    raise(sig);
}

#ifdef ES_ASAN
void on_sanitizer_death() { dump_current("sanitizer report"); }
#endif

int usage()
{
    std::fprintf(stderr,
        "usage: fuzz_ops [--seconds S] [--iterations N] [--seed S] [--max-work W] [--artifacts DIR]\n"
        "                [--known FILE] [--no-fixed] [--no-expect] [--write-corpus DIR] [--print] [FILE|DIR ...]\n"
        "Runs the fixed regression cases (unless --no-fixed), then every FILE (or file in DIR), then random\n"
        "inputs for S seconds (default 10; 0: none) or N iterations, whichever ends first. --known FILE:\n"
        "tolerate the failure classes listed (plugins/fuzz/known_failures.txt). --no-expect: check only the\n"
        "invariants of replayed files, not their expected outcome (a corpus grown by libFuzzer).\n"
        "--print describes the inputs.\n"
        "--write-corpus DIR writes the fixed cases as replayable files.\n");
    return 2;
}

} // namespace

int main(int argc, char** argv)
{
    double seconds = 10;
    long iterations = -1;
    uint64_t seed = 1;
    bool print_only = false, no_fixed = false, honour_expect = true;
    std::string write_corpus;
    std::vector<std::string> paths;
    for (int a = 1; a < argc; ++a)
    {
        std::string const arg = argv[a];
        auto next = [&]() -> char const* {
            if (a + 1 >= argc)
                std::exit(usage());
            return argv[++a];
        };
        if (arg == "--seconds")
            seconds = std::atof(next());
        else if (arg == "--iterations")
            iterations = std::atol(next());
        else if (arg == "--seed")
            seed = std::strtoull(next(), nullptr, 10);
        else if (arg == "--max-work")
            g_max_work = std::atof(next());
        else if (arg == "--artifacts")
            std::snprintf(g_artifact_dir, sizeof g_artifact_dir, "%s", next());
        else if (arg == "--write-corpus")
            write_corpus = next();
        else if (arg == "--known")
        {
            std::vector<uint8_t> const text = read_file(next());
            std::string line;
            for (size_t i = 0; i <= text.size(); ++i)
            {
                char const ch = i < text.size() ? static_cast<char>(text[i]) : '\n';
                if (ch != '\n')
                {
                    line += ch;
                    continue;
                }
                line = line.substr(0, line.find('#'));
                line.erase(std::remove_if(line.begin(), line.end(), [](char x) { return x == ' ' || x == '\t' || x == '\r'; }), line.end());
                if (!line.empty())
                    g_known.push_back(line);
                line.clear();
            }
        }
        else if (arg == "--print")
            print_only = true;
        else if (arg == "--no-fixed")
            no_fixed = true;
        else if (arg == "--no-expect")
            honour_expect = false;
        else if (arg == "-h" || arg == "--help")
            return usage();
        else if (!arg.empty() && arg[0] == '-')
            return usage();
        else
            for (auto const& p : list_inputs(argv[a]))
                paths.push_back(p);
    }
    if (char const* s = std::getenv("ES_FUZZ_SLOW_SECONDS"))
        g_slow_seconds = std::atof(s);
    signal(SIGSEGV, on_signal);
    signal(SIGBUS, on_signal);
    signal(SIGFPE, on_signal);
    signal(SIGALRM, on_signal);
#ifdef ES_ASAN
    __sanitizer_set_death_callback(on_sanitizer_death);
#endif
    std::vector<Case> const fixed = fixed_cases();
    if (!write_corpus.empty())
    {
        for (Case const& c : fixed)
        {
            std::vector<uint8_t> const bytes = encode(c);
            std::string const path = write_corpus + "/" + c.name + ".bin";
            FILE* f = std::fopen(path.c_str(), "wb");
            if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size())
            {
                std::fprintf(stderr, "[fuzz_ops] cannot write %s\n", path.c_str());
                return 2;
            }
            std::fclose(f);
        }
        std::printf("[fuzz_ops] wrote %zu cases to %s\n", fixed.size(), write_corpus.c_str());
        return 0;
    }
    if (print_only)
    {
        for (auto const& p : paths)
        {
            std::vector<uint8_t> const bytes = read_file(p);
            std::printf("%s: %s\n", p.c_str(), describe(decode(bytes.data(), bytes.size())).c_str());
        }
        return 0;
    }

    auto const start = std::chrono::steady_clock::now();
    for (Case const& c : fixed)
    {
        if (no_fixed)
            break;
        g_current = encode(c);
        run_case(c);
    }
    std::vector<std::vector<uint8_t>> corpus;
    for (Case const& c : fixed)
        corpus.push_back(encode(c));
    for (auto const& p : paths)
    {
        std::vector<uint8_t> const bytes = read_file(p);
        run_bytes(bytes.data(), bytes.size(), honour_expect);
        corpus.push_back(bytes);
    }
    long const replayed = g_stats.cases;

    // Random inputs: half fresh byte strings, half corpus entries with a few bytes changed.
    uint64_t s = seed;
    long done = 0;
    std::vector<uint8_t> bytes;
    while ((iterations < 0 || done < iterations) && seconds > 0)
    {
        if ((done & 15) == 0
            && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >= seconds)
            break;
        uint64_t const roll = splitmix(s);
        if (roll & 1 && !corpus.empty())
        {
            bytes = corpus[(roll >> 1) % corpus.size()];
            int const flips = 1 + static_cast<int>((roll >> 20) % 4);
            for (int f = 0; f < flips && bytes.size() > 1; ++f)
            {
                uint64_t const r = splitmix(s);
                size_t const at = 1 + r % (bytes.size() - 1); // keep the first byte: stay explicit
                bytes[at] = (r >> 32) & 1 ? static_cast<uint8_t>(r >> 40) : static_cast<uint8_t>(bytes[at] ^ (1u << ((r >> 40) % 8)));
            }
        }
        else
        {
            bytes.resize(1 + (roll >> 1) % 96);
            for (auto& b : bytes)
                b = static_cast<uint8_t>(splitmix(s) >> 56);
        }
        run_bytes(bytes.data(), bytes.size(), false);
        ++done;
    }
    double const took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("[fuzz_ops] %zu fixed cases + %zu files replayed, %ld random inputs (seed %" PRIu64 ") in %.1f s\n",
        no_fixed ? size_t{0} : fixed.size(), paths.size(), done, seed, took);
    (void)replayed;
    for (int op = 0; op < kOps; ++op)
        std::printf("[fuzz_ops]   %-22s refused %7ld  query only %6ld  ran %7ld\n", kOpNames[op], g_stats.refused[op],
            g_stats.queried_only[op], g_stats.ran[op]);
    if (g_known_skipped)
        std::printf("[fuzz_ops] %ld cases of known failure classes skipped (--known)\n", g_known_skipped);
    std::printf("[fuzz_ops] no crash, no sanitizer report, every invariant held\n");
    return 0;
}
#endif
