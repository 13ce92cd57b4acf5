#!/usr/bin/env bash
# krunbox setup: fetches every input from Debian's archive, then builds the
# addon, the runner, the guest agent, the initramfs and the default root.
# Idempotent: run it again at any time (`npm run setup`). `npm ci` runs it.
#
#   from bookworm (apt-get install): qemu-system-x86, busybox-static, cpio,
#       kmod, lz4, patch, nlohmann-json3-dev, doctest-dev, and for tests skopeo, zstd,
#       apache2-utils, tmux, qemu-utils, fdisk and erofs-utils
#   from bookworm (apt-get download + dpkg -x): docker-registry (tests),
#       linux-image-*-cloud-amd64, libseccomp-dev and libcap-ng-dev (static
#       libraries for the runner and virtiofsd)
#   from sid (apt-get download + dpkg -x): vhost-device-vsock (shipped)
#   from trixie (apt-get download + dpkg -x): the librust-*-dev crate sources
#       that scripts/build-virtiofsd.mjs builds virtiofsd from (shipped)
# Downloads land in deps/ (git-ignored); nothing from testing or unstable is
# ever installed system-wide. Needs root (or passwordless sudo) for apt and
# rustup's cargo for virtiofsd.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEB=$ROOT/deps/debian
mkdir -p "$DEB"

