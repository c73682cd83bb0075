{
  "targets": [
    {
      "target_name": "udp_batch",
      "sources": ["dnsd/native/udp_batch.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "conntrack",
      "sources": ["lb/native/conntrack.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
