#include <doctest/doctest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "common/posix.h"
#include "runner/staging.h"

using namespace krunbox;

TEST_CASE("OpenBindSource opens a canonical path and refuses a symbolic link in any part of it") {
  char tmpl[] = "/tmp/krunbox-staging-test-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  const std::string dir = tmpl;
  REQUIRE(mkdir((dir + "/real").c_str(), 0755) == 0);
  REQUIRE(mkdir((dir + "/real/inner").c_str(), 0755) == 0);
  REQUIRE(symlink("real", (dir + "/link").c_str()) == 0);

  CHECK(OpenBindSource(dir + "/real/inner").valid());
  // A folder swapped for a link, in the middle of the path or at its end.
  CHECK_THROWS_WITH_AS(OpenBindSource(dir + "/link/inner"), doctest::Contains("symbolic link"), RunnerError);
  CHECK_THROWS_WITH_AS(OpenBindSource(dir + "/link"), doctest::Contains("symbolic link"), RunnerError);
  CHECK_THROWS_AS(OpenBindSource(dir + "/missing"), RunnerError);

  RemoveTreeAt(AT_FDCWD, dir.c_str(), true);
}
