#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "runner/util.h"

using namespace krunbox;

TEST_CASE("Descendants finds children and grandchildren, which KillHelpers kills with the helper") {
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  const pid_t child = fork();
  if (child == 0) {
    const pid_t grandchild = fork();
    if (grandchild == 0) {
      pause();
      _exit(0);
    }
    (void)!write(ready[1], &grandchild, sizeof grandchild);
    pause();
    _exit(0);
  }
  pid_t grandchild = 0;
  REQUIRE(read(ready[0], &grandchild, sizeof grandchild) == sizeof grandchild);
  const auto found = Descendants(child);
  CHECK(found == std::vector<pid_t>{grandchild});
  CHECK(Descendants(grandchild).empty());
  kill(grandchild, SIGKILL);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  close(ready[0]);
  close(ready[1]);
}
