{
  "targets": [
    {
      "target_name": "sage_queue",
      "sources": [
        "native/core/sage_ring.cpp",
        "native/core/segment.cpp",
        "native/core/leases.cpp",
        "native/core/liveness.cpp",
        "native/core/fault_guard.cpp",
        "native/core/test_hooks.cpp",
        "native/binding/addon.cpp",
        "native/binding/native_queue.cpp",
        "native/binding/notifier.cpp",
        "native/binding/native_queue_poll.cpp",
        "native/binding/native_queue_leases.cpp",
        "native/binding/native_queue_stats.cpp",
        "native/binding/read_poller.cpp",
        "native/binding/signal_watch.cpp"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/core"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-O2"],
      "libraries": ["-lrt", "-lpthread"]
    }
  ]
}
