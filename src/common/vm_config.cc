#include "common/vm_config.h"

#include <ctype.h>
#include <sys/stat.h>

#include <set>

#include "common/agent_ports.h"

namespace krunbox {
namespace {

using nlohmann::json;

// Bounded reads of one JSON object, each naming the field on error. Every
// key must be read: RejectUnknown() refuses the rest, so a misspelt option
// (say "readonly" for "readOnly") is an error, never silently dropped.
class Reader {
 public:
  Reader(const json& j, std::string prefix) : j_(j), prefix_(std::move(prefix)) {
    if (!j_.is_object()) throw ConfigError(prefix_.empty() ? "config" : prefix_, "must be an object");
  }

  std::string Field(const char* key) const { return prefix_.empty() ? key : prefix_ + "." + key; }
  bool Has(const char* key) const {
    known_.insert(key);
    return j_.contains(key) && !j_.at(key).is_null();
  }

  void RejectUnknown() const {
    for (const auto& item : j_.items())
      if (!known_.count(item.key())) throw ConfigError(Field(item.key().c_str()), "unknown option");
  }

  std::string String(const char* key, const std::string& dflt) const {
    if (!Has(key)) return dflt;
    const json& v = j_.at(key);
    if (!v.is_string()) throw ConfigError(Field(key), "must be a string");
    return CheckText(Field(key), v.get<std::string>());
  }

  std::string RequiredString(const char* key) const {
    if (!Has(key)) throw ConfigError(Field(key), "is required");
    return String(key, "");
  }

  uint32_t Uint(const char* key, uint32_t min, uint32_t max) const {
    if (!Has(key)) throw ConfigError(Field(key), "is required");
    const json& v = j_.at(key);
    if (!v.is_number_integer() && !v.is_number_unsigned())
      throw ConfigError(Field(key), "must be an integer");
    const long long n = v.get<long long>();
    if (n < min || n > max)
      throw ConfigError(Field(key), "must be between " + std::to_string(min) + " and " + std::to_string(max));
    return static_cast<uint32_t>(n);
  }

  bool Bool(const char* key, bool dflt) const {
    if (!Has(key)) return dflt;
    if (!j_.at(key).is_boolean()) throw ConfigError(Field(key), "must be true or false");
    return j_.at(key).get<bool>();
  }

  std::vector<std::string> Strings(const char* key) const {
    std::vector<std::string> out;
    if (!Has(key)) return out;
    const json& v = j_.at(key);
    if (!v.is_array()) throw ConfigError(Field(key), "must be an array of strings");
    for (size_t i = 0; i < v.size(); i++) {
      const std::string f = Field(key) + "[" + std::to_string(i) + "]";
      if (!v[i].is_string()) throw ConfigError(f, "must be a string");
      out.push_back(CheckText(f, v[i].get<std::string>()));
    }
    return out;
  }

  const json& Object(const char* key) const {
    static const json empty = json::object();
    if (!Has(key)) return empty;
    if (!j_.at(key).is_object()) throw ConfigError(Field(key), "must be an object");
    return j_.at(key);
  }

  const json& Array(const char* key, size_t max) const {
    static const json empty = json::array();
    if (!Has(key)) return empty;
    const json& v = j_.at(key);
    if (!v.is_array()) throw ConfigError(Field(key), "must be an array");
    if (v.size() > max) throw ConfigError(Field(key), "has more than " + std::to_string(max) + " entries");
    return v;
  }

 private:
  // argv, env and paths cross exec() and the kernel as C strings.
  static std::string CheckText(const std::string& field, std::string s) {
    if (s.find('\0') != std::string::npos) throw ConfigError(field, "must not contain NUL characters");
    return s;
  }

