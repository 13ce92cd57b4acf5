#include "runner/qemu_args.h"

#include <stdlib.h>

#include <sstream>

#include "common/guest_config.h"
#include "runner/net/guest_network.h"

namespace krunbox {

std::string QemuOptValue(const std::string& value) {
  std::string out;
  for (char ch : value) out += ch == ',' ? std::string(",,") : std::string(1, ch);
  return out;
}

std::optional<long> ParseTscKhz(const std::string& cpuinfo) {
  std::istringstream in(cpuinfo);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("cpu MHz", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    const double mhz = atof(line.c_str() + colon + 1);
    if (mhz > 100) return static_cast<long>(mhz * 1000);
    break;
  }
  return std::nullopt;
}

std::vector<std::string> QemuArgs(const VmConfig& c, Accel accel, const QemuEndpoints& endpoints,
                                  std::optional<long> tscKhz) {
  const std::string mem = std::to_string(c.memoryMiB);
  std::string append = "console=ttyS0 quiet panic=-1 reboot=t rdinit=/init";
  if (accel == Accel::Tcg && tscKhz) append += " tsc_early_khz=" + std::to_string(*tscKhz) + " tsc=reliable";
  std::vector<std::string> a = {
      c.qemuPath, "-name", "krunbox",
      "-M", std::string("microvm,memory-backend=mem,accel=") + AccelName(accel),
      "-smp", std::to_string(c.cpus), "-m", mem + "M",
      "-object", "memory-backend-memfd,id=mem,size=" + mem + "M,share=on",
      "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
      "-kernel", c.kernelPath, "-initrd", c.initrdPath, "-append", append,
      "-chardev", "pipe,id=console,path=" + QemuOptValue(endpoints.consoleFifo), "-serial", "chardev:console",
      // libvhost-user rejects legacy virtio-mmio devices.
      "-global", "virtio-mmio.force-legacy=false",
      "-chardev", "socket,id=fs,path=" + QemuOptValue(endpoints.fsSocket),
      "-device", "vhost-user-fs-device,chardev=fs,tag=krunbox",
      "-chardev", "socket,id=vsock,path=" + QemuOptValue(endpoints.vsockSocket),
      "-device", "vhost-user-vsock-device,chardev=vsock",
  };
  if (!endpoints.rootFsSocket.empty())
    a.insert(a.end(), {"-chardev", "socket,id=rootfs,path=" + QemuOptValue(endpoints.rootFsSocket), "-device",
                       std::string("vhost-user-fs-device,chardev=rootfs,tag=") + kRootShareTag});
  if (c.rootDisk)
    // Read-only for QEMU itself (a shared lock: many VMs may use one image);
    // the guest writes to an overlay. The format is never probed.
    a.insert(a.end(), {"-drive",
                       "if=none,id=root,readonly=on,format=" + c.rootDisk->format + ",file=" + QemuOptValue(c.rootDisk->path),
                       "-device", "virtio-blk-device,drive=root"});
  if (endpoints.network)
    a.insert(a.end(), {"-netdev", "stream,id=net,addr.type=fd,addr.str=" + std::to_string(kQemuNetFd), "-device",
                       std::string("virtio-net-device,netdev=net,mac=") + net::GuestMacText()});
  if (accel == Accel::Kvm) a.insert(a.end(), {"-cpu", "host"});
  return a;
}

std::vector<std::string> VirtiofsdArgs(const VmConfig& c, const std::string& dir, const std::string& socket,
                                       ShareCaching caching) {
  std::vector<std::string> a = {c.virtiofsdPath, "--socket-path=" + socket, "--shared-dir=" + dir,
                                "--announce-submounts", "--sandbox=namespace", "--modcaps=-mknod:-setfcap:-fsetid",
                                "--log-level=warn"};
  if (caching == ShareCaching::Immutable) a.insert(a.end(), {"--cache=always", "--readonly"});
  else a.push_back("--cache=auto");
  return a;
}

}  // namespace krunbox
