"""ARM latency: measured locally or on a device over SSH, estimated under emulation or from a LUT."""
