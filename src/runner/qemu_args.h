// The QEMU command line of one VM (-M microvm, one vhost-user-fs and one
// vhost-user-vsock device), built from its config without touching the host.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/vm_config.h"

namespace krunbox {

// The runner's sockets and FIFOs QEMU connects to.
struct QemuEndpoints {
  std::string consoleFifo;  // base path of the console's .in/.out FIFOs
  std::string fsSocket;     // virtiofsd's vhost-user socket (the tree)
  std::string rootFsSocket; // the root's own virtiofsd (RootSource::Share); empty: none
  std::string vsockSocket;  // vhost-device-vsock's vhost-user socket
  bool network = false;     // a virtio-net device on kQemuNetFd
};

// QEMU's descriptor for the guest link of -netdev stream (SpawnHelper's passFd).
constexpr int kQemuNetFd = 3;

// `tscKhz`: the host's TSC rate, passed to TCG guests so that they never
// calibrate it against the emulated PIT (which can hang the boot).
std::vector<std::string> QemuArgs(const VmConfig& c, Accel accel, const QemuEndpoints& endpoints,
                                  std::optional<long> tscKhz);

// How a share server lets the guest cache what it exports.
enum class ShareCaching {
  Coherent,   // folders the host may change: the guest rechecks (cache=auto)
  Immutable,  // a read-only root that never changes while VMs run: cached
              // without limit, and refused writes by the server too
};

// The share server's command line: the Rust virtiofsd (>= 1.10) exporting
// `dir` on `socket`, without the capabilities to make device nodes or
// file capabilities, or to keep a setuid/setgid bit through a write
// (ShareServerFilter refuses device nodes and setting those bits too).
std::vector<std::string> VirtiofsdArgs(const VmConfig& c, const std::string& dir, const std::string& socket,
                                       ShareCaching caching);

// The "cpu MHz" of the first CPU in /proc/cpuinfo's text, in kHz.
std::optional<long> ParseTscKhz(const std::string& cpuinfo);

// QEMU option lists split on ','; a literal comma in a value is written ",,".
std::string QemuOptValue(const std::string& value);

}  // namespace krunbox
