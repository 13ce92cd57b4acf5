#include "agent/network.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/setup.h"

namespace agent {
namespace {

struct Socket {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ~Socket() {
    if (fd >= 0) close(fd);
  }
};

ifreq Request(const char* name) {
  ifreq r{};
  strncpy(r.ifr_name, name, IFNAMSIZ - 1);
  return r;
}

void SetIpv4(int s, const char* ifname, unsigned long op, const std::string& dotted, const char* what) {
  ifreq r = Request(ifname);
  auto* in = reinterpret_cast<sockaddr_in*>(&r.ifr_addr);
  in->sin_family = AF_INET;
  if (inet_pton(AF_INET, dotted.c_str(), &in->sin_addr) != 1) throw SetupError(std::string("bad ") + what + " " + dotted);
  if (ioctl(s, op, &r) != 0) Fail(std::string("set ") + what + " of " + ifname);
}

void Up(int s, const char* ifname) {
  ifreq r = Request(ifname);
  if (ioctl(s, SIOCGIFFLAGS, &r) != 0) Fail(std::string("flags of ") + ifname);
  r.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &r) != 0) Fail(std::string("bring ") + ifname + " up");
}

std::string Netmask(uint32_t prefixLen) {
  const uint32_t mask = prefixLen == 0 ? 0 : ~0u << (32 - prefixLen);
  in_addr a{htonl(mask)};
  char buf[INET_ADDRSTRLEN];
  return inet_ntop(AF_INET, &a, buf, sizeof buf);
}

void WriteFile(const std::string& path, const std::string& text) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) Fail("create " + path);
  const bool ok = WriteAll(fd, text);
  close(fd);
  if (!ok) Fail("write " + path);
}

}  // namespace

void BringUpLoopback() {
  Socket s;
  if (s.fd < 0) Fail("socket");
  Up(s.fd, "lo");
}

void ConfigureEthernet(const krunbox::GuestNetwork& net) {
  Socket s;
  if (s.fd < 0) Fail("socket");
  // The driver registers eth0 as it probes the device; give it a moment.
  ifreq probe = Request("eth0");
  for (int i = 0; ioctl(s.fd, SIOCGIFINDEX, &probe) != 0; i++) {
    if (i == 200) Fail("find the network device eth0");
    usleep(10000);
  }
  const int v6 = open("/proc/sys/net/ipv6/conf/eth0/disable_ipv6", O_WRONLY | O_CLOEXEC);
  if (v6 >= 0) {
    WriteAll(v6, "1\n");
    close(v6);
  }
  ifreq mtu = Request("eth0");
  mtu.ifr_mtu = static_cast<int>(net.mtu);
  if (ioctl(s.fd, SIOCSIFMTU, &mtu) != 0) Fail("set the MTU of eth0");
  SetIpv4(s.fd, "eth0", SIOCSIFADDR, net.address, "address");
  SetIpv4(s.fd, "eth0", SIOCSIFNETMASK, Netmask(net.prefixLen), "netmask");
  Up(s.fd, "eth0");
  rtentry route{};
  auto* dst = reinterpret_cast<sockaddr_in*>(&route.rt_dst);
  auto* gw = reinterpret_cast<sockaddr_in*>(&route.rt_gateway);
  auto* mask = reinterpret_cast<sockaddr_in*>(&route.rt_genmask);
  dst->sin_family = gw->sin_family = mask->sin_family = AF_INET;
  inet_pton(AF_INET, net.gateway.c_str(), &gw->sin_addr);
  route.rt_flags = RTF_UP | RTF_GATEWAY;
  char dev[] = "eth0";
  route.rt_dev = dev;
  if (ioctl(s.fd, SIOCADDRT, &route) != 0 && errno != EEXIST) Fail("add the default route");
}

void ProvideResolvConf(const krunbox::GuestNetwork& net, const std::string& root, bool copyOnWrite) {
  const std::string text = "# krunbox: the gateway answers for the names the network policy allows\nnameserver " +
                           net.gateway + "\noptions attempts:2 timeout:2\n";
  const std::string target = root + "/etc/resolv.conf";
  if (copyOnWrite) {
    // Whatever the image has there (often a symlink) is replaced in the upper layer.
    MkdirP(root + "/etc");
    unlink(target.c_str());
    WriteFile(target, text);
    return;
  }
  struct stat st;
  if (lstat(target.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    Log("the root folder has no regular /etc/resolv.conf to cover; names will not resolve in the guest");
    return;
  }
  const std::string own = std::string(kWorkDir) + "/resolv.conf";
  WriteFile(own, text);
  Mount(own.c_str(), target, nullptr, MS_BIND, nullptr);
}

}  // namespace agent
