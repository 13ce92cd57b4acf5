#include "common/splice.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

namespace krunbox {
namespace {
constexpr size_t kChunk = 64 * 1024;
}  // namespace

Splice::Splice(Fd a, Fd b, SpliceEnds ends) : a_(std::move(a)), b_(std::move(b)), closeWhenBEnds_(ends.closeWhenBEnds) {
  ab_.passEof = ends.passEofToB;
  SetNonBlocking(a_.get());
  SetNonBlocking(b_.get());
  ab_.from = ba_.to = a_.get();
  ab_.to = ba_.from = b_.get();
}

void Splice::AddPollFds(std::vector<pollfd>& fds) const {
  auto want = [](const Direction& d, int fd) -> short {
    short ev = 0;
    if (d.from == fd && !d.eof && d.pending.empty()) ev |= POLLIN;
    if (d.to == fd && !d.pending.empty()) ev |= POLLOUT;
    return ev;
  };
  fds.push_back({a_.get(), static_cast<short>(want(ab_, a_.get()) | want(ba_, a_.get())), 0});
  fds.push_back({b_.get(), static_cast<short>(want(ab_, b_.get()) | want(ba_, b_.get())), 0});
}

bool Splice::PumpOne(Direction& d, short fromEvents) {
  if (!d.eof && d.pending.empty() && (fromEvents & (POLLIN | POLLHUP | POLLERR))) {
    char buf[kChunk];
    ssize_t n = read(d.from, buf, sizeof buf);
    if (n > 0) {
      d.pending.assign(buf, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      d.eof = true;
    }
  }
  if (!d.pending.empty()) {  // non-blocking: EAGAIN just waits for POLLOUT
    ssize_t n = send(d.to, d.pending.data(), d.pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      d.pending.erase(0, static_cast<size_t>(n));
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      d.pending.clear();
      d.eof = true;
    }
  }
  if (d.eof && d.pending.empty() && d.passEof) shutdown(d.to, SHUT_WR);
  return !(d.eof && d.pending.empty());
}

bool Splice::Pump(const std::vector<pollfd>& fds) {
  const short ea = PollEvents(fds, a_.get()), eb = PollEvents(fds, b_.get());
  const bool abOpen = PumpOne(ab_, ea);
  const bool baOpen = PumpOne(ba_, eb);
  // A side that hung up both ways, once read to the end, can move nothing
  // more (and poll() would report it forever).
  if ((ab_.eof && (ea & POLLHUP)) || (ba_.eof && (eb & POLLHUP))) return false;
  if (closeWhenBEnds_ && !baOpen) return false;
  return abOpen || baOpen;
}

}  // namespace krunbox
