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
  j = Base();
  j["vsock"] = {{{"port", kFsPort}, {"socketPath", "/tmp/s"}}};
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

TEST_CASE("network policy, published ports and the forwarder socket survive a round trip") {
  json j = Base();
  j["network"] = {{"enabled", true},
                  {"allow",
                   {{{"kind", "name"}, {"value", "API.test"}, {"port", 8080}, {"text", "api.test:8080"}},
                    {{"kind", "suffix"}, {"value", ".pythonhosted.org"}, {"text", "*.pythonhosted.org"}},
                    {{"kind", "cidr"}, {"value", "203.0.113.0/24"}, {"text", "203.0.113.0/24"}},
                    {{"kind", "any"}, {"text", "*"}}}},
                  {"hosts", {{"api.test", {"127.0.0.1", "::1"}}}},
                  {"askHost", true}};
  j["ports"] = {{{"hostIp", "127.0.0.1"}, {"hostPort", 0}, {"guestPort", 80}}};
  j["forwardSocketPath"] = "/tmp/forward.sock";
  const VmConfig c = VmConfigFromJson(j);
  CHECK(c.network.enabled);
  CHECK(c.network.askHost);
  REQUIRE(c.network.allow.size() == 4);
  CHECK(c.network.allow[0].name == "api.test");
  CHECK(c.network.allow[0].port == 8080);
  CHECK(c.network.allow[1].kind == NetRule::Kind::Suffix);
  CHECK(c.network.allow[2].cidr.Contains(*IpAddress::Parse("203.0.113.9")));
  CHECK(c.network.hosts.at("api.test").size() == 2);
  CHECK(c.ports.at(0).guestPort == 80);
  const VmConfig again = VmConfigFromJson(VmConfigToJson(c));
  CHECK(VmConfigToJson(again) == VmConfigToJson(c));
}

TEST_CASE("bad network and port entries name their field") {
  auto with = [](const char* key, json value) {
    json j = Base();
    j[key] = value;
    j["forwardSocketPath"] = "/tmp/f.sock";
    return FieldOf(j);
  };
  CHECK(with("network", {{"allow", {{{"kind", "cidr"}, {"value", "10.0.0.0/33"}}}}}) == "network.allow[0].value");
  CHECK(with("network", {{"deny", {{{"kind", "name"}, {"value", "a b"}}}}}) == "network.deny[0].value");
  CHECK(with("network", {{"allow", {{{"kind", "suffix"}, {"value", "example.com"}}}}}) == "network.allow[0].value");
  CHECK(with("network", {{"allow", {{{"kind", "nope"}}}}}) == "network.allow[0].kind");
  CHECK(with("network", {{"allow", {{{"kind", "any"}, {"port", 0}}}}}) == "network.allow[0].port");
  CHECK(with("network", {{"hosts", {{"api.test", {"localhost"}}}}}) == "network.hosts.api.test");
  CHECK(with("ports", {{{"hostIp", "localhost"}, {"hostPort", 1}, {"guestPort", 80}}}) == "ports[0].hostIp");
  CHECK(with("ports", {{{"hostIp", "127.0.0.1"}, {"hostPort", 8080}, {"guestPort", 80}},
                       {{"hostIp", "127.0.0.1"}, {"hostPort", 8080}, {"guestPort", 81}}}) == "ports[1].hostPort");
  json noForwarder = Base();
  noForwarder["ports"] = {{{"hostIp", "127.0.0.1"}, {"hostPort", 0}, {"guestPort", 80}}};
  CHECK(FieldOf(noForwarder) == "ports");
  json reserved = Base();
  reserved["vsock"] = {{{"port", kForwardPort}, {"socketPath", "/tmp/x.sock"}}};
  CHECK(FieldOf(reserved) == "vsock[0].port");
}

TEST_CASE("an unknown or misspelt key is an error naming it, at every level") {
  json j = Base();
  j["memoryMib"] = 512;
  CHECK(FieldOf(j) == "memoryMib");
  j = Base();
  j["shares"] = {{{"hostPath", "/tmp"}, {"guestPath", "/data"}, {"readonly", true}}};
  CHECK(FieldOf(j) == "shares[0].readonly");
  j = Base();
  j["tmpfs"] = {{{"guestPath", "/scratch"}, {"sizeMiB", 16}, {"size", 1}}};
  CHECK(FieldOf(j) == "tmpfs[0].size");
  j = Base();
  j["vsock"] = {{{"port", 5000}, {"socketPath", "/tmp/x.sock"}, {"listen", true}, {"Listen", false}}};
  CHECK(FieldOf(j) == "vsock[0].Listen");
  // Every key the library sends is known: the round trip of a full config parses.
  CHECK(FieldOf(VmConfigToJson(VmConfigFromJson(Base()))) == "");
}

TEST_CASE("a disk image root is a file in a known format, always copy-on-write") {
  json j = Base();
  j["rootDisk"] = {{"path", "/proc/self/exe"}, {"format", "qcow2"}, {"partition", 2}};
  const VmConfig c = VmConfigFromJson(j);
  REQUIRE(c.rootDisk);
  CHECK(c.rootDisk->format == "qcow2");
  CHECK(c.rootDisk->partition == 2);
  CHECK(c.rootReadOnly);
  const VmConfig back = VmConfigFromJson(VmConfigToJson(c));
  REQUIRE(back.rootDisk);
  CHECK(back.rootDisk->path == "/proc/self/exe");
  CHECK_FALSE(VmConfigFromJson(VmConfigToJson(VmConfigFromJson(Base()))).rootDisk);

  j["rootDisk"]["format"] = "vmdk";
  CHECK(FieldOf(j) == "rootDisk.format");
  j["rootDisk"] = {{"path", "/tmp"}, {"format", "raw"}};
  CHECK(FieldOf(j) == "rootDisk.path");  // a folder, not a file
  j["rootDisk"] = {{"path", "/proc/self/exe"}, {"format", "raw"}, {"readonly", true}};
  CHECK(FieldOf(j) == "rootDisk.readonly");
}
