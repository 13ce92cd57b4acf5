#include "runner/net/link.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

namespace krunbox::net {
namespace {
constexpr size_t kMaxFrame = 65535 + 14;
constexpr size_t kReadChunk = 256 * 1024;
}  // namespace

GuestLink::GuestLink(Fd fd) : fd_(std::move(fd)) {
  SetNonBlocking(fd_.get());
  const int buf = 4 << 20;
  setsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
}

void GuestLink::Send(const std::string& frame) {
  if (outOff_ > kReadChunk) {  // drop what was sent, now and then
    out_.erase(0, outOff_);
    outOff_ = 0;
  }
  const uint32_t n = static_cast<uint32_t>(frame.size());
  const char header[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                          static_cast<char>(n)};
  out_.append(header, 4);
  out_.append(frame);
}

bool GuestLink::Read(const std::function<void(const uint8_t*, size_t)>& onFrame) {
  static thread_local char chunk[kReadChunk];
  const ssize_t n = read(fd_.get(), chunk, sizeof chunk);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return false;
  if (n > 0) in_.append(chunk, static_cast<size_t>(n));
  size_t off = 0;
  while (in_.size() - off >= 4) {
    const auto* p = reinterpret_cast<const uint8_t*>(in_.data() + off);
    const size_t len = static_cast<size_t>(p[0]) << 24 | static_cast<size_t>(p[1]) << 16 | p[2] << 8 | p[3];
    if (len > kMaxFrame) return false;
    if (in_.size() - off - 4 < len) break;
    onFrame(p + 4, len);
    off += 4 + len;
  }
  in_.erase(0, off);
  return true;
}

bool GuestLink::Flush() {
  while (outOff_ < out_.size()) {
    const ssize_t n = send(fd_.get(), out_.data() + outOff_, out_.size() - outOff_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    outOff_ += static_cast<size_t>(n);
  }
  out_.clear();
  outOff_ = 0;
  return true;
}

}  // namespace krunbox::net
