#include "runner/vsock_bridge.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

namespace krunbox {
namespace {

constexpr int kHandshakeMs = 5000;

// Reads one "\n"-terminated reply of at most 64 bytes within the deadline.
bool ReadHandshakeReply(int fd, std::string& line) {
  pollfd p{fd, POLLIN, 0};
  while (line.size() < 64) {
    if (poll(&p, 1, kHandshakeMs) <= 0) return false;
    char c;
    if (read(fd, &c, 1) != 1) return false;
    if (c == '\n') return true;
    line.push_back(c);
  }
  return false;
}

}  // namespace

void VsockBridge::AddHostToGuest(uint32_t port, const std::string& listenPath) {
  listeners_.push_back({port, listenPath, ListenUnix(listenPath)});
}

void VsockBridge::AddGuestToHost(uint32_t port, const std::string& socketPath) {
  const std::string link = GuestToHostPath(port);
  if (symlink(socketPath.c_str(), link.c_str()) != 0) ThrowErrno("SETUP_FAILED", "symlink " + link);
  links_.push_back(link);
}

Fd VsockBridge::ConnectGuest(uint32_t port) const {
  Fd fd = ConnectUnix(uds_);
  if (!fd.valid()) return fd;
  std::string reply;
  if (!WriteAll(fd.get(), "CONNECT " + std::to_string(port) + "\n") || !ReadHandshakeReply(fd.get(), reply) ||
      reply.compare(0, 3, "OK ") != 0)
    fd.reset();
  return fd;
}

void VsockBridge::AddPollFds(std::vector<pollfd>& fds) const {
  for (const Listener& l : listeners_) fds.push_back({l.fd.get(), POLLIN, 0});
  for (const Splice& s : splices_) s.AddPollFds(fds);
}

void VsockBridge::Handle(const std::vector<pollfd>& fds) {
  for (Listener& l : listeners_) {
    if (!(PollEvents(fds, l.fd.get()) & POLLIN)) continue;
    Fd host(accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!host.valid()) continue;
    // A refused guest port closes the host connection, as libkrun does.
    Fd guest = ConnectGuest(l.port);
    if (guest.valid()) splices_.emplace_back(std::move(host), std::move(guest));
  }
  for (auto it = splices_.begin(); it != splices_.end();) it = it->Pump(fds) ? std::next(it) : splices_.erase(it);
}

void VsockBridge::Close() {
  splices_.clear();
  for (Listener& l : listeners_) {
    l.fd.reset();
    unlink(l.path.c_str());
  }
  listeners_.clear();
  for (const std::string& link : links_) unlink(link.c_str());
  links_.clear();
}

}  // namespace krunbox
