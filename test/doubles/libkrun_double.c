/* TEST DOUBLE of libkrun, used only by test/libkrun.test.ts: libkrun cannot
 * boot a guest on this project's CI hosts (PVM KVM). It exports the krun_*
 * symbols the runner uses and appends one line per call to the file named
 * by KRUN_DOUBLE_LOG; krun_start_enter exits the process with
 * KRUN_DOUBLE_EXIT, as the real one exits with the workload's status. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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
int32_t krun_start_enter(uint32_t ctx) {
  record("krun_start_enter %u", ctx);
  const char *code = getenv("KRUN_DOUBLE_EXIT");
  exit(code ? atoi(code) : 0);
}
