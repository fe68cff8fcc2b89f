// The library's entry points for IPluginRegistry::loadLibrary / registry.load_library: the creators,
// and the logger TensorRT hands over.
#include "plugins.h"

namespace edgeseg
{
namespace plugin
{
void set_logger(ILogger* logger);
std::string get_last_error();
} // namespace plugin
} // namespace edgeseg

using namespace edgeseg::plugin;

extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    set_logger(finder ? finder->findLogger() : nullptr);
}

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static Creator<RoIAlignPlugin> roi_align;
    static Creator<MultilevelRoIAlignPlugin> multilevel;
    static Creator<DeformConv2dPlugin> deform_conv;
    static Creator<DCNv3Plugin> dcnv3;
    static Creator<PasteMasksPlugin> paste;
    static Creator<PanopticPastePlugin> panoptic;
    static Creator<PanopticMergePlugin> merge;
    static nvinfer1::IPluginCreatorInterface* const creators[]
        = {&roi_align, &multilevel, &deform_conv, &dcnv3, &paste, &panoptic, &merge};
    nbCreators = sizeof(creators) / sizeof(creators[0]);
    return creators;
}

// The message of the last refused field collection or shape (for tests and tools without a logger).
extern "C" char const* edgeseg_plugin_last_error()
{
    static thread_local std::string copy;
    copy = get_last_error();
    return copy.c_str();
}
