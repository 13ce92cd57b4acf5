#include "runner/addon_control.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

namespace krunbox {
namespace {
// An attach line carries two paths.
constexpr size_t kMaxLine = 16 << 10;
}  // namespace

std::optional<AddonCommand> ParseAddonLine(const std::string& line) {
  AddonCommand c;
  char* end = nullptr;
  if (line == "stop" || line.rfind("stop ", 0) == 0) {
    c.graceMs = line.size() > 5 ? strtoll(line.c_str() + 5, &end, 10) : 0;
    if (c.graceMs < 0) c.graceMs = 0;
    return c;
  }
  if (line.rfind("verdict ", 0) == 0) {
    c.kind = AddonCommand::Kind::Verdict;
    c.id = strtoull(line.c_str() + 8, &end, 10);
    if (!end || (std::string(end) != " 1" && std::string(end) != " 0")) return std::nullopt;
    c.allowed = std::string(end) == " 1";
    return c;
  }
  if (line.rfind("attach ", 0) == 0) {
    c.kind = AddonCommand::Kind::Attach;
    c.id = strtoull(line.c_str() + 7, &end, 10);
    if (!end || *end != ' ') return std::nullopt;
    c.spec = end + 1;
    return c;
  }
  return std::nullopt;
}

bool AddonControl::Read(std::vector<AddonCommand>& out) {
  char chunk[4096];
  const ssize_t n = read(fd_, chunk, sizeof chunk);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
  if (n <= 0) return false;
  buf_.append(chunk, static_cast<size_t>(n));
  size_t nl;
  while ((nl = buf_.find('\n')) != std::string::npos) {
    if (std::optional<AddonCommand> c = ParseAddonLine(buf_.substr(0, nl))) out.push_back(*c);
    buf_.erase(0, nl + 1);
  }
  if (buf_.size() > kMaxLine) buf_.clear();
  return true;
}

}  // namespace krunbox
