/** Every error krunbox throws is a KrunboxError with a stable `code` (FsError: the errno name, as in Node). */
export class KrunboxError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** An option is invalid; `field` names it (e.g. "shares[2].guestPath"). */
export class ConfigError extends KrunboxError {
  readonly field: string;
  constructor(field: string, message: string) {
    super("ERR_KRUNBOX_CONFIG", message);
    this.field = field;
  }
}

/** A VMM program (QEMU, virtiofsd, vhost-device-vsock) is not installed. */
export class VmmNotFoundError extends KrunboxError {
  constructor(message: string) {
    super("ERR_KRUNBOX_VMM_NOT_FOUND", message);
  }
}

/** KVM was asked for but /dev/kvm is missing or not accessible. */
export class KvmUnavailableError extends KrunboxError {
  constructor(message: string) {
    super("ERR_KRUNBOX_KVM_UNAVAILABLE", message);
  }
}

/** libkrun could not be loaded, or is too old. */
export class LibkrunNotFoundError extends KrunboxError {
  constructor(message: string) {
    super("ERR_KRUNBOX_LIBKRUN_NOT_FOUND", message);
  }
}

/** krunbox's own build outputs (runner, kernel, initramfs) are missing. */
export class RuntimeNotBuiltError extends KrunboxError {
  constructor(message: string) {
    super("ERR_KRUNBOX_NOT_BUILT", message);
  }
}

/** The VMM failed to start or run the VM. */
export class VmmFailedError extends KrunboxError {
  constructor(message: string, readonly console = "") {
    super("ERR_KRUNBOX_VMM_FAILED", message);
  }
}

/** The guest did not come up within bootTimeoutMs. */
export class BootTimeoutError extends KrunboxError {
  constructor(message: string, readonly console = "") {
    super("ERR_KRUNBOX_BOOT_TIMEOUT", message);
  }
}

/** The guest kernel crashed or the VM stopped without an exit status. */
export class GuestCrashedError extends KrunboxError {
  constructor(message: string, readonly console = "") {
    super("ERR_KRUNBOX_GUEST_CRASHED", message);
  }
}

/** The guest agent could not prepare the workload (mounts, command). */
export class GuestSetupError extends KrunboxError {
  constructor(message: string, readonly console = "") {
    super("ERR_KRUNBOX_GUEST_SETUP", message);
  }
}

/** The guest agent broke the exec protocol (malformed, truncated or oversized frames). */
export class AgentProtocolError extends KrunboxError {
  constructor(message: string) {
    super("ERR_KRUNBOX_AGENT_PROTOCOL", message);
  }
}

/** An exec ran past its timeoutMs; its process group was killed. `stdout`/`stderr`: the output so far. */
export class ExecTimeoutError extends KrunboxError {
  constructor(
    message: string,
    readonly stdout: string | Buffer,
    readonly stderr: string | Buffer,
  ) {
    super("ERR_KRUNBOX_EXEC_TIMEOUT", message);
  }
}

/** An exec was aborted through its AbortSignal; its process group was killed. `stdout`/`stderr`: the output so far. */
export class ExecAbortedError extends KrunboxError {
  constructor(
    message: string,
    readonly stdout: string | Buffer = "",
    readonly stderr: string | Buffer = "",
    options?: { cause?: unknown },
  ) {
    super("ERR_KRUNBOX_EXEC_ABORTED", message, options);
  }
}

/** An exec wrote more than maxBufferBytes; it was killed. `stdout`/`stderr`: what was collected, maxBufferBytes in all. */
export class MaxBufferExceededError extends KrunboxError {
  constructor(
    message: string,
    readonly stdout: string | Buffer,
    readonly stderr: string | Buffer,
  ) {
    super("ERR_KRUNBOX_MAX_BUFFER", message);
  }
}

/**
 * The agent could not start the process; `field` says what it rejected
 * ("command": not found or not executable, "user", "cwd"), if one, and
 * `errno` the guest's errno name ("ENOENT", "EACCES"), if a system call said.
 */
export class ExecFailedError extends KrunboxError {
  constructor(
    message: string,
    readonly field?: string,
    readonly errno?: string,
  ) {
    super("ERR_KRUNBOX_EXEC_FAILED", message);
  }
}

/**
 * An option that only the guest can check does not fit the image: the
 * workdir is not a folder in it, or the user is not in its /etc/passwd.
 * Sandbox.create checks once the guest is up and stops it; `field` is
 * "workdir" or "user".
 */
export class SandboxConfigError extends KrunboxError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super("ERR_KRUNBOX_SANDBOX_CONFIG", message);
  }
}

/** The sandbox stopped or crashed while the exec was running. */
export class SandboxStoppedError extends KrunboxError {
  constructor(message: string) {
    super("ERR_KRUNBOX_SANDBOX_STOPPED", message);
  }
}

/** The sandbox's VM crashed (kernel panic, VMM died). */
export class SandboxCrashedError extends KrunboxError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_KRUNBOX_SANDBOX_CRASHED", message, options);
  }
}

/** A named volume does not exist. */
export class VolumeNotFoundError extends KrunboxError {
  constructor(name: string) {
    super("ERR_KRUNBOX_VOLUME_NOT_FOUND", `volume "${name}" does not exist (create it with Volume.create or \`krunbox volume create\`)`);
  }
}

/** Volume.create found a volume of that name. */
export class VolumeExistsError extends KrunboxError {
  constructor(name: string) {
    super("ERR_KRUNBOX_VOLUME_EXISTS", `volume "${name}" already exists`);
  }
}

