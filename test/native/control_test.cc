#include <doctest/doctest.h>

#include "runner/control.h"

using namespace krunbox;

TEST_CASE("control lines from the agent") {
  GuestReport r;
  ParseControlLine("ready", r);
  CHECK(r.ready);
  CHECK_FALSE(r.exited);

  ParseControlLine("exit 3", r);
  CHECK(r.exited);
  CHECK(r.code == 3);

  GuestReport s;
  ParseControlLine("signal 9", s);
  CHECK(s.exited);
  CHECK(s.signal == 9);

  GuestReport e;
  ParseControlLine("error mount failed: ENOENT", e);
  CHECK(e.error == "mount failed: ENOENT");
}

TEST_CASE("hostile control lines stay in range or are ignored") {
  GuestReport r;
  ParseControlLine("exit 4096", r);
  CHECK(r.code == 0);  // 4096 & 0xff
  ParseControlLine("exit -1", r);
  CHECK(r.code == 255);
  GuestReport s;
  ParseControlLine("signal 1000", s);
  CHECK(s.signal >= 0);
  CHECK(s.signal < 128);
  GuestReport u;
  ParseControlLine("readyish", u);
  ParseControlLine("", u);
  ParseControlLine("poweroff", u);
  CHECK_FALSE(u.ready);
  CHECK_FALSE(u.exited);
  CHECK(u.error.empty());
}
