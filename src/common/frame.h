// The framing both agent protocols use (exec_protocol.h, fs_protocol.h):
// u32 little-endian length of (type + payload), u8 type, payload.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace krunbox {

constexpr size_t kFrameHeader = 5;

// The header of a frame whose payload has `size` bytes.
inline std::array<char, kFrameHeader> FrameHeader(uint8_t type, size_t size) {
  const uint32_t len = static_cast<uint32_t>(size + 1);
  return {static_cast<char>(len), static_cast<char>(len >> 8), static_cast<char>(len >> 16), static_cast<char>(len >> 24),
          static_cast<char>(type)};
}

inline void AppendFrame(std::string& out, uint8_t type, const std::string& payload) {
  const auto header = FrameHeader(type, payload.size());
  out.append(header.data(), header.size());
  out.append(payload);
}

// The length field (type + payload) of a frame header's first four bytes.
inline uint32_t FrameLength(const char* header) {
  return static_cast<uint8_t>(header[0]) | static_cast<uint8_t>(header[1]) << 8 | static_cast<uint8_t>(header[2]) << 16 |
         static_cast<uint32_t>(static_cast<uint8_t>(header[3])) << 24;
}

}  // namespace krunbox
