#include "runner/attach.h"

#include <nlohmann/json.hpp>

namespace krunbox {

void Attachments::Answer(uint64_t id, const std::string& error) const {
  nlohmann::json ev = {{"event", "attached"}, {"id", id}};
  if (!error.empty()) ev["error"] = error;
  events_.Send(ev);
}

void Attachments::Request(const AddonCommand& cmd, ControlChannel& agent, bool ready) {
  if (!ready) return Answer(cmd.id, "the VM's guest agent is not running");
  if (pending_.count(cmd.id)) return Answer(cmd.id, "attachment " + std::to_string(cmd.id) + " is already under way");
  GuestMount m;
  try {
    const nlohmann::json j = nlohmann::json::parse(cmd.spec);
    if (j.is_object() && j.contains("tmpfs")) {
      const TmpfsMount t = TmpfsFromJson(j.at("tmpfs"), "tmpfs");
      m.kind = GuestMount::Kind::Tmpfs;
      m.target = t.guestPath;
      m.sizeMiB = t.sizeMiB;
    } else {
      m = shares_.Add(ShareFromJson(j, "share"));
    }
  } catch (const std::exception& e) {  // ConfigError, RunnerError, JSON
    return Answer(cmd.id, e.what());
  }
  if (!agent.Send("mount " + std::to_string(cmd.id) + " " + GuestMountToJson(m))) {
    if (m.kind == GuestMount::Kind::Share) shares_.Remove(m);
    return Answer(cmd.id, "the VM's guest agent is not connected");
  }
  pending_[cmd.id] = m;
}

void Attachments::TakeReplies(GuestReport& report) {
  for (const MountReply& reply : report.mounts) {
    const auto it = pending_.find(reply.id);
    if (it == pending_.end()) continue;  // the guest answered what nobody asked
    if (!reply.error.empty() && it->second.kind == GuestMount::Kind::Share) shares_.Remove(it->second);
    Answer(reply.id, reply.error.empty() ? "" : "the guest could not mount it: " + reply.error);
    pending_.erase(it);
  }
  report.mounts.clear();
}

}  // namespace krunbox
