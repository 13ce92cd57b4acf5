#include "runner/net/service.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runner/util.h"

namespace krunbox::net {

NetService::NetService(const VmConfig& config, const Events& events)
    : wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!wake_.valid()) ThrowErrno("INTERNAL", "eventfd");
  if (config.network.enabled)
    stack_ = std::make_unique<NetStack>(config.network, [&events](const nlohmann::json& e) { events.Send(e); });
  if (!config.ports.empty()) {
    ports_ = std::make_unique<PublishedPorts>(config.ports, config.forwardSocketPath);
    events.Send({{"event", "ports"}, {"ports", ports_->Describe()}});
  }
}

NetService::~NetService() {
  if (!thread_.joinable()) return;
  Post([this] { stopping_ = true; });
  thread_.join();
}

void NetService::Start() {
  if (stack_ || ports_) thread_ = std::thread([this] { Loop(); });
}

void NetService::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    posted_.push_back(std::move(fn));
  }
  const uint64_t one = 1;
  (void)!write(wake_.get(), &one, sizeof one);
}

Fd NetService::NewGuestLink() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) ThrowErrno("SETUP_FAILED", "socketpair");
  auto ours = std::make_shared<Fd>(sv[1]);
  Post([this, ours] { stack_->AttachGuest(std::move(*ours)); });
  return Fd(sv[0]);
}

void NetService::Verdict(uint64_t id, bool allowed) {
  if (stack_) Post([this, id, allowed] { stack_->Verdict(id, allowed); });
}

void NetService::Loop() {
  for (;;) {
    std::vector<std::function<void()>> work;
    {
      std::lock_guard<std::mutex> lock(mu_);
      work.swap(posted_);
    }
    for (auto& fn : work) fn();
    if (stopping_) return;
    PollSet ps;
    ps.Add(wake_.get(), POLLIN, [this](short) {
      uint64_t n;
      (void)!read(wake_.get(), &n, sizeof n);
    });
    if (stack_) stack_->AddPollFds(ps);
    if (ports_) ports_->AddPollFds(ps);
    ps.Run(stack_ ? stack_->Deadline() : -1);
    if (stack_) stack_->AfterRound(NowMs());
    if (ports_) ports_->AfterRound();
  }
}

}  // namespace krunbox::net
