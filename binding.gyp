# The N-API addon for node-gyp, which ships with npm: the fallback build
# where cmake is absent (scripts/install.mjs). CMakeLists.txt builds the same
# addon with cmake-js and is the primary build; keep the source lists equal.
{
  "targets": [
    {
      "target_name": "krunbox",
      "sources": [
        "src/addon/addon.cc",
        "src/addon/vm.cc",
        "src/addon/beneath.cc",
        "src/addon/beneath_ops.cc",
        "src/common/vm_config.cc",
        "src/common/guest_config.cc",
        "src/common/posix.cc",
        "src/common/ip_address.cc"
      ],
      "include_dirs": [
        "src",
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NAPI_CPP_EXCEPTIONS",
        "KRUNBOX_VERSION=\"<!(node -p \"require('./package.json').version\")\""
      ],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
