#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "common/agent_ports.h"
#include "common/vm_config.h"

using namespace krunbox;
using nlohmann::json;

namespace {

// A complete libkrun config (no runtime files to check on this host).
json Base() {
  return {{"backend", "libkrun"}, {"accel", "auto"},      {"cpus", 1},
          {"memoryMiB", 512},     {"bootTimeoutMs", 60000}, {"rootPath", "/"},
          {"workdir", "/"},       {"consoleLimitBytes", 1 << 20}};
}

std::string FieldOf(const json& j) {
  try {
    VmConfigFromJson(j);
  } catch (const ConfigError& e) {
    return e.field();
  }
  return "";
}

}  // namespace

TEST_CASE("a complete config parses and survives a round trip") {
  json j = Base();
  j["shares"] = {{{"hostPath", "/tmp"}, {"guestPath", "/data"}, {"readOnly", true}}};
  j["tmpfs"] = {{{"guestPath", "/scratch"}, {"sizeMiB", 16}}};
  j["vsock"] = {{{"port", 5000}, {"socketPath", "/tmp/x.sock"}, {"listen", true}}};
  j["env"] = {"A=1"};
  const VmConfig c = VmConfigFromJson(j);
  CHECK(c.memoryMiB == 512);
  REQUIRE(c.shares.size() == 1);
  CHECK(c.shares[0].readOnly);
  const VmConfig back = VmConfigFromJson(VmConfigToJson(c));
  CHECK(back.shares[0].guestPath == "/data");
  CHECK(back.tmpfs[0].sizeMiB == 16);
  CHECK(back.vsock[0].port == 5000);
  CHECK(back.env == c.env);
}

TEST_CASE("every default comes from lib/: a missing field is an error naming it") {
  for (const char* key : {"backend", "accel", "cpus", "memoryMiB", "bootTimeoutMs", "rootPath", "workdir", "consoleLimitBytes"}) {
    json j = Base();
    j.erase(key);
    CHECK_MESSAGE(FieldOf(j) == key, key);
  }
}

TEST_CASE("bad values name their field") {
  json j = Base();
  j["cpus"] = 0;
  CHECK(FieldOf(j) == "cpus");
  j = Base();
  j["memoryMiB"] = "lots";
  CHECK(FieldOf(j) == "memoryMiB");
  j = Base();
  j["shares"] = {{{"hostPath", "/tmp"}, {"guestPath", "rel"}}};
  CHECK(FieldOf(j) == "shares[0].guestPath");
  j = Base();
  j["shares"] = {{{"hostPath", "/tmp"}, {"guestPath", "/x/../y"}}};
  CHECK(FieldOf(j) == "shares[0].guestPath");
  j = Base();
  j["shares"] = {{{"hostPath", "/tmp"}, {"guestPath", "/x"}}, {{"hostPath", "/tmp"}, {"guestPath", "/x"}}};
  CHECK(FieldOf(j) == "shares[1].guestPath");
  j = Base();
  j["env"] = {"NOEQUALS"};
  CHECK(FieldOf(j) == "env[0]");
  j = Base();
  j["command"] = {std::string("a\0b", 3)};
  CHECK(FieldOf(j) == "command[0]");
  j = Base();
  j["vsock"] = {{{"port", kExecPort}, {"socketPath", "/tmp/s"}}};
  CHECK(FieldOf(j) == "vsock[0].port");
}

TEST_CASE("a share is a folder or a regular file, and says which") {
  char file[] = "/tmp/krunbox-share-XXXXXX";
  const int fd = mkstemp(file);
  REQUIRE(fd >= 0);
  close(fd);
  json j = Base();
  j["shares"] = {{{"hostPath", "/tmp"}, {"guestPath", "/d"}}, {{"hostPath", file}, {"guestPath", "/f"}}};
  const VmConfig c = VmConfigFromJson(j);
  CHECK(!c.shares[0].file);
  CHECK(c.shares[1].file);
  unlink(file);
  j["shares"] = {{{"hostPath", "/dev/null"}, {"guestPath", "/f"}}};
  CHECK(FieldOf(j) == "shares[0].hostPath");
  j["shares"] = {{{"hostPath", file}, {"guestPath", "/f"}}};
  CHECK(FieldOf(j) == "shares[0].hostPath");
}

TEST_CASE("the qemu backend checks its runtime files") {
  json j = Base();
  j["backend"] = "qemu";
  j["kernelPath"] = "/nonexistent/vmlinuz";
  CHECK(FieldOf(j) == "kernelPath");
}
