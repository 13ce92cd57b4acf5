// Volumes attached to a running VM, at the addon's request ("attach <id>
// <json>", addon_control.h): the host side mounts a share into the VM's
// tree (AttachedShares), the agent mounts it, or a tmpfs, in the guest
// ("mount <id> <json>", control.h), and an "attached" event answers.
// Both backends serve them the same way.
#pragma once

#include <map>
#include <string>

#include "common/guest_config.h"
#include "runner/addon_control.h"
#include "runner/backend.h"
#include "runner/control.h"
#include "runner/staging.h"

namespace krunbox {

class Attachments {
 public:
  Attachments(const std::string& treeDir, const Events& events) : shares_(treeDir), events_(events) {}
  // Starts one attachment; `ready`: the agent serves requests.
  void Request(const AddonCommand& cmd, ControlChannel& agent, bool ready);
  // Answers the addon for what the agent has replied (report.mounts).
  void TakeReplies(GuestReport& report);

 private:
  void Answer(uint64_t id, const std::string& error) const;

  AttachedShares shares_;
  const Events& events_;
  std::map<uint64_t, GuestMount> pending_;
};

}  // namespace krunbox