say() { printf 'krunbox setup: %s\n' "$*"; }
die() { printf 'krunbox setup: error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@" 2>/dev/null || return 1; fi; }

[ "$(uname -m)" = x86_64 ] || die "only x86_64 Linux hosts are supported for now (found $(uname -m))"
command -v apt-get >/dev/null || die "this setup needs a Debian/Ubuntu host with apt-get (to build krunbox from source); to use krunbox, install the npm package"

# --- apt sources: other suites pinned low, so nothing from them is chosen by default
EXTRA_SOURCES=/etc/apt/sources.list.d/krunbox-extra.sources
EXTRA_PIN=/etc/apt/preferences.d/krunbox-extra
if [ ! -f "$EXTRA_SOURCES" ] || [ ! -f "$EXTRA_PIN" ]; then
  # The same Debian mirror the host already uses for bookworm.
  MIRROR=$(apt-get indextargets --format '$(SITE) $(CODENAME) $(ORIGIN)' 'Identifier: Packages' 2>/dev/null \
    | awk '$2 == "bookworm" && $3 == "Debian" {print $1; exit}')
  [ -n "$MIRROR" ] || die "no Debian bookworm apt source found: krunbox's setup expects Debian 12"
  say "adding Debian trixie and sid as extra apt sources, pinned low ($EXTRA_SOURCES)"
  as_root tee "$EXTRA_SOURCES" >/dev/null <<EOF || die "cannot write $EXTRA_SOURCES: run 'sudo npm run setup'"
Types: deb
URIs: $MIRROR
Suites: trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  as_root tee "$EXTRA_PIN" >/dev/null <<'EOF'
# krunbox: packages from these suites are only ever downloaded, never chosen.
Package: *
Pin: release n=trixie
Pin-Priority: 100

Package: *
Pin: release n=sid
Pin-Priority: 50
EOF
  APT_UPDATED=
fi
apt_update() {
  if [ -z "${APT_UPDATED:-}" ]; then
    say "apt-get update"
    as_root apt-get update -q >/dev/null || die "apt-get update failed: run 'sudo apt-get update' and retry"
    APT_UPDATED=1
  fi
}
if [ -z "$(apt-cache policy vhost-device-vsock 2>/dev/null | grep -m1 Candidate | grep -v none)" ]; then
  APT_UPDATED=
  apt_update
fi

# --- system packages from Debian 12
NEED=()
# lz4 unpacks the kernel's image and patch patches virtiofsd at build time;
# doctest-dev serves the native unit tests; skopeo, zstd and apache2-utils
# (htpasswd) only serve the image tests, tmux the CLI's terminal tests;
# qemu-utils (qemu-img), fdisk (sfdisk) and erofs-utils only the disk image
# root tests.
for pkg in qemu-system-x86 busybox-static cpio kmod lz4 patch nlohmann-json3-dev doctest-dev skopeo zstd apache2-utils \
           tmux qemu-utils fdisk erofs-utils; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || NEED+=("$pkg")
done
if [ ${#NEED[@]} -gt 0 ]; then
  apt_update
  # Refuse anything that would replace the C library or other base packages.
  if apt-get -s install -y --no-install-recommends "${NEED[@]}" | grep -E '^Inst (libc6|libc-bin|base-files) '; then
    die "installing ${NEED[*]} would upgrade base packages; install them from your release by hand"
  fi
  say "installing ${NEED[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${NEED[@]}" >/dev/null \
    || die "missing packages ${NEED[*]}: run 'sudo apt-get install ${NEED[*]}'"
fi

# --- downloads unpacked into deps/debian/root (git-ignored)
# fetch PACKAGE[=VERSION] [SUITE]: apt-get download + dpkg -x, once per version.
fetch() {
  local spec=$1 suite=${2:-} name=${1%%=*} deb
  local stamp="$DEB/.fetched-${spec//[^A-Za-z0-9.+_-]/_}"
  [ -f "$stamp" ] && return 0
  apt_update
  ( cd "$DEB" && rm -f "${name}"_*.deb && apt-get download -q ${suite:+-t "$suite"} "$spec" >/dev/null 2>&1 ) \
    || die "cannot download $spec${suite:+ from $suite}: check the apt sources (see $EXTRA_SOURCES)"
  deb=$(ls "$DEB"/"${name}"_*.deb | head -n1)
  dpkg -x "$deb" "$DEB/root"
  rm -f "$deb"
  touch "$stamp"
}

# The guest kernel: whatever Debian 12's cloud kernel metapackage points at.
KPKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$KPKG" ] || { apt_update; KPKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}'); }
[ -n "$KPKG" ] || die "cannot resolve linux-image-cloud-amd64 to a kernel package"
fetch "$KPKG"
echo "${KPKG#linux-image-}" > "$DEB/kernel-release"

# vhost-device-vsock exists only in sid; its binary needs just libc >= 2.34
# and ships in the runtime folder.
fetch vhost-device-vsock sid
"$DEB/root/usr/bin/vhost-device-vsock" --version >/dev/null \
  || die "vhost-device-vsock from sid does not run on this host (needs glibc >= 2.34)"

# Static C libraries: the runner's seccomp filter, and virtiofsd's -sys crates.
fetch libseccomp-dev
fetch libcap-ng-dev

# The Rust virtiofsd, built offline from trixie's crate sources (cached in deps/virtiofsd/out).
apt-cache show librust-virtiofsd-dev >/dev/null 2>&1 || { APT_UPDATED=; apt_update; }
node scripts/build-virtiofsd.mjs

# The image tests' registry; unpacked rather than installed, so that no
# registry service starts on the host.
fetch docker-registry

# The image tests also run python3 from a Debian image built from a real
# root folder: debootstrap's minbase plus python3-minimal (kept in deps/debian).
PYROOT="$DEB/python-root"
if [ ! -f "$DEB/.python-root-done" ]; then
  command -v debootstrap >/dev/null || { apt_update; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null; } \
    || die "missing debootstrap: run 'sudo apt-get install debootstrap'"
  MIRROR=$(apt-get indextargets --format '$(SITE) $(CODENAME) $(ORIGIN)' 'Identifier: Packages' 2>/dev/null \
    | awk '$2 == "bookworm" && $3 == "Debian" {print $1; exit}')
  say "debootstrap of a small Debian root with python3 for the image tests (about 30 s)"
  as_root rm -rf "$PYROOT"
  as_root debootstrap --variant=minbase --include=python3-minimal bookworm "$PYROOT" "$MIRROR" >"$DEB/debootstrap.log" 2>&1 \
    || die "debootstrap failed (log: $DEB/debootstrap.log)"
  as_root rm -rf "$PYROOT"/var/cache/apt/archives/*.deb "$PYROOT"/var/lib/apt/lists/* "$PYROOT"/usr/share/doc "$PYROOT"/usr/share/man
  touch "$DEB/.python-root-done"
fi

# --- build
say "building the addon, runner, agent, native tests and libkrun test double (prebuildify + cmake-js)"
npx --no-install prebuildify --napi --strip --node-gyp=scripts/cmake-js-as-node-gyp.sh >"$ROOT/build.log" 2>&1 \
  || { tail -n 40 "$ROOT/build.log"; die "native build failed (full log: build.log)"; }
say "assembling the runtime folder (kernel, initramfs, runner, default image parts)"
node scripts/build-runtime.mjs
say "compiling TypeScript"
rm -rf dist  # no stale modules from moved sources
npx --no-install tsc -p tsconfig.json
say "done"
