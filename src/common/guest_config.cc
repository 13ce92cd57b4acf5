#include "common/guest_config.h"

#include <stdexcept>

#include <nlohmann/json.hpp>

namespace krunbox {

using nlohmann::json;

namespace {

const char* const kRootSources[] = {"tree", "share", "disk"};

json MountJson(const GuestMount& m) {
  if (m.kind == GuestMount::Kind::Tmpfs) return {{"type", "tmpfs"}, {"target", m.target}, {"sizeMiB", m.sizeMiB}};
  return {{"type", "share"}, {"source", m.source}, {"target", m.target}, {"readOnly", m.readOnly}, {"file", m.file}};
}

GuestMount MountFromJson(const json& m) {
  GuestMount mount;
  const std::string type = m.at("type").get<std::string>();
  mount.target = m.at("target").get<std::string>();
  if (type == "tmpfs") {
    mount.kind = GuestMount::Kind::Tmpfs;
    mount.sizeMiB = m.at("sizeMiB").get<uint32_t>();
  } else if (type == "share") {
    mount.source = m.at("source").get<std::string>();
    mount.readOnly = m.at("readOnly").get<bool>();
    mount.file = m.at("file").get<bool>();
  } else {
    throw std::runtime_error("unknown mount type \"" + type + "\"");
  }
  return mount;
}

}  // namespace

std::string GuestMountToJson(const GuestMount& m) { return MountJson(m).dump(); }

GuestMount GuestMountFromJson(const std::string& text) {
  try {
    return MountFromJson(json::parse(text));
  } catch (const json::exception& e) {
    throw std::runtime_error(std::string("malformed mount: ") + e.what());
  }
}

std::string GuestConfigToJson(const GuestConfig& c) {
  json mounts = json::array();
  for (const GuestMount& m : c.mounts) mounts.push_back(MountJson(m));
  json network = nullptr;
  if (c.network)
    network = {{"address", c.network->address},
               {"prefixLen", c.network->prefixLen},
               {"gateway", c.network->gateway},
               {"mtu", c.network->mtu}};
  return json{{"command", c.command},
              {"env", c.env},
              {"workdir", c.workdir},
              {"rootReadOnly", c.rootReadOnly},
              {"rootSource", kRootSources[static_cast<int>(c.rootSource)]},
              {"rootPartition", c.rootPartition},
              {"mounts", mounts},
              {"network", network}}
      .dump();
}

GuestConfig GuestConfigFromJson(const std::string& text) {
  try {
    const json j = json::parse(text);
    GuestConfig c;
    c.command = j.at("command").get<std::vector<std::string>>();
    c.env = j.at("env").get<std::vector<std::string>>();
    c.workdir = j.at("workdir").get<std::string>();
    c.rootReadOnly = j.at("rootReadOnly").get<bool>();
    const std::string source = j.at("rootSource").get<std::string>();
    int index = 0;
    while (index < 3 && source != kRootSources[index]) index++;
    if (index == 3) throw std::runtime_error("unknown root source \"" + source + "\"");
    c.rootSource = static_cast<RootSource>(index);
    c.rootPartition = j.at("rootPartition").get<uint32_t>();
    for (const json& m : j.at("mounts")) c.mounts.push_back(MountFromJson(m));
    if (j.contains("network") && !j.at("network").is_null()) {
      const json& n = j.at("network");
      c.network = GuestNetwork{n.at("address").get<std::string>(), n.at("prefixLen").get<uint32_t>(),
                               n.at("gateway").get<std::string>(), n.at("mtu").get<uint32_t>()};
    }
    return c;
  } catch (const json::exception& e) {
    throw std::runtime_error(std::string("malformed guest config: ") + e.what());
  }
}

}  // namespace krunbox
