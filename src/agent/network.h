// The guest's network interfaces, set up with ioctls (no `ip` binary in
// the image needed): lo in every VM, eth0 when the VM has a network.
#pragma once

#include "common/guest_config.h"

namespace agent {

// lo up (the kernel gives it 127.0.0.1 and ::1).
void BringUpLoopback();

// eth0: address, netmask, MTU, up, and the default route through the
// gateway. IPv6 is switched off on it: the host side carries IPv4 only.
void ConfigureEthernet(const krunbox::GuestNetwork& net);

// /etc/resolv.conf naming the gateway, in the workload root at `root`.
// A copy-on-write root gets a file of its own; a writable host folder is
// never changed: an existing regular file there is covered by a bind mount.
void ProvideResolvConf(const krunbox::GuestNetwork& net, const std::string& root, bool copyOnWrite);

}  // namespace agent
