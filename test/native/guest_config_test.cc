#include <doctest/doctest.h>

#include <stdexcept>

#include "common/guest_config.h"
#include "common/vm_config.h"
#include "runner/staging.h"

using namespace krunbox;

TEST_CASE("GuestConfig survives a JSON round trip") {
  GuestConfig c;
  c.command = {"/bin/sh", "-c", "echo \"hi\""};
  c.env = {"A=1", "B=two words"};
  c.workdir = "/work";
  c.rootReadOnly = true;
  c.rootSource = RootSource::Disk;
  c.rootPartition = 3;
  c.mounts.push_back({GuestMount::Kind::Share, "shares/0", "/data", true, 0});
  c.mounts.push_back({GuestMount::Kind::Tmpfs, "", "/scratch", false, 100});
  c.mounts.push_back({GuestMount::Kind::Share, "shares/1", "/etc/app.conf", true, 0, true});

  const GuestConfig back = GuestConfigFromJson(GuestConfigToJson(c));
  CHECK(back.command == c.command);
  CHECK(back.env == c.env);
  CHECK(back.workdir == "/work");
  CHECK(back.rootReadOnly);
  CHECK(back.rootSource == RootSource::Disk);
  CHECK(back.rootPartition == 3);
  REQUIRE(back.mounts.size() == 3);
  CHECK(back.mounts[0].kind == GuestMount::Kind::Share);
  CHECK(back.mounts[0].source == "shares/0");
  CHECK(back.mounts[0].target == "/data");
  CHECK(back.mounts[0].readOnly);
  CHECK(back.mounts[1].kind == GuestMount::Kind::Tmpfs);
  CHECK(back.mounts[1].target == "/scratch");
  CHECK(back.mounts[1].sizeMiB == 100);
  CHECK(!back.mounts[0].file);
  CHECK(back.mounts[2].file);
}

TEST_CASE("GuestConfigFromJson refuses malformed configs") {
  CHECK_THROWS_AS(GuestConfigFromJson("not json"), std::runtime_error);
  CHECK_THROWS_AS(GuestConfigFromJson(R"({"command":[],"env":[],"workdir":"/"})"), std::runtime_error);
  CHECK_THROWS_AS(GuestConfigFromJson(
                      R"({"command":[],"env":[],"workdir":"/","rootReadOnly":false,"mounts":[{"type":"nfs","target":"/x"}]})"),
                  std::runtime_error);
}

TEST_CASE("the runner gives the guest each share and tmpfs in order") {
  VmConfig vm;
  vm.command = {"/bin/true"};
  vm.env = {"K=V"};
  vm.workdir = "/";
  vm.rootReadOnly = true;
  vm.shares = {{"/srv/a", "/a", false}, {"/srv/b", "/b", true, true}};
  vm.tmpfs = {{"/t", 8}};
  vm.rootDisk = RootDisk{"/img/root.raw", "raw", 2};
  const GuestConfig g = GuestConfigFor(vm, RootSource::Disk);
  CHECK(g.rootSource == RootSource::Disk);
  CHECK(g.rootPartition == 2);
  REQUIRE(g.mounts.size() == 3);
  CHECK(g.mounts[0].source == "shares/0");
  CHECK(g.mounts[1].source == "shares/1");
  CHECK(g.mounts[1].readOnly);
  CHECK(!g.mounts[0].file);
  CHECK(g.mounts[1].file);
  CHECK(g.mounts[2].kind == GuestMount::Kind::Tmpfs);
  CHECK(g.mounts[2].sizeMiB == 8);
  CHECK(g.command == vm.command);
  CHECK(g.rootReadOnly);
}

TEST_CASE("a mount attached later survives the trip to the agent") {
  const GuestMount share = GuestMountFromJson(GuestMountToJson({GuestMount::Kind::Share, "attached/3", "/data", true, 0}));
  CHECK(share.kind == GuestMount::Kind::Share);
  CHECK(share.source == "attached/3");
  CHECK(share.target == "/data");
  CHECK(share.readOnly);
  const GuestMount tmpfs = GuestMountFromJson(GuestMountToJson({GuestMount::Kind::Tmpfs, "", "/t", false, 9}));
  CHECK(tmpfs.kind == GuestMount::Kind::Tmpfs);
  CHECK(tmpfs.sizeMiB == 9);
  CHECK_THROWS_AS(GuestMountFromJson(R"({"type":"nfs","target":"/x"})"), std::runtime_error);
  CHECK_THROWS_AS(GuestMountFromJson("{"), std::runtime_error);
}