/** The volume is mounted by a running sandbox, so it cannot be removed or resized now. */
export class VolumeInUseError extends KrunboxError {
  constructor(name: string, remedy = "stop it first or pass { force: true }") {
    super("ERR_KRUNBOX_VOLUME_IN_USE", `volume "${name}" is mounted by a running sandbox; ${remedy}`);
  }
}

/** A path given to vol.fs or copyOut, or a symlink found there, would lead outside its folder. */
export class PathEscapeError extends KrunboxError {
  readonly path: string;
  constructor(p: string, folder = "the volume") {
    super("ERR_KRUNBOX_PATH_ESCAPE", `"${p}" leads outside ${folder} (through ".." or a symlink); refused`);
    this.path = p;
  }
}

/**
 * A file operation of `sb.fs` or `vol.fs` failed. Like Node's own fs errors,
 * and unlike every other krunbox error, its `code` is the errno name
 * ("ENOENT", "EEXIST", "ENOTDIR", "EISDIR", "ENOTEMPTY", "EACCES", "EROFS",
 * "ENOSPC"...), so code written for `fs/promises` handles it unchanged;
 * `errno` is Node's negative number, `syscall` and `path` say what failed.
 */
export class FsError extends KrunboxError {
  readonly errno: number;
  readonly syscall: string;
  readonly path: string;
  readonly dest?: string;
  constructor(code: string, errno: number, syscall: string, p: string, options: { dest?: string; description?: string } = {}) {
    const where = options.dest === undefined ? `'${p}'` : `'${p}' -> '${options.dest}'`;
    super(code, `${code}: ${options.description ?? "file operation failed"}, ${syscall} ${where}`);
    this.errno = errno;
    this.syscall = syscall;
    this.path = p;
    if (options.dest !== undefined) this.dest = options.dest;
  }
}

/**
 * Host-side code met a FIFO, device node or socket (which a guest can make
 * in a shared folder) where it reads or writes files: it never opens them,
 * since a FIFO would block and a device would reach a host driver.
 */
export class SpecialFileError extends KrunboxError {
  readonly path: string;
  readonly fileType: string;
  constructor(p: string, fileType: string) {
    super("ERR_KRUNBOX_SPECIAL_FILE", `"${p}" is a ${fileType}; krunbox reads and writes only regular files and folders on the host`);
    this.path = p;
    this.fileType = fileType;
  }
}

/** A size the guest controls passed its bound (`limit` names the option that raises it). */
export class FsLimitError extends KrunboxError {
  readonly path: string;
  readonly limit: string;
  constructor(p: string, limit: string, message: string) {
    super("ERR_KRUNBOX_FS_LIMIT", `${p}: ${message}`);
    this.path = p;
    this.limit = limit;
  }
}

/** A quota cannot be had here (not root), or this volume has none to change. */
export class QuotaNotSupportedError extends KrunboxError {
  constructor(message: string) {
    super("ERR_KRUNBOX_QUOTA_NOT_SUPPORTED", message);
  }
}

/** Making, checking or mounting a volume's quota image failed. */
export class QuotaError extends KrunboxError {
  constructor(message: string) {
    super("ERR_KRUNBOX_QUOTA", message);
  }
}

/** Why a registry could not be used: what failed, so a program can decide (retry, ask for credentials). */
export type RegistryFailure = "dns" | "refused" | "connection" | "tls" | "proxy" | "blocked" | "auth" | "credential-helper" | "http" | "protocol";

/** The registry could not be reached, refused a request or answered with something krunbox cannot use. */
export class RegistryError extends KrunboxError {
  constructor(
    message: string,
    readonly reason: RegistryFailure = "protocol",
  ) {
    super("ERR_KRUNBOX_REGISTRY", message);
  }
}

/** A downloaded or cached blob does not match its digest; nothing was cached. */
export class DigestMismatchError extends KrunboxError {
  constructor(what: string, expected: string, actual: string) {
    super("ERR_KRUNBOX_DIGEST_MISMATCH", `${what} has digest ${actual}, expected ${expected}; nothing was cached`);
  }
}

/** An image layer tried to write outside the image, or holds something krunbox refuses to unpack. */
export class UnsafeLayerError extends KrunboxError {
  constructor(message: string) {
    super("ERR_KRUNBOX_UNSAFE_LAYER", message);
  }
}

/** The image is not in the cache (removeImage, or pullPolicy "never"). */
export class ImageNotFoundError extends KrunboxError {
  constructor(ref: string, remedy = "`krunbox image ls` lists what is") {
    super("ERR_KRUNBOX_IMAGE_NOT_FOUND", `image ${ref} is not in the cache; ${remedy}`);
  }
}

/** The image is the root of a running sandbox, so it cannot be removed now. */
export class ImageInUseError extends KrunboxError {
  constructor(ref: string) {
    super("ERR_KRUNBOX_IMAGE_IN_USE", `image ${ref} is the root of a running sandbox; stop it first`);
  }
}

/** A published host port is taken (by another program or sandbox); nothing was started. */
export class PortInUseError extends KrunboxError {
  constructor(message: string) {
    super("ERR_KRUNBOX_PORT_IN_USE", message);
  }
}

/** Sandbox.connect() found nothing listening on the guest port (or the sandbox is not running). */
export class GuestConnectionError extends KrunboxError {
  constructor(message: string) {
    super("ERR_KRUNBOX_GUEST_CONNECTION", message);
  }
}

/**
 * A request goes past a limit that whoever runs krunbox set (a `krunbox
 * mcp` flag, say); `limit` names the setting.
 */
export class LimitError extends KrunboxError {
  readonly limit: string;
  constructor(limit: string, message: string) {
    super("ERR_KRUNBOX_LIMIT", message);
    this.limit = limit;
  }
}
