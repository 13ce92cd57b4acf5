// The workload's file system: its root (from the VM's virtio-fs tree, the
// root's own cached share, or a disk image) with a copy-on-write layer, and
// the mounts in it (shares and tmpfs, at boot or attached later).
#pragma once

#include "common/guest_config.h"

namespace agent {

// Builds the root at kNewRoot with every mount of `cfg`, /proc, /sys, /dev
// and a tmpfs /tmp. `pid1`: the agent loads the modules a disk root needs
// (under libkrun's init the kernel has them built in).
void BuildRoot(const krunbox::GuestConfig& cfg, bool pid1);

// One share or tmpfs at its target in the workload's root (the target is
// created if missing). A share's source is a path in the virtio-fs tree.
void MountInRoot(const krunbox::GuestMount& m);

}  // namespace agent
