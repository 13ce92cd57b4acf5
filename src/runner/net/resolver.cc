#include "runner/net/resolver.h"

#include <netdb.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

namespace krunbox::net {
namespace {
// A few lookups at once; the rest wait in the queue.
constexpr int kMaxWorkers = 4;
constexpr size_t kMaxAddresses = 16;
}  // namespace

// Owned jointly by the Resolver and its workers: a worker blocked in
// getaddrinfo may outlive the Resolver, and only drops its result then.
struct Resolver::Shared {
  std::mutex mu;
  std::deque<std::string> queue;
  std::set<std::string> inFlight;
  std::vector<Result> results;
  int workers = 0;
  bool closed = false;
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ~Shared() { close(efd); }
};

Resolver::Resolver() : shared_(std::make_shared<Shared>()) {}

Resolver::~Resolver() {
  std::lock_guard<std::mutex> lock(shared_->mu);
  shared_->closed = true;
  shared_->queue.clear();
}

int Resolver::fd() const { return shared_->efd; }

static std::vector<IpAddress> Resolve(const std::string& name) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  std::vector<IpAddress> out;
  if (getaddrinfo(name.c_str(), nullptr, &hints, &list) != 0) return out;
  for (addrinfo* a = list; a && out.size() < kMaxAddresses; a = a->ai_next) {
    std::optional<IpAddress> ip = IpAddress::FromSockaddr(a->ai_addr);
    if (ip && std::find(out.begin(), out.end(), *ip) == out.end()) out.push_back(*ip);
  }
  freeaddrinfo(list);
  return out;
}

void Resolver::Lookup(const std::string& name) {
  std::lock_guard<std::mutex> lock(shared_->mu);
  if (!shared_->inFlight.insert(name).second) return;
  shared_->queue.push_back(name);
  if (shared_->workers >= kMaxWorkers) return;
  shared_->workers++;
  std::thread([s = shared_] {
    std::unique_lock<std::mutex> lock(s->mu);
    while (!s->closed && !s->queue.empty()) {
      const std::string name = s->queue.front();
      s->queue.pop_front();
      lock.unlock();
      std::vector<IpAddress> addresses = Resolve(name);
      lock.lock();
      s->inFlight.erase(name);
      s->results.push_back({name, std::move(addresses)});
      const uint64_t one = 1;
      (void)!write(s->efd, &one, sizeof one);
    }
    s->workers--;
  }).detach();
}

std::vector<Resolver::Result> Resolver::TakeResults() {
  uint64_t n;
  (void)!read(shared_->efd, &n, sizeof n);
  std::vector<Result> out;
  std::lock_guard<std::mutex> lock(shared_->mu);
  out.swap(shared_->results);
  return out;
}

}  // namespace krunbox::net
