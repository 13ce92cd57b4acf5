#include "agent/vsock.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
// clang-format off
#include <linux/vm_sockets.h>
// clang-format on

#include "agent/setup.h"

namespace agent {
namespace {

int VsockSocket() {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Fail("vsock socket");
  return fd;
}

sockaddr_vm VsockAddr(uint32_t cid, uint32_t port) {
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = cid;
  addr.svm_port = port;
  return addr;
}

}  // namespace

int VsockConnect(uint32_t port) {
  int fd = VsockSocket();
  const sockaddr_vm addr = VsockAddr(VMADDR_CID_HOST, port);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int VsockListen(uint32_t port, int backlog) {
  int fd = VsockSocket();
  const sockaddr_vm addr = VsockAddr(VMADDR_CID_ANY, port);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, backlog) != 0) Fail("vsock listen");
  return fd;
}

// Copies stdin -> sock and sock -> stdout until the socket side ends. The
// end of stdin is not passed on as a half-close: vsock transports (vhost
// and vhost-user alike) treat a shutdown as the end of the connection and
// drop what the peer had not yet sent.
static int Bridge(int sock) {
  bool inOpen = true;
  char buf[65536];
  for (;;) {
    pollfd fds[2] = {{sock, POLLIN, 0}, {0, static_cast<short>(inOpen ? POLLIN : 0), 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (fds[0].revents) {
      ssize_t n = read(sock, buf, sizeof buf);
      if (n <= 0) return 0;
      if (!WriteAll(1, std::string(buf, static_cast<size_t>(n)))) return 1;
    }
    if (inOpen && fds[1].revents) {
      ssize_t n = read(0, buf, sizeof buf);
      if (n <= 0) {
        inOpen = false;
      } else if (!WriteAll(sock, std::string(buf, static_cast<size_t>(n)))) {
        return 1;
      }
    }
  }
}

int VsockTool(const std::string& mode, uint32_t port) {
  if (mode == "vsock-connect") {
    int fd = VsockConnect(port);
    if (fd < 0) {
      perror("vsock connect");
      return 1;
    }
    return Bridge(fd);
  }
  int l = VsockListen(port);
  if (mode == "vsock-listen") {
    int c = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    close(l);
    return c < 0 ? 1 : Bridge(c);
  }
  for (;;) {  // vsock-echo
    int c = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    char buf[65536];
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0)
      if (!WriteAll(c, std::string(buf, static_cast<size_t>(n)))) break;
    close(c);
  }
}

}  // namespace agent
