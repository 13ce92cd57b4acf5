// The guest's side of the network, the same in every VM: one link to the
// gateway (the runner's stack) in 198.18.0.0/15, a block reserved for
// benchmarking that no real destination uses. Synthetic addresses for
// names come from the same block; nothing in it is ever reached on the host.
#pragma once

#include <cstdint>

#include "runner/net/packet.h"

namespace krunbox::net {

constexpr uint32_t kGatewayIp = 0xc6120001;  // 198.18.0.1: gateway and DNS server
constexpr uint32_t kGuestIp = 0xc6120002;    // 198.18.0.2
constexpr uint32_t kGuestPrefixLen = 24;
constexpr uint32_t kOwnBlock = 0xc6120000, kOwnBlockMask = 0xfffe0000;  // 198.18.0.0/15
constexpr uint32_t kSyntheticBase = 0xc6130001;  // 198.19.0.1 ...
constexpr uint32_t kSyntheticCount = 16384;      // ... 198.19.64.0
constexpr uint32_t kSyntheticTtlSeconds = 60;
// Large frames: one segment carries up to 64 KiB, which is what makes an
// emulated guest fast (per-packet costs dominate under TCG).
constexpr uint32_t kGuestMtu = 65520;
constexpr Mac kGatewayMac = {0x52, 0x54, 0x00, 0x6b, 0x62, 0x01};
constexpr Mac kGuestMac = {0x52, 0x54, 0x00, 0x6b, 0x62, 0x02};

inline const char* GuestMacText() { return "52:54:00:6b:62:02"; }

}  // namespace krunbox::net
