/** Every error krunbox throws is a KrunboxError with a stable `code`. */
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
