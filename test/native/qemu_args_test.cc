#include <doctest/doctest.h>

#include <algorithm>

#include "runner/qemu_args.h"

using namespace krunbox;

namespace {

VmConfig Config() {
  VmConfig c;
  c.backend = "qemu";
  c.cpus = 2;
  c.memoryMiB = 384;
  c.qemuPath = "/usr/bin/qemu-system-x86_64";
  c.kernelPath = "/rt/vmlinuz";
  c.initrdPath = "/rt/initramfs.cpio";
  return c;
}

const QemuEndpoints kEndpoints{"/run/vm-1/console", "/run/vm-1/fs.sock", "", "/run/vm-1/vsock.vhost"};

// The value following `flag` (the first occurrence at or after `from`).
std::string After(const std::vector<std::string>& a, const std::string& flag, size_t from = 0) {
  auto it = std::find(a.begin() + static_cast<long>(from), a.end(), flag);
  return it == a.end() || it + 1 == a.end() ? "" : *(it + 1);
}

bool Has(const std::vector<std::string>& a, const std::string& s) { return std::find(a.begin(), a.end(), s) != a.end(); }

}  // namespace

TEST_CASE("QEMU gets a microvm with shared memory, the kernel and both vhost-user devices") {
  const auto a = QemuArgs(Config(), Accel::Tcg, kEndpoints, 2400000);
  CHECK(a[0] == "/usr/bin/qemu-system-x86_64");
  CHECK(After(a, "-M") == "microvm,memory-backend=mem,accel=tcg");
  CHECK(After(a, "-smp") == "2");
  CHECK(After(a, "-m") == "384M");
  CHECK(After(a, "-object") == "memory-backend-memfd,id=mem,size=384M,share=on");
  CHECK(After(a, "-kernel") == "/rt/vmlinuz");
  CHECK(After(a, "-initrd") == "/rt/initramfs.cpio");
  CHECK(Has(a, "-no-reboot"));
  CHECK(Has(a, "socket,id=fs,path=/run/vm-1/fs.sock"));
  CHECK(Has(a, "vhost-user-fs-device,chardev=fs,tag=krunbox"));
  CHECK(Has(a, "socket,id=vsock,path=/run/vm-1/vsock.vhost"));
  CHECK(Has(a, "pipe,id=console,path=/run/vm-1/console"));
  CHECK_FALSE(Has(a, "-cpu"));
}

TEST_CASE("TCG guests get the host's TSC rate; KVM guests get the host CPU") {
  const auto tcg = QemuArgs(Config(), Accel::Tcg, kEndpoints, 2400000);
  CHECK(After(tcg, "-append").find("tsc_early_khz=2400000 tsc=reliable") != std::string::npos);
  const auto unknown = QemuArgs(Config(), Accel::Tcg, kEndpoints, std::nullopt);
  CHECK(After(unknown, "-append").find("tsc_early_khz") == std::string::npos);
  const auto kvm = QemuArgs(Config(), Accel::Kvm, kEndpoints, 2400000);
  CHECK(After(kvm, "-append").find("tsc_early_khz") == std::string::npos);
  CHECK(After(kvm, "-cpu") == "host");
  CHECK(After(kvm, "-M") == "microvm,memory-backend=mem,accel=kvm");
}

TEST_CASE("commas in paths are escaped for QEMU's option syntax") {
  CHECK(QemuOptValue("/a,b/c,,d") == "/a,,b/c,,,,d");
  const QemuEndpoints odd{"/r,1/console", "/r,1/fs.sock", "", "/r,1/v.vhost"};
  const auto a = QemuArgs(Config(), Accel::Tcg, odd, std::nullopt);
  CHECK(Has(a, "socket,id=fs,path=/r,,1/fs.sock"));
}

