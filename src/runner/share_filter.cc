#include "runner/share_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <memory>

#include "runner/util.h"

namespace krunbox {
namespace {

// fchmodat2 (Linux 6.6) is newer than the libseccomp we link.
constexpr int kSysFchmodat2 = 452;

// Each syscall that takes a mode, and the index of that argument.
struct ModeArg {
  int nr;
  unsigned arg;
};
constexpr ModeArg kModeArgs[] = {
    {SCMP_SYS(chmod), 1}, {SCMP_SYS(fchmod), 1}, {SCMP_SYS(fchmodat), 2}, {kSysFchmodat2, 2},
    {SCMP_SYS(open), 2},  {SCMP_SYS(openat), 3}, {SCMP_SYS(creat), 1},    {SCMP_SYS(mknod), 1},
    {SCMP_SYS(mknodat), 2}, {SCMP_SYS(mkdir), 1}, {SCMP_SYS(mkdirat), 2},
};

void Check(int rc, const char* what) {
  if (rc < 0) throw RunnerError("SETUP_FAILED", std::string("seccomp filter: ") + what + ": " + strerror(-rc));
}

}  // namespace

std::vector<sock_filter> ShareServerFilter() {
  std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(seccomp_init(SCMP_ACT_ALLOW), seccomp_release);
  if (!ctx) throw RunnerError("SETUP_FAILED", "seccomp_init failed");
  const uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
  for (const ModeArg& m : kModeArgs) {
    for (scmp_datum_t bit : {S_ISUID, S_ISGID})
      Check(seccomp_rule_add(ctx.get(), refuse, m.nr, 1, scmp_arg_cmp{m.arg, SCMP_CMP_MASKED_EQ, bit, bit}), "mode rule");
  }
  for (int nr : {SCMP_SYS(mknod), SCMP_SYS(mknodat)}) {
    const unsigned arg = nr == SCMP_SYS(mknod) ? 1 : 2;
    for (scmp_datum_t type : {S_IFCHR, S_IFBLK})
      Check(seccomp_rule_add(ctx.get(), refuse, nr, 1, scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, S_IFMT, type}), "device rule");
  }
  for (int nr : {SCMP_SYS(openat2), SCMP_SYS(io_uring_setup)})
    Check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), nr, 0), "ENOSYS rule");

  // libseccomp 2.5 exports only to a file descriptor.
  Fd mem(memfd_create("krunbox-seccomp", MFD_CLOEXEC));
  if (!mem.valid()) ThrowErrno("SETUP_FAILED", "memfd_create");
  Check(seccomp_export_bpf(ctx.get(), mem.get()), "export");
  const off_t size = lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % sizeof(sock_filter) != 0) throw RunnerError("SETUP_FAILED", "seccomp filter: bad export");
  std::vector<sock_filter> program(static_cast<size_t>(size) / sizeof(sock_filter));
  if (pread(mem.get(), program.data(), static_cast<size_t>(size), 0) != size) ThrowErrno("SETUP_FAILED", "read seccomp filter");
  return program;
}

bool InstallFilter(const std::vector<sock_filter>& program) {
  sock_fprog prog{static_cast<unsigned short>(program.size()), const_cast<sock_filter*>(program.data())};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

}  // namespace krunbox
