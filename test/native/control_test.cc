#include <doctest/doctest.h>

#include "runner/addon_control.h"
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

TEST_CASE("control lines from the addon") {
  CHECK(ParseAddonLine("stop 5000")->graceMs == 5000);
  CHECK(ParseAddonLine("stop")->graceMs == 0);
  CHECK(ParseAddonLine("stop -4")->graceMs == 0);
  const auto v = ParseAddonLine("verdict 42 1");
  REQUIRE(v);
  CHECK(v->kind == AddonCommand::Kind::Verdict);
  CHECK(v->id == 42);
  CHECK(v->allowed);
  CHECK_FALSE(ParseAddonLine("verdict 42 0")->allowed);
  CHECK_FALSE(ParseAddonLine("verdict 42 yes"));
  CHECK_FALSE(ParseAddonLine("verdict 42"));
  CHECK_FALSE(ParseAddonLine("stopper"));
}

TEST_CASE("attach requests from the addon, and the agent's answers") {
  const auto a = ParseAddonLine(R"(attach 7 {"hostPath":"/srv/a","guestPath":"/a","readOnly":true})");
  REQUIRE(a);
  CHECK(a->kind == AddonCommand::Kind::Attach);
  CHECK(a->id == 7);
  CHECK(a->spec == R"({"hostPath":"/srv/a","guestPath":"/a","readOnly":true})");
  CHECK_FALSE(ParseAddonLine("attach 7"));
  CHECK_FALSE(ParseAddonLine("attach x {}"));

  GuestReport r;
  ParseControlLine("mounted 7", r);
  ParseControlLine("mount-failed 8 mount bind at /run/root/a: No such file or directory", r);
  ParseControlLine("mount-failed 9", r);
  REQUIRE(r.mounts.size() == 3);
  CHECK(r.mounts[0].id == 7);
  CHECK(r.mounts[0].error.empty());
  CHECK(r.mounts[1].id == 8);
  CHECK(r.mounts[1].error == "mount bind at /run/root/a: No such file or directory");
  CHECK_FALSE(r.mounts[2].error.empty());  // a failure is never read as success
}
