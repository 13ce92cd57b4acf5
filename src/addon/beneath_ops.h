// File operations inside a folder that a hostile guest can write to. Every
// path is resolved by the kernel with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS): symlinks (absolute, "../..", /proc magic links)
// and races with the guest never lead outside the folder. Files are opened
// as O_PATH first and checked with fstat before the real open, so a FIFO
// never blocks and a device node's driver is never opened. Plain C++ (no
// N-API): beneath.cc runs these on libuv's thread pool or, for image
// unpacking, inline; test/native/beneath_test.cc tests them.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace krunbox {
namespace beneath {

// Why an operation failed: an errno, a path that leads outside the root, or
// a special file (FIFO, device, socket) that host-side code never opens.
struct Error : std::runtime_error {
  enum class Kind { Errno, Escape, Special };
  Error(Kind kind, int err, std::string syscall, std::string path, mode_t type = 0);
  Kind kind;
  int err;
  std::string syscall, path;
  mode_t type;  // Special: the file type found (S_IFIFO, S_IFCHR...)
};

// "FIFO", "character device", ... for an S_IF* type.
const char* TypeName(mode_t type);

struct Opened {
  int fd;
  uint64_t size;
};

enum class WriteMode { Truncate, Exclusive, Append };

struct DirEntry {
  std::string name;
  const char* type;  // "file", "directory", "symlink" or "other"
};

// Opens a regular file for reading; `follow`: a last-component symlink is
// followed (still beneath the root). EISDIR for a folder.
Opened OpenRead(const std::string& root, const std::string& rel, bool follow);
// Opens a regular file for writing, creating it (with `mode`) if missing.
int OpenWrite(const std::string& root, const std::string& rel, uint32_t mode, WriteMode how);
// The folder's entries; EOVERFLOW past maxEntries.
std::vector<DirEntry> Readdir(const std::string& root, const std::string& rel, size_t maxEntries);
struct stat Stat(const std::string& root, const std::string& rel, bool follow);
std::string Readlink(const std::string& root, const std::string& rel);
// existOk: an existing entry of that name is not an error (image layers).
void Mkdir(const std::string& root, const std::string& rel, uint32_t mode, bool existOk);
// Removes an entry, never following it if it is a symlink. Folders: with
// `recursive` everything in them; else EISDIR, or (allowEmptyDir) rmdir.
void Remove(const std::string& root, const std::string& rel, bool recursive, bool allowEmptyDir);
void Rename(const std::string& root, const std::string& from, const std::string& to);
// A new file open for writing; an entry of that name that is not a folder is
// replaced, never followed or opened.
int Create(const std::string& root, const std::string& rel, uint32_t mode);
void Symlink(const std::string& root, const std::string& rel, const std::string& target);
void Link(const std::string& root, const std::string& rel, const std::string& existingRel);
// A folder's fd (for fchmod, fchown, or watching it through /proc/self/fd).
int OpenDir(const std::string& root, const std::string& rel, bool follow);

}  // namespace beneath
}  // namespace krunbox
