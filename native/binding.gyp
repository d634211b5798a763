{
  "variables": {
    "strata_sanitize%": "<!(echo ${STRATA_SANITIZE:-0})"
  },
  "targets": [
    {
      "target_name": "strata_native",
      "sources": [
        "src/binding.cc",
        "src/engine.cc",
        "src/reactor/reactor.cc",
        "src/device/file_device.cc",
        "src/device/malloc_device.cc",
        "src/device/open.cc",
        "src/device/nvmf_device.cc",
        "src/device/replica_device.cc",
        "src/device/fault_device.cc",
        "src/device/zoned_device.cc",
        "src/device/fdp_device.cc",
        "src/ftl/format.cc",
        "src/ftl/ftl_device.cc",
        "src/ftl/ftl_open.cc",
        "src/ftl/l2p.cc",
        "src/nexus/label.cc",
        "src/nexus/nexus.cc",
        "src/nexus/rebuild.cc",
        "src/nexus/control.cc",
        "src/nvmf/auth.cc",
        "src/nvmf/initiator.cc",
        "src/nvmf/host_queue.cc",
        "src/nvmf/tcp_host.cc",
        "src/nvmf/rdma_probe.cc",
        "src/nvmf/rdma.cc",
        "src/nvmf/rdma_common.cc",
        "src/nvmf/rdma_host.cc",
        "src/pool/metadata.cc",
        "src/pool/pool.cc",
        "src/pool/bench.cc",
        "src/nvmf/queue_pair.cc",
        "src/nvmf/tcp.cc",
        "src/nvmf/target.cc",
        "src/util/crc32c.cc",
        "src/util/status.cc",
        "src/util/uuid.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "src"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"],
      "libraries": ["-luring", "-lrdmacm", "-libverbs"],
      "conditions": [
        ["strata_sanitize==1", {
          "cflags": ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"],
          "cflags_cc": ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"],
          "ldflags": ["-fsanitize=address,undefined"]
        }]
      ]
    }
  ]
}
