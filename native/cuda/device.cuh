// CUDA back end: device discovery. Plain C++ (no CUDA headers), so that host code such as
// native/addon.cc can include it. The addon links the CUDA runtime statically and loads the driver
// library (libcuda.so) only when these functions first run: a machine without a GPU or without the
// driver loads the addon fine and gets devices == 0 with the reason, never a crash or a throw.
#pragma once
#include <string>
#include <vector>

namespace xlir {
namespace cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;         // "NVIDIA H100 80GB HBM3"
  int major = 0, minor = 0; // compute capability
  int multiprocessors = 0;
  double memory_gib = 0;
};

struct Status {
  int devices = 0;                 // usable devices (compute capability 8.0 or newer)
  std::string reason;              // why devices == 0: "CUDA unavailable: <what the runtime said>"
  int runtime_version = 0;         // CUDA runtime linked in, e.g. 13000
  int driver_version = 0;          // 0 when no driver library was found
  std::vector<DeviceInfo> list;    // every device the driver reports, usable or not
};

// Queried once per process and cached. Never throws.
const Status& status();
// One line for `xlir info`: "2 devices: NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB), ..." or the reason.
std::string describe();
// Throws xlir::Error unless device `index` is usable: "cuda:1 requested but CUDA is unavailable: ..." or
// "cuda:3 requested but only 2 CUDA devices are present"; then makes it the calling thread's device.
void use_device(int index);

}  // namespace cuda
}  // namespace xlir
