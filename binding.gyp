{
  # CPU-only build of the same native sources through node-gyp, for users without cmake-js.
  # The primary build is CMakeLists.txt (cmake-js); CI checks that this one still builds.
  "targets": [
    {
      "target_name": "xlir",
      "sources": [
        "native/addon.cc",
        "native/matmul.cc",
        "native/embedding.cc",
        "native/layernorm.cc",
        "native/activation.cc",
        "native/attention.cc",
        "native/pooling.cc",
        "native/infonce.cc",
        "native/adamw.cc",
        "native/model.cc",
        "native/host_ops.cc",
        "native/search.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "XLIR_VERSION=\"<!(node -p \"require('./package.json').version\")\"",
        "XLIR_CUDA_REASON=\"built without CUDA: node-gyp builds the CPU engine only\""
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-march=native", "-fopenmp", "-fexceptions", "-fno-trapping-math"],
      "libraries": ["-ldnnl", "-fopenmp"]
    }
  ]
}