  const json& j_;
  std::string prefix_;
  mutable std::set<std::string> known_;
};

bool IsAbsoluteNormal(const std::string& p) {
  if (p.empty() || p[0] != '/') return false;
  size_t i = 0;
  while (i < p.size()) {
    size_t next = p.find('/', i + 1);
    if (next == std::string::npos) next = p.size();
    const std::string part = p.substr(i + 1, next - i - 1);
    if (part == "." || part == "..") return false;
    if (part.empty() && next != p.size()) return false;  // "//"
    i = next;
  }
  return true;
}

void RequireAbsolute(const std::string& field, const std::string& p) {
  if (!IsAbsoluteNormal(p))
    throw ConfigError(field, "must be an absolute path without '.', '..' or '//' components (got \"" + p + "\")");
}

void RequireDir(const std::string& field, const std::string& p) {
  RequireAbsolute(field, p);
  struct stat st;
  if (stat(p.c_str(), &st) != 0) throw ConfigError(field, "folder \"" + p + "\" does not exist");
  if (!S_ISDIR(st.st_mode)) throw ConfigError(field, "\"" + p + "\" is not a folder");
}

// Returns true for a regular file.
bool RequireDirOrFile(const std::string& field, const std::string& p) {
  RequireAbsolute(field, p);
  struct stat st;
  if (stat(p.c_str(), &st) != 0) throw ConfigError(field, "\"" + p + "\" does not exist");
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) throw ConfigError(field, "\"" + p + "\" is neither a folder nor a regular file");
  return S_ISREG(st.st_mode);
}

void RequireFile(const std::string& field, const std::string& p, const std::string& remedy) {
  struct stat st;
  if (p.empty() || stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    throw ConfigError(field, "file \"" + p + "\" not found; " + remedy);
}

Accel ParseAccel(const std::string& field, const std::string& s) {
  if (s == "auto") return Accel::Auto;
  if (s == "kvm") return Accel::Kvm;
  if (s == "tcg") return Accel::Tcg;
  throw ConfigError(field, "must be \"auto\", \"kvm\" or \"tcg\" (got \"" + s + "\")");
}

NetRule ParseNetRule(const json& j, const std::string& field) {
  Reader r(j, field);
  NetRule rule;
  const std::string kind = r.RequiredString("kind");
  rule.text = r.String("text", "");
  rule.port = static_cast<uint16_t>(r.Has("port") ? r.Uint("port", 1, 65535) : 0);
  if (kind == "any") {
    rule.kind = NetRule::Kind::Any;
  } else if (kind == "name" || kind == "suffix") {
    rule.kind = kind == "name" ? NetRule::Kind::Name : NetRule::Kind::Suffix;
    rule.name = r.RequiredString("value");
    const std::string bare = kind == "suffix" && !rule.name.empty() && rule.name[0] == '.' ? rule.name.substr(1) : rule.name;
    if (!IsHostName(bare) || (kind == "suffix" && rule.name[0] != '.'))
      throw ConfigError(r.Field("value"), "must be a host name (\"" + rule.name + "\")");
    for (char& c : rule.name) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  } else if (kind == "cidr") {
    rule.kind = NetRule::Kind::Cidr;
    const std::optional<Cidr> cidr = Cidr::Parse(r.RequiredString("value"));
    if (!cidr) throw ConfigError(r.Field("value"), "must be an IP address or prefix such as 203.0.113.0/24");
    rule.cidr = *cidr;
  } else {
    throw ConfigError(r.Field("kind"), "must be \"any\", \"name\", \"suffix\" or \"cidr\"");
  }
  r.RejectUnknown();
  return rule;
}

NetworkConfig ParseNetwork(const Reader& top) {
  NetworkConfig n;
  Reader r(top.Object("network"), "network");
  n.enabled = r.Bool("enabled", false);
  n.askHost = r.Bool("askHost", false);
  for (const char* list : {"allow", "deny"}) {
    const json& rules = r.Array(list, kMaxNetRules);
    for (size_t i = 0; i < rules.size(); i++)
      (list[0] == 'a' ? n.allow : n.deny).push_back(ParseNetRule(rules[i], r.Field(list) + "[" + std::to_string(i) + "]"));
  }
  const json& hosts = r.Object("hosts");
  if (hosts.size() > kMaxNetRules) throw ConfigError(r.Field("hosts"), "has too many entries");
  for (const auto& [name, addresses] : hosts.items()) {
    const std::string field = r.Field("hosts") + "." + name;
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    if (!IsHostName(lower)) throw ConfigError(field, "must be a host name");
    if (!addresses.is_array() || addresses.empty() || addresses.size() > 16)
      throw ConfigError(field, "must be a list of 1 to 16 IP addresses");
    for (const json& a : addresses) {
      const std::optional<IpAddress> ip = a.is_string() ? IpAddress::Parse(a.get<std::string>()) : std::nullopt;
      if (!ip) throw ConfigError(field, "must list IP addresses such as 127.0.0.1");
      n.hosts[lower].push_back(*ip);
    }
  }
  r.RejectUnknown();
  return n;
}

std::vector<PortForward> ParsePorts(const Reader& top) {
  std::vector<PortForward> out;
  std::set<std::pair<std::string, uint16_t>> used;
  const json& ports = top.Array("ports", kMaxPortForwards);
  for (size_t i = 0; i < ports.size(); i++) {
    Reader p(ports[i], "ports[" + std::to_string(i) + "]");
    PortForward f;
    f.hostIp = p.RequiredString("hostIp");
    if (!IpAddress::Parse(f.hostIp)) throw ConfigError(p.Field("hostIp"), "must be an IP address such as 127.0.0.1");
    f.hostPort = static_cast<uint16_t>(p.Uint("hostPort", 0, 65535));
    f.guestPort = static_cast<uint16_t>(p.Uint("guestPort", 1, 65535));
    if (f.hostPort && !used.insert({f.hostIp, f.hostPort}).second)
      throw ConfigError(p.Field("hostPort"), "host port " + std::to_string(f.hostPort) + " is published twice");
    p.RejectUnknown();
    out.push_back(f);
  }
  return out;
}

}  // namespace

Share ShareFromJson(const json& j, const std::string& field) {
  Reader s(j, field);
  Share sh;
  sh.hostPath = s.RequiredString("hostPath");
  sh.file = RequireDirOrFile(s.Field("hostPath"), sh.hostPath);
  sh.guestPath = s.RequiredString("guestPath");
  RequireAbsolute(s.Field("guestPath"), sh.guestPath);
  if (sh.guestPath == "/") throw ConfigError(s.Field("guestPath"), "cannot be \"/\": the root is rootPath");
  sh.readOnly = s.Bool("readOnly", false);
  s.RejectUnknown();
  return sh;
}

TmpfsMount TmpfsFromJson(const json& j, const std::string& field) {
  Reader t(j, field);
  TmpfsMount m;
  m.guestPath = t.RequiredString("guestPath");
  RequireAbsolute(t.Field("guestPath"), m.guestPath);
  if (m.guestPath == "/") throw ConfigError(t.Field("guestPath"), "cannot be \"/\"");
  m.sizeMiB = t.Uint("sizeMiB", 1, 1024 * 1024);
  t.RejectUnknown();
  return m;
}

const char* AccelName(Accel a) {
  switch (a) {
    case Accel::Kvm: return "kvm";
    case Accel::Tcg: return "tcg";
    default: return "auto";
  }
}

VmConfig VmConfigFromJson(const json& j) {
  Reader r(j, "");
  VmConfig c;
  c.backend = r.RequiredString("backend");
  if (c.backend != "qemu" && c.backend != "libkrun")
    throw ConfigError("backend", "must be \"qemu\" or \"libkrun\" (got \"" + c.backend + "\")");
  c.accel = ParseAccel("accel", r.RequiredString("accel"));
  c.cpus = r.Uint("cpus", 1, kMaxCpus);
  c.memoryMiB = r.Uint("memoryMiB", kMinMemoryMiB, 1024 * 1024);
  c.bootTimeoutMs = r.Uint("bootTimeoutMs", 1000, 3600 * 1000);

  c.rootPath = r.RequiredString("rootPath");
  RequireDir("rootPath", c.rootPath);
  c.rootReadOnly = r.Bool("rootReadOnly", false);
  if (r.Has("rootDisk")) {
    Reader d(r.Object("rootDisk"), "rootDisk");
    RootDisk disk;
    disk.path = d.RequiredString("path");
    RequireAbsolute(d.Field("path"), disk.path);
    RequireFile(d.Field("path"), disk.path, "give the path of a raw or qcow2 disk image");
    disk.format = d.RequiredString("format");
    if (disk.format != "raw" && disk.format != "qcow2")
      throw ConfigError(d.Field("format"), "must be \"raw\" or \"qcow2\" (got \"" + disk.format + "\")");
    disk.partition = d.Has("partition") ? d.Uint("partition", 0, 128) : 0;
    d.RejectUnknown();
    c.rootDisk = disk;
    c.rootReadOnly = true;  // the image is never written; the guest gets an overlay
  }

  std::set<std::string> guestPaths;
  const json& shares = r.Array("shares", kMaxShares);
  for (size_t i = 0; i < shares.size(); i++) {
    const std::string field = "shares[" + std::to_string(i) + "]";
    c.shares.push_back(ShareFromJson(shares[i], field));
    if (!guestPaths.insert(c.shares.back().guestPath).second)
      throw ConfigError(field + ".guestPath", "\"" + c.shares.back().guestPath + "\" is used by two shares");
  }

  const json& tmpfs = r.Array("tmpfs", kMaxShares);
  for (size_t i = 0; i < tmpfs.size(); i++) {
    const std::string field = "tmpfs[" + std::to_string(i) + "]";
    c.tmpfs.push_back(TmpfsFromJson(tmpfs[i], field));
    if (!guestPaths.insert(c.tmpfs.back().guestPath).second)
      throw ConfigError(field + ".guestPath", "\"" + c.tmpfs.back().guestPath + "\" is used by two mounts");
  }

  std::set<uint32_t> ports;
  const json& vsock = r.Array("vsock", kMaxVsockPorts);
  for (size_t i = 0; i < vsock.size(); i++) {
    Reader v(vsock[i], "vsock[" + std::to_string(i) + "]");
    VsockPort p;
    p.port = v.Uint("port", 1, 0xfffffffeu);
    if (p.port >= kControlPort && p.port <= kForwardPort)
      throw ConfigError(v.Field("port"), "ports " + std::to_string(kControlPort) + " to " +
                                             std::to_string(kForwardPort) + " are reserved for the krunbox agent");
    if (!ports.insert(p.port).second) throw ConfigError(v.Field("port"), "port " + std::to_string(p.port) + " is mapped twice");
    p.socketPath = v.RequiredString("socketPath");
    RequireAbsolute(v.Field("socketPath"), p.socketPath);
    if (p.socketPath.size() >= 100)
      throw ConfigError(v.Field("socketPath"), "is too long for a Unix socket (keep it under 100 bytes)");
    p.listen = v.Bool("listen", false);
    v.RejectUnknown();
    c.vsock.push_back(p);
  }

  c.command = r.Strings("command");
  if (!c.command.empty() && c.command[0].empty())
    throw ConfigError("command", "must name the program to run, e.g. [\"/bin/sh\", \"-c\", \"echo hi\"]");
  c.agentSocketPath = r.String("agentSocketPath", "");
  if (!c.agentSocketPath.empty()) RequireAbsolute("agentSocketPath", c.agentSocketPath);
  c.agentFsSocketPath = r.String("agentFsSocketPath", "");
  if (!c.agentFsSocketPath.empty()) RequireAbsolute("agentFsSocketPath", c.agentFsSocketPath);
  c.forwardSocketPath = r.String("forwardSocketPath", "");
  if (!c.forwardSocketPath.empty()) RequireAbsolute("forwardSocketPath", c.forwardSocketPath);
  c.network = ParseNetwork(r);
  c.ports = ParsePorts(r);
  if (!c.ports.empty() && c.forwardSocketPath.empty())
    throw ConfigError("ports", "published ports need forwardSocketPath (the agent's port forwarder)");
  c.env = r.Strings("env");
  for (size_t i = 0; i < c.env.size(); i++) {
    const size_t eq = c.env[i].find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError("env[" + std::to_string(i) + "]", "must look like KEY=VALUE");
  }
  c.workdir = r.RequiredString("workdir");
  RequireAbsolute("workdir", c.workdir);
  c.consolePath = r.String("consolePath", "");
  if (!c.consolePath.empty()) RequireAbsolute("consolePath", c.consolePath);
  c.consoleLimitBytes = r.Uint("consoleLimitBytes", 4096, 1u << 30);

  c.kernelPath = r.String("kernelPath", "");
  c.initrdPath = r.String("initrdPath", "");
  c.qemuPath = r.String("qemuPath", "");
  c.virtiofsdPath = r.String("virtiofsdPath", "");
  c.vsockDaemonPath = r.String("vsockDaemonPath", "");
  c.libkrunPath = r.String("libkrunPath", "");
  c.accelCachePath = r.String("accelCachePath", "");
  if (c.backend == "qemu") {
    // The kernel, initramfs and both daemons ship in the runtime folder.
    const std::string runtime = "reinstall krunbox, or run `npm run setup` in a source checkout";
    RequireFile("kernelPath", c.kernelPath, runtime);
    RequireFile("initrdPath", c.initrdPath, runtime);
    RequireFile("qemuPath", c.qemuPath, "install QEMU: apt-get install qemu-system-x86");
    RequireFile("virtiofsdPath", c.virtiofsdPath, runtime);
    RequireFile("vsockDaemonPath", c.vsockDaemonPath, runtime);
  }
  r.RejectUnknown();
  return c;
}

json VmConfigToJson(const VmConfig& c) {
  json shares = json::array();
  for (const Share& s : c.shares)
    shares.push_back({{"hostPath", s.hostPath}, {"guestPath", s.guestPath}, {"readOnly", s.readOnly}});
  json tmpfs = json::array();
  for (const TmpfsMount& t : c.tmpfs) tmpfs.push_back({{"guestPath", t.guestPath}, {"sizeMiB", t.sizeMiB}});
  json vsock = json::array();
  for (const VsockPort& p : c.vsock)
    vsock.push_back({{"port", p.port}, {"socketPath", p.socketPath}, {"listen", p.listen}});
  json rules[2] = {json::array(), json::array()};
  for (int list = 0; list < 2; list++) {
    for (const NetRule& rule : list == 0 ? c.network.allow : c.network.deny) {
      static const char* const kinds[] = {"any", "name", "suffix", "cidr"};
      json j = {{"kind", kinds[static_cast<int>(rule.kind)]}, {"text", rule.text}};
      if (rule.kind == NetRule::Kind::Name || rule.kind == NetRule::Kind::Suffix) j["value"] = rule.name;
      if (rule.kind == NetRule::Kind::Cidr) j["value"] = rule.cidr.ToString();
      if (rule.port) j["port"] = rule.port;
      rules[list].push_back(j);
    }
  }
  json hosts = json::object();
  for (const auto& [name, addresses] : c.network.hosts)
    for (const IpAddress& a : addresses) hosts[name].push_back(a.ToString());
  json ports = json::array();
  for (const PortForward& p : c.ports)
    ports.push_back({{"hostIp", p.hostIp}, {"hostPort", p.hostPort}, {"guestPort", p.guestPort}});
  return {
      {"network", {{"enabled", c.network.enabled}, {"allow", rules[0]}, {"deny", rules[1]}, {"hosts", hosts},
                   {"askHost", c.network.askHost}}},
      {"ports", ports},
      {"forwardSocketPath", c.forwardSocketPath},
      {"backend", c.backend},       {"accel", AccelName(c.accel)},
      {"cpus", c.cpus},             {"memoryMiB", c.memoryMiB},
      {"bootTimeoutMs", c.bootTimeoutMs},
      {"rootPath", c.rootPath},     {"rootReadOnly", c.rootReadOnly},
      {"rootDisk", c.rootDisk ? json{{"path", c.rootDisk->path}, {"format", c.rootDisk->format},
                                     {"partition", c.rootDisk->partition}}
                              : json(nullptr)},
      {"shares", shares},           {"tmpfs", tmpfs},
      {"vsock", vsock},
      {"command", c.command},       {"env", c.env},
      {"agentSocketPath", c.agentSocketPath},
      {"agentFsSocketPath", c.agentFsSocketPath},
      {"workdir", c.workdir},       {"consolePath", c.consolePath},
      {"consoleLimitBytes", c.consoleLimitBytes},
      {"kernelPath", c.kernelPath}, {"initrdPath", c.initrdPath},
      {"qemuPath", c.qemuPath},     {"virtiofsdPath", c.virtiofsdPath},
      {"vsockDaemonPath", c.vsockDaemonPath},
      {"libkrunPath", c.libkrunPath},
      {"accelCachePath", c.accelCachePath},
  };
}

}  // namespace krunbox
