#include <doctest/doctest.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <string>

#include "addon/beneath_ops.h"
#include "common/posix.h"

using namespace krunbox;
namespace b = krunbox::beneath;

namespace {

// A fresh folder, removed at the end of the test.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/krunbox-beneath-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { RemoveTreeAt(AT_FDCWD, path.c_str()); }
  std::string operator/(const std::string& rel) const { return path + "/" + rel; }
};

template <typename F>
b::Error Failure(F f) {
  try {
    f();
  } catch (const b::Error& e) {
    return e;
  }
  FAIL("expected a beneath::Error");
  return b::Error(b::Error::Kind::Errno, 0, "", "");
}

}  // namespace

TEST_CASE("special files are refused without being opened") {
  TempDir d;
  REQUIRE(mkfifo((d / "fifo").c_str(), 0644) == 0);
  // Opening this FIFO for reading would block forever; for writing, fail.
  b::Error e = Failure([&] { b::OpenRead(d.path, "fifo", true); });
  CHECK(e.kind == b::Error::Kind::Special);
  CHECK(std::string(b::TypeName(e.type)) == "FIFO");
  CHECK(Failure([&] { b::OpenWrite(d.path, "fifo", 0644, b::WriteMode::Truncate); }).kind == b::Error::Kind::Special);
  CHECK(Failure([&] { b::OpenWrite(d.path, "fifo", 0644, b::WriteMode::Append); }).kind == b::Error::Kind::Special);
  if (geteuid() == 0) {
    REQUIRE(mknod((d / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0);
    e = Failure([&] { b::OpenWrite(d.path, "null", 0644, b::WriteMode::Truncate); });
    CHECK(e.kind == b::Error::Kind::Special);
    CHECK(std::string(b::TypeName(e.type)) == "character device");
  }
  CHECK(S_ISFIFO(b::Stat(d.path, "fifo", false).st_mode));  // stat never opens it
}

TEST_CASE("paths that lead outside are an escape, not an errno") {
  TempDir d, outside;
  REQUIRE(symlink(outside.path.c_str(), (d / "out").c_str()) == 0);
  REQUIRE(symlink("../..", (d / "up").c_str()) == 0);
  CHECK(Failure([&] { b::OpenWrite(d.path, "out/planted", 0644, b::WriteMode::Truncate); }).kind == b::Error::Kind::Escape);
  CHECK(Failure([&] { b::Readdir(d.path, "up", 10); }).kind == b::Error::Kind::Escape);
  CHECK(Failure([&] { b::Mkdir(d.path, "out/x", 0755, false); }).kind == b::Error::Kind::Escape);
  struct stat st;
  CHECK(lstat((outside / "planted").c_str(), &st) != 0);
  // rm removes the link itself.
  b::Remove(d.path, "out", false, false);
  CHECK(stat(outside.path.c_str(), &st) == 0);
}

TEST_CASE("errors carry Node's errno and syscall") {
  TempDir d;
  REQUIRE(mkdir((d / "dir").c_str(), 0755) == 0);
  REQUIRE(mkdir((d / "dir/sub").c_str(), 0755) == 0);
  b::Error e = Failure([&] { b::OpenRead(d.path, "missing", true); });
  CHECK(e.err == ENOENT);
  CHECK(e.syscall == "open");
  CHECK(e.path == "missing");
  CHECK(Failure([&] { b::OpenRead(d.path, "dir", true); }).err == EISDIR);
  CHECK(Failure([&] { b::Remove(d.path, "dir", false, false); }).err == EISDIR);
  CHECK(Failure([&] { b::Mkdir(d.path, "dir", 0755, false); }).err == EEXIST);
  b::Mkdir(d.path, "dir", 0755, true);
  CHECK(Failure([&] { b::Readdir(d.path, "dir", 0); }).err == EOVERFLOW);
  const int fd = b::OpenWrite(d.path, "dir/f", 0600, b::WriteMode::Exclusive);
  close(fd);
  CHECK(Failure([&] { b::OpenWrite(d.path, "dir/f", 0600, b::WriteMode::Exclusive); }).err == EEXIST);
  CHECK(Failure([&] { b::Rename(d.path, "dir", "dir/sub"); }).err == EINVAL);
  b::Remove(d.path, "dir", true, false);
  CHECK(Failure([&] { b::Stat(d.path, "dir", true); }).err == ENOENT);
}
