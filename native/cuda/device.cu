// Device discovery: cudaGetDeviceCount is the first CUDA call of the process; with the runtime linked
// statically it is also where libcuda.so is looked for, so its error is the reason we report.
#include "device.cuh"

#include <cstdio>
#include <mutex>

#include "common.cuh"

namespace xlir {
namespace cuda {

// The kernels are compiled for sm_80 and sm_90 (CMakeLists.txt, CMAKE_CUDA_ARCHITECTURES): older
// devices have no code to run.
static const int kMinMajor = 8;

const Status& status() {
  static Status s;
  static std::once_flag once;
  std::call_once(once, [] {
    cudaRuntimeGetVersion(&s.runtime_version);
    if (cudaDriverGetVersion(&s.driver_version) != cudaSuccess) s.driver_version = 0;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      // The runtime reports a missing driver library as an insufficient driver: say what it means.
      if (e == cudaErrorInsufficientDriver && s.driver_version == 0)
        s.reason = "CUDA unavailable: no NVIDIA driver found (libcuda.so.1 could not be loaded)";
      else if (e == cudaErrorInsufficientDriver)
        s.reason = "CUDA unavailable: the NVIDIA driver supports CUDA " + std::to_string(s.driver_version / 1000) + "." +
                   std::to_string(s.driver_version % 1000 / 10) + " but xlir was built with CUDA " +
                   std::to_string(s.runtime_version / 1000) + "." + std::to_string(s.runtime_version % 1000 / 10);
      else
        s.reason = std::string("CUDA unavailable: ") + cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")";
      cudaGetLastError();  // clear it: the failed query must not poison later calls
      return;
    }
    std::string old;
    for (int i = 0; i < n; i++) {
      cudaDeviceProp p;
      if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
      DeviceInfo d;
      d.index = i, d.name = p.name, d.major = p.major, d.minor = p.minor;
      d.multiprocessors = p.multiProcessorCount;
      d.memory_gib = double(p.totalGlobalMem) / double(1ull << 30);
      s.list.push_back(d);
      if (p.major >= kMinMajor) {
        s.devices++;
      } else {
        old += (old.empty() ? "" : ", ") + d.name + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ")";
      }
    }
    if (s.devices == 0)
      s.reason = n == 0 ? "CUDA unavailable: no CUDA device found"
                        : "CUDA unavailable: the kernels need compute capability 8.0 or newer; found " + old;
    // Usable devices must come first for cuda:N to mean the N-th usable one; the common case
    // (all the same kind) is unaffected.
    if (s.devices > 0 && s.devices < int(s.list.size())) {
      std::vector<DeviceInfo> usable, rest;
      for (auto& d : s.list) (d.major >= kMinMajor ? usable : rest).push_back(d);
      usable.insert(usable.end(), rest.begin(), rest.end());
      s.list = usable;
    }
  });
  return s;
}

std::string describe() {
  const Status& s = status();
  if (s.devices == 0) return s.reason;
  std::string r = std::to_string(s.devices) + (s.devices == 1 ? " device: " : " devices: ");
  for (int i = 0; i < s.devices; i++) {
    const DeviceInfo& d = s.list[size_t(i)];
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s%s (sm_%d%d, %d SMs, %.1f GiB)", i ? ", " : "", d.name.c_str(), d.major, d.minor,
                  d.multiprocessors, d.memory_gib);
    r += buf;
  }
  return r;
}

void use_device(int index) {
  const Status& s = status();
  XLIR_CHECK(s.devices > 0, "cuda:" << index << " requested but " << s.reason);
  XLIR_CHECK(index >= 0 && index < s.devices, "cuda:" << index << " requested but only " << s.devices << " usable CUDA device"
                                                      << (s.devices == 1 ? " is" : "s are") << " present");
  XLIR_CUDA_CHECK(cudaSetDevice(s.list[size_t(index)].index));
}

}  // namespace cuda
}  // namespace xlir