TEST_CASE("the TSC rate comes from the first cpu MHz line") {
  CHECK(ParseTscKhz("processor\t: 0\ncpu MHz\t\t: 2399.998\ncpu MHz\t\t: 1000\n") == 2399998);
  CHECK_FALSE(ParseTscKhz("processor\t: 0\n").has_value());
  CHECK_FALSE(ParseTscKhz("cpu MHz\t\t: 0.5\n").has_value());
}

TEST_CASE("a VM with a network gets one virtio-net device on the runner's stream socket") {
  QemuEndpoints withNet = kEndpoints;
  withNet.network = true;
  const auto a = QemuArgs(Config(), Accel::Tcg, withNet, std::nullopt);
  CHECK(After(a, "-netdev") == "stream,id=net,addr.type=fd,addr.str=3");
  CHECK(After(a, "-device", static_cast<size_t>(std::find(a.begin(), a.end(), "-netdev") - a.begin())) ==
        "virtio-net-device,netdev=net,mac=52:54:00:6b:62:02");
  CHECK_FALSE(Has(QemuArgs(Config(), Accel::Tcg, kEndpoints, std::nullopt), "-netdev"));
}

TEST_CASE("virtiofsd is the Rust one, without the capabilities for device nodes, file capabilities and keeping setuid bits") {
  VmConfig c = Config();
  c.virtiofsdPath = "/rt/virtiofsd";
  for (ShareCaching caching : {ShareCaching::Coherent, ShareCaching::Immutable}) {
    const auto a = VirtiofsdArgs(c, "/run/vm-1/fs", "/run/vm-1/fs.sock", caching);
    CHECK(a[0] == "/rt/virtiofsd");
    CHECK(Has(a, "--shared-dir=/run/vm-1/fs"));
    CHECK(Has(a, "--socket-path=/run/vm-1/fs.sock"));
    CHECK(Has(a, "--sandbox=namespace"));
    CHECK(Has(a, "--modcaps=-mknod:-setfcap:-fsetid"));
    CHECK_FALSE(Has(a, "--xattr"));  // no xattrs: no way to set security.capability
  }
}

TEST_CASE("folders the host may change are shared coherently; an immutable root is cached and refused writes") {
  const auto tree = VirtiofsdArgs(Config(), "/run/vm-1/fs", "/run/vm-1/fs.sock", ShareCaching::Coherent);
  CHECK(Has(tree, "--cache=auto"));
  CHECK_FALSE(Has(tree, "--readonly"));
  const auto root = VirtiofsdArgs(Config(), "/run/vm-1/root", "/run/vm-1/rootfs.sock", ShareCaching::Immutable);
  CHECK(Has(root, "--cache=always"));
  CHECK(Has(root, "--readonly"));
}

TEST_CASE("a root with its own share server gets a second virtio-fs device") {
  QemuEndpoints e = kEndpoints;
  e.rootFsSocket = "/run/vm-1/rootfs.sock";
  const auto a = QemuArgs(Config(), Accel::Tcg, e, std::nullopt);
  CHECK(Has(a, "socket,id=rootfs,path=/run/vm-1/rootfs.sock"));
  CHECK(Has(a, "vhost-user-fs-device,chardev=rootfs,tag=krunbox-root"));
  CHECK_FALSE(Has(QemuArgs(Config(), Accel::Tcg, kEndpoints, std::nullopt), "vhost-user-fs-device,chardev=rootfs,tag=krunbox-root"));
}

TEST_CASE("a disk image root is one read-only virtio-blk disk in the format given, never probed") {
  VmConfig c = Config();
  c.rootDisk = RootDisk{"/img/a,b.qcow2", "qcow2", 0};
  const auto a = QemuArgs(c, Accel::Tcg, kEndpoints, std::nullopt);
  CHECK(After(a, "-drive") == "if=none,id=root,readonly=on,format=qcow2,file=/img/a,,b.qcow2");
  CHECK(Has(a, "virtio-blk-device,drive=root"));
  CHECK_FALSE(Has(QemuArgs(Config(), Accel::Tcg, kEndpoints, std::nullopt), "-drive"));
}
