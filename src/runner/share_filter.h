// The seccomp filter the share server (virtiofsd) runs under. The guest
// drives every file operation virtiofsd makes in host folders; whatever
// virtiofsd does with it, the host kernel refuses the calls that would leave
// a privilege behind on the host:
//   - a device node (mknod/mknodat of a character or block device),
//   - a setuid or setgid bit (chmod family, open/creat/mknod/mkdir modes),
//   - openat2 and io_uring, whose modes and operations a filter cannot see
//     (virtiofsd falls back to openat when openat2 answers ENOSYS).
// FIFOs, sockets, symlinks and ordinary modes are untouched.
#pragma once

#include <linux/filter.h>

#include <vector>

namespace krunbox {

// The filter as a BPF program, built with libseccomp (x86-64 syscalls; any
// other ABI, x32 or i386, is killed).
std::vector<sock_filter> ShareServerFilter();

// Loads `program` into the calling thread (with PR_SET_NO_NEW_PRIVS). Only
// two prctl calls: safe between fork and exec. False on failure (errno set).
bool InstallFilter(const std::vector<sock_filter>& program);

}  // namespace krunbox
