#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "runner/util.h"

using namespace krunbox;

namespace {

// A child that forks a grandchild; both wait to be killed.
pid_t ChildWithGrandchild(pid_t* grandchild) {
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  const pid_t child = fork();
  if (child == 0) {
    const pid_t g = fork();
    if (g == 0) {
      pause();
      _exit(0);
    }
    (void)!write(ready[1], &g, sizeof g);
    pause();
    _exit(0);
  }
  REQUIRE(read(ready[0], grandchild, sizeof *grandchild) == sizeof *grandchild);
  close(ready[0]);
  close(ready[1]);
  return child;
}

// 'Z' for a zombie, 0 once the process is gone.
char State(pid_t pid) {
  const std::string stat = ReadProcFile("/proc/" + std::to_string(pid) + "/stat");
  return stat.empty() ? 0 : stat[stat.rfind(')') + 2];
}

}  // namespace

TEST_CASE("Descendants finds children and grandchildren") {
  pid_t grandchild = 0;
  const pid_t child = ChildWithGrandchild(&grandchild);
  CHECK(Descendants(child) == std::vector<pid_t>{grandchild});
  CHECK(Descendants(grandchild).empty());
  kill(grandchild, SIGKILL);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
}

TEST_CASE("KillTree returns once the child and its descendants have exited") {
  pid_t grandchild = 0;
  const pid_t child = ChildWithGrandchild(&grandchild);
  KillTree(child);
  CHECK(State(child) == 0);  // reaped
  const char g = State(grandchild);
  CHECK((g == 0 || g == 'Z'));  // exited (init may not have reaped it yet)
}
