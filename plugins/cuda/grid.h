// Launch geometry of the CUDA launchers, as plain host arithmetic (no CUDA headers) so that the host
// tests can check it: CUDA caps gridDim.y and gridDim.z at 65,535 and gridDim.x at 2^31 − 1. A launcher
// whose work exceeds a cap launches the capped grid and its kernel loops over the rest (grid-stride on
// that axis), never an invalid grid.
#pragma once
#include <cstdint>

namespace edgeseg
{
namespace cuda
{

constexpr int64_t kMaxGridX = 2147483647;
constexpr int64_t kMaxGridYZ = 65535;

struct Grid3
{
    uint32_t x, y, z;
};

inline uint32_t capped(int64_t blocks, int64_t cap)
{
    return static_cast<uint32_t>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

// DCNv2 implicit GEMM: x = tiles of `tile_n` output pixels, y = tiles of `tile_m` output channels of a
// group, z = (image, group) pairs. The kernel walks y and z with strides gridDim.y and gridDim.z.
inline Grid3 deform_conv_grid(int64_t n, int64_t groups, int64_t cout, int64_t plane, int tile_m, int tile_n)
{
    return {capped((plane + tile_n - 1) / tile_n, kMaxGridX), capped((cout / groups + tile_m - 1) / tile_m, kMaxGridYZ),
        capped(n * groups, kMaxGridYZ)};
}

} // namespace cuda
} // namespace edgeseg
