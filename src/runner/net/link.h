// The guest's link: a stream socket to the VMM's virtio-net device (QEMU's
// -netdev stream, libkrun's unixstream) carrying Ethernet frames, each
// after a 4-byte big-endian length (passt's framing).
#pragma once

#include <functional>
#include <string>

#include "common/posix.h"

namespace krunbox::net {

class GuestLink {
 public:
  explicit GuestLink(Fd fd);
  int fd() const { return fd_.get(); }

  // Queues a frame for the guest.
  void Send(const std::string& frame);
  // So much is queued that producers (host sockets) should wait.
  bool Congested() const { return out_.size() - outOff_ > kCongestedBytes; }
  bool WantsWrite() const { return outOff_ < out_.size(); }

  // Reads what the VMM sent and hands over each whole frame; false when
  // the VMM hung up or broke the framing (a frame larger than any MTU).
  bool Read(const std::function<void(const uint8_t*, size_t)>& onFrame);
  // Writes what is queued, as far as the socket takes it; false on error.
  bool Flush();

 private:
  static constexpr size_t kCongestedBytes = 4 << 20;
  Fd fd_;
  std::string in_, out_;
  size_t outOff_ = 0;
};

}  // namespace krunbox::net
