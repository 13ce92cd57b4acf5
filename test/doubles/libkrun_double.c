/* TEST DOUBLE of libkrun, used only by test/libkrun.test.ts: libkrun cannot
 * boot a guest on this project's CI hosts (PVM KVM). It exports the krun_*
 * symbols the runner uses and appends one line per call to the file named
 * by KRUN_DOUBLE_LOG; krun_start_enter exits the process with
 * KRUN_DOUBLE_EXIT, as the real one exits with the workload's status. */
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void record(const char *fmt, ...) {
  const char *path = getenv("KRUN_DOUBLE_LOG");
  FILE *f = path ? fopen(path, "a") : NULL;
  if (!f) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fputc('\n', f);
  fclose(f);
}

static void record_list(const char *name, const char *const list[]) {
  const char *path = getenv("KRUN_DOUBLE_LOG");
  FILE *f = path ? fopen(path, "a") : NULL;
  if (!f) return;
  fprintf(f, "%s", name);
  for (int i = 0; list && list[i]; i++) fprintf(f, " [%s]", list[i]);
  fputc('\n', f);
  fclose(f);
}

int32_t krun_create_ctx(void) { record("krun_create_ctx"); return 7; }
int32_t krun_set_vm_config(uint32_t ctx, uint8_t cpus, uint32_t mib) {
  record("krun_set_vm_config %u %u %u", ctx, cpus, mib); return 0;
}
int32_t krun_set_root(uint32_t ctx, const char *path) { record("krun_set_root %u %s", ctx, path); return 0; }
int32_t krun_add_virtiofs3(uint32_t ctx, const char *tag, const char *path, uint64_t shm, bool ro) {
  record("krun_add_virtiofs3 %u %s %s %llu %d", ctx, tag, path, (unsigned long long)shm, ro); return 0;
}
int32_t krun_disable_implicit_vsock(uint32_t ctx) { record("krun_disable_implicit_vsock %u", ctx); return 0; }
#ifndef KRUN_DOUBLE_WITHOUT_ADD_VSOCK
int32_t krun_add_vsock(uint32_t ctx, uint32_t tsi) { record("krun_add_vsock %u %u", ctx, tsi); return 0; }
#endif
int32_t krun_add_vsock_port2(uint32_t ctx, uint32_t port, const char *path, bool listen) {
  record("krun_add_vsock_port2 %u %u %s %d", ctx, port, path, listen); return 0;
}
int32_t krun_set_exec(uint32_t ctx, const char *exec, const char *const argv[], const char *const envp[]) {
  record("krun_set_exec %u %s", ctx, exec);
  record_list("  argv", argv);
  record_list("  envp", envp);
  return 0;
}
int32_t krun_set_workdir(uint32_t ctx, const char *dir) { record("krun_set_workdir %u %s", ctx, dir); return 0; }
int32_t krun_set_console_output(uint32_t ctx, const char *path) {
  record("krun_set_console_output %u %s", ctx, path); return 0;
}
/* Without KRUN_DOUBLE_WITHOUT_NET: a libkrun built with its newer devices
 * (a virtio-net on a unixstream, block devices). */
#ifndef KRUN_DOUBLE_WITHOUT_NET
int32_t krun_add_disk2(uint32_t ctx, const char *id, const char *path, uint32_t format, bool ro) {
  record("krun_add_disk2 %u %s %s %u %d", ctx, id, path, format, ro); return 0;
}

static int net_fd = -1;

int32_t krun_add_net_unixstream(uint32_t ctx, const char *path, int fd, uint8_t *const mac, uint32_t features,
                                uint32_t flags) {
  int type = 0;
  socklen_t len = sizeof type;
  getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
  record("krun_add_net_unixstream %u %s %s %02x:%02x:%02x:%02x:%02x:%02x %u %u", ctx, path ? path : "-",
         type == SOCK_STREAM ? "stream" : "not-a-stream", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], features, flags);
  net_fd = fd;
  return 0;
}

/* Asks the gateway's DNS (198.18.0.1) for `name` over the guest link, as
 * the guest would: one Ethernet frame after a 4-byte big-endian length. */
static void ask_dns(const char *name) {
  uint8_t f[512] = {0};
  const uint8_t guest[] = {198, 18, 0, 2}, gateway[] = {198, 18, 0, 1};
  memset(f, 0xff, 6);
  f[12] = 0x08;
  uint8_t *ip = f + 14, *udp = ip + 20, *dns = udp + 8;
  size_t q = 12;
  dns[0] = 0x12, dns[2] = 0x01, dns[5] = 1;
  for (const char *label = name; *label;) {
    const char *dot = strchr(label, '.');
    size_t n = dot ? (size_t)(dot - label) : strlen(label);
    dns[q++] = (uint8_t)n;
    memcpy(dns + q, label, n);
    q += n;
    label += n + (dot ? 1 : 0);
  }
  q++;
  dns[q + 1] = 1, dns[q + 3] = 1, q += 4;
  const size_t udpLen = 8 + q, ipLen = 20 + udpLen, frameLen = 14 + ipLen;
  ip[0] = 0x45, ip[2] = (uint8_t)(ipLen >> 8), ip[3] = (uint8_t)ipLen, ip[8] = 64, ip[9] = 17;
  memcpy(ip + 12, guest, 4);
  memcpy(ip + 16, gateway, 4);
  udp[0] = 0x9c, udp[1] = 0x40, udp[3] = 53, udp[4] = (uint8_t)(udpLen >> 8), udp[5] = (uint8_t)udpLen;
  uint8_t out[4 + sizeof f] = {0, 0, (uint8_t)(frameLen >> 8), (uint8_t)frameLen};
  memcpy(out + 4, f, frameLen);
  if (write(net_fd, out, 4 + frameLen) != (ssize_t)(4 + frameLen)) return;
  for (;;) {
    struct pollfd p = {net_fd, POLLIN, 0};
    uint8_t in[4 + 1514];
    if (poll(&p, 1, 5000) <= 0 || read(net_fd, in, 4) != 4) {
      record("  dns %s no answer", name);
      return;
    }
    const size_t n = (size_t)in[2] << 8 | in[3];
    if (n > sizeof in - 4 || read(net_fd, in + 4, n) != (ssize_t)n) {
      record("  dns %s bad frame", name);
      return;
    }
    const uint8_t *r = in + 4 + 14 + 20 + 8;
    if (in[4 + 14 + 9] != 17 || r[0] != 0x12) continue; /* not our answer */
    const int rcode = r[3] & 0xf, answers = r[6] << 8 | r[7];
    const uint8_t *a = r + q + 12;
    if (answers) record("  dns %s rcode=%d a=%u.%u.%u.%u", name, rcode, a[0], a[1], a[2], a[3]);
    else record("  dns %s rcode=%d", name, rcode);
    return;
  }
}
#endif

int32_t krun_start_enter(uint32_t ctx) {
  record("krun_start_enter %u", ctx);
#ifndef KRUN_DOUBLE_WITHOUT_NET
  /* KRUN_DOUBLE_DNS="a.test,b.test": the runner's network stack answers as it would the guest. */
  char names[256];
  const char *want = getenv("KRUN_DOUBLE_DNS");
  if (want && net_fd >= 0 && strlen(want) < sizeof names) {
    strcpy(names, want);
    for (char *name = strtok(names, ","); name; name = strtok(NULL, ",")) ask_dns(name);
  }
#endif
  const char *code = getenv("KRUN_DOUBLE_EXIT");
  exit(code ? atoi(code) : 0);
}
