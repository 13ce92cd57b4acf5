#include "runner/console.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>


namespace krunbox {

ConsoleSink::ConsoleSink(const std::string& fifoBase, const std::string& filePath, size_t limit)
    : base_(fifoBase), limit_(limit) {
  for (const char* ext : {".in", ".out"}) {
    const std::string p = base_ + ext;
    unlink(p.c_str());
    if (mkfifo(p.c_str(), 0600) != 0) ThrowErrno("SETUP_FAILED", "mkfifo " + p);
  }
  // Opened before QEMU starts, so it never blocks and loses nothing; the
  // input side stays open so that QEMU never sees it end.
  out_ = Fd(open((base_ + ".out").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  in_ = Fd(open((base_ + ".in").c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
  file_ = Fd(open(filePath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out_.valid() || !in_.valid() || !file_.valid()) ThrowErrno("SETUP_FAILED", "console " + filePath);
}

ConsoleSink::~ConsoleSink() {
  unlink((base_ + ".in").c_str());
  unlink((base_ + ".out").c_str());
}

namespace {
constexpr int kCappedDrainMs = 100;
// Room for what QEMU writes between two drains (the default is 64 KiB).
constexpr int kCappedPipeBytes = 1 << 20;
}  // namespace

void ConsoleSink::AddPollFds(std::vector<pollfd>& fds) const {
  if (!truncated_) fds.push_back({out_.get(), POLLIN, 0});
}

void ConsoleSink::Handle(const std::vector<pollfd>& fds) {
  const bool due = truncated_ ? NowMs() >= nextDrain_ : PollEvents(fds, out_.get()) != 0;
  if (!due) return;
  Copy();
  if (truncated_) nextDrain_ = NowMs() + kCappedDrainMs;
}

void ConsoleSink::Drain() { Copy(); }

void ConsoleSink::Copy() {
  char buf[65536];
  ssize_t n;
  while ((n = read(out_.get(), buf, sizeof buf)) > 0) {
    const size_t keep = written_ >= limit_ ? 0 : std::min(static_cast<size_t>(n), limit_ - written_);
    if (keep > 0) WriteAll(file_.get(), std::string(buf, keep));
    written_ += keep;
    if (keep < static_cast<size_t>(n) && !truncated_) {
      truncated_ = true;
      WriteAll(file_.get(), "\n[krunbox: console output past " + std::to_string(limit_) + " bytes dropped]\n");
      fcntl(out_.get(), F_SETPIPE_SZ, kCappedPipeBytes);  // best effort: a smaller pipe only slows the guest
    }
  }
}

}  // namespace krunbox
