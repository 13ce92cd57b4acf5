#include "runner/control.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>


namespace krunbox {
namespace {
constexpr size_t kMaxLine = 4096;
}

ControlChannel::ControlChannel(const std::string& path) : path_(path), listen_(ListenUnix(path)) {}

ControlChannel::~ControlChannel() { unlink(path_.c_str()); }

void ControlChannel::AddPollFds(std::vector<pollfd>& fds) const {
  fds.push_back({listen_.get(), POLLIN, 0});
  if (conn_.valid()) fds.push_back({conn_.get(), POLLIN, 0});
}

void ControlChannel::Handle(const std::vector<pollfd>& fds, GuestReport& report) {
  if (PollEvents(fds, listen_.get()) & POLLIN) {
    Fd c(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    // Only the agent's first connection is trusted with the VM's status; a
    // workload that dials the port later is hung up on.
    if (c.valid() && !conn_.valid() && !report.ready) conn_ = std::move(c);
  }
  if (!PollEvents(fds, conn_.get())) return;
  char chunk[1024];
  const ssize_t n = read(conn_.get(), chunk, sizeof chunk);
  if (n <= 0) {
    if (n == 0 || errno != EAGAIN) conn_.reset();
    return;
  }
  buf_.append(chunk, static_cast<size_t>(n));
  size_t nl;
  while ((nl = buf_.find('\n')) != std::string::npos) {
    ParseControlLine(buf_.substr(0, nl), report);
    buf_.erase(0, nl + 1);
  }
  if (buf_.size() > kMaxLine) {
    report.error = "the guest agent sent a control line longer than 4096 bytes";
    conn_.reset();
  }
}

void ParseControlLine(const std::string& line, GuestReport& report) {
  if (line == "ready") {
    report.ready = true;
  } else if (line.rfind("exit ", 0) == 0) {
    report.exited = true;
    report.code = atoi(line.c_str() + 5) & 0xff;
  } else if (line.rfind("signal ", 0) == 0) {
    report.exited = true;
    report.signal = atoi(line.c_str() + 7) & 0x7f;
  } else if (line.rfind("error ", 0) == 0) {
    report.error = line.substr(6);
  } else if (line.rfind("mounted ", 0) == 0) {
    report.mounts.push_back({strtoull(line.c_str() + 8, nullptr, 10), ""});
  } else if (line.rfind("mount-failed ", 0) == 0) {
    char* end = nullptr;
    const uint64_t id = strtoull(line.c_str() + 13, &end, 10);
    const std::string why = end && *end == ' ' ? std::string(end + 1) : "";
    report.mounts.push_back({id, why.empty() ? "the guest agent could not mount it" : why});
  }
}

bool ControlChannel::RequestPowerOff() { return Send("poweroff"); }

bool ControlChannel::Send(const std::string& line) { return conn_.valid() && WriteAll(conn_.get(), line + "\n"); }

}  // namespace krunbox
