// Builds the Rust virtiofsd that ships in runtime/linux-x64, offline, from
// Debian trixie's librust-*-dev crate sources (crates.io is never used):
//   1. the closure of librust-virtiofsd-dev's Depends in trixie's package
//      index, librust-* packages only (the -sys crates' C libraries come from
//      bookworm, fetched by setup.sh into deps/debian/root);
//   2. apt-get download + dpkg -x of those packages into deps/virtiofsd/;
//   3. rustup's cargo builds the crate, with krunbox's patches applied
//      (scripts/virtiofsd-*.patch), against a `directory` source made of
//      them, with libseccomp and libcap-ng linked statically, so the binary
//      needs only glibc (and libgcc_s, which every glibc system has).
// Output: deps/virtiofsd/out/{virtiofsd,version,patches,licenses/}. Cached:
// when out/ was built with the same patches nothing runs (remove
// deps/virtiofsd/out to rebuild).
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const work = path.join(root, "deps/virtiofsd");
const out = path.join(work, "out");
const debs = path.join(work, "debs");
const unpacked = path.join(work, "unpacked");
const registry = path.join(unpacked, "usr/share/cargo/registry");
const cLibs = path.join(root, "deps/debian/root/usr/lib/x86_64-linux-gnu");
const cDocs = path.join(root, "deps/debian/root/usr/share/doc");
const suite = "trixie";
// The oldest cargo that builds trixie's crate set (clap 4.5 needs 1.74).
const minCargo = [1, 74];

const say = (m) => console.log(`krunbox build-virtiofsd: ${m}`);
function fail(message) {
  console.error(`krunbox build-virtiofsd: error: ${message}`);
  process.exit(1);
}

// What krunbox changes in virtiofsd, one patch file each (see each file's first hunk's comment).
const patches = fs
  .readdirSync(path.join(root, "scripts"))
  .filter((f) => /^virtiofsd-.*\.patch$/.test(f))
  .sort()
  .map((f) => path.join(root, "scripts", f));
const patchesId = createHash("sha256");
for (const p of patches) patchesId.update(fs.readFileSync(p));
const patchesHash = patchesId.digest("hex");
const builtWith = (() => {
  try {
    return fs.readFileSync(path.join(out, "patches"), "utf8").trim();
  } catch {
    return undefined;
  }
})();
if (fs.existsSync(path.join(out, "virtiofsd")) && builtWith === patchesHash) {
  say(`cached (${fs.readFileSync(path.join(out, "version"), "utf8").trim()}); remove ${path.relative(root, out)} to rebuild`);
  process.exit(0);
}
for (const lib of ["libseccomp.a", "libcap-ng.a"])
  if (!fs.existsSync(path.join(cLibs, lib))) fail(`${path.join(cLibs, lib)} is missing: run \`npm run setup\` (it fetches libseccomp-dev and libcap-ng-dev)`);

// --- 1. which packages: librust-virtiofsd-dev and what it needs, from the suite's index
function packageIndex() {
  const file = execFileSync("apt-get", ["indextargets", "--format", "$(FILENAME)", "Identifier: Packages", `Codename: ${suite}`, "Architecture: amd64"], {
    encoding: "utf8",
  }).split("\n")[0];
  if (!file) fail(`no apt index for Debian ${suite}: setup.sh adds it as an extra source; run \`npm run setup\``);
  const text = execFileSync("/usr/lib/apt/apt-helper", ["cat-file", file], { maxBuffer: 1 << 30 }).toString();
  const byName = new Map();
  const providers = new Map();
  for (const stanza of text.split("\n\n")) {
    const name = /^Package: (.+)$/m.exec(stanza)?.[1];
    if (!name?.startsWith("librust-")) continue;
    const field = (f) => new RegExp(`^${f}: (.+(?:\\n .+)*)`, "m").exec(stanza)?.[1].replace(/\n /g, " ") ?? "";
    const names = (list) => list.split(",").map((alts) => alts.split("|").map((a) => a.trim().split(/[\s(]/)[0]).filter(Boolean));
    byName.set(name, { version: field("Version"), depends: names(field("Depends")) });
    for (const [provided] of names(field("Provides"))) if (!providers.has(provided)) providers.set(provided, name);
  }
  return { byName, providers };
}

function closure() {
  const { byName, providers } = packageIndex();
  const start = "librust-virtiofsd-dev";
  if (!byName.has(start)) fail(`${start} is not in Debian ${suite}'s index: run \`apt-get update\``);
  const seen = new Set();
  const queue = [start];
  while (queue.length) {
    const name = queue.pop();
    if (seen.has(name)) continue;
    seen.add(name);
    for (const alternatives of byName.get(name).depends) {
      const pick = alternatives.map((a) => (byName.has(a) ? a : providers.get(a))).find(Boolean);
      // Only crates come from the suite; C libraries and tools are the host's.
      if (pick) queue.push(pick);
      else if (alternatives.some((a) => a.startsWith("librust-"))) fail(`${name} needs ${alternatives.join(" | ")}, not in ${suite}`);
    }
  }
  return { packages: [...seen].sort(), version: byName.get(start).version };
}

// --- 2. download and unpack (kept, so a second build needs no network)
const { packages, version } = closure();
fs.mkdirSync(debs, { recursive: true });
const have = new Set(fs.readdirSync(debs).map((f) => f.split("_")[0]));
const missing = packages.filter((p) => !have.has(p));
if (missing.length) {
  say(`downloading ${missing.length} crate packages from Debian ${suite}`);
  const r = spawnSync("apt-get", ["download", "-q", ...missing.map((p) => `${p}/${suite}`)], { cwd: debs, encoding: "utf8" });
  if (r.status !== 0) fail(`apt-get download failed: ${r.stderr.trim().split("\n").slice(-3).join(" ")}`);
}
fs.rmSync(unpacked, { recursive: true, force: true });
// The Debian package that ships each crate folder, for its copyright file.
const packageOfCrate = new Map();
for (const deb of fs.readdirSync(debs).filter((f) => f.endsWith(".deb"))) {
  const file = path.join(debs, deb);
  execFileSync("dpkg-deb", ["-x", file, unpacked]);
  const crate = /\.\/usr\/share\/cargo\/registry\/([^/]+)\/$/m.exec(execFileSync("dpkg-deb", ["-c", file], { encoding: "utf8" }))?.[1];
  if (crate) packageOfCrate.set(crate, deb.split("_")[0]);
}

// --- 3. build
function findCargo() {
  for (const cargo of ["cargo", path.join(os.homedir(), ".cargo/bin/cargo")]) {
    const r = spawnSync(cargo, ["--version"], { encoding: "utf8" });
    const m = /^cargo (\d+)\.(\d+)/.exec(r.stdout ?? "");
    if (m && Number(m[1]) * 1000 + Number(m[2]) >= minCargo[0] * 1000 + minCargo[1]) return cargo;
  }
  fail(`no cargo >= ${minCargo.join(".")} found (Debian 12's cargo is too old): install rustup (https://rustup.rs), then run \`npm run setup\` again`);
}
const cargo = findCargo();
const crateDir = fs.readdirSync(registry).find((d) => d.startsWith("virtiofsd-"));
const build = path.join(work, "build");
fs.rmSync(build, { recursive: true, force: true });
fs.cpSync(path.join(registry, crateDir), build, { recursive: true });
for (const p of patches) {
  const r = spawnSync("patch", ["-p1", "--quiet", "-d", build, "-i", p], { encoding: "utf8" });
  if (r.error) fail("`patch` not found: apt-get install patch");
  if (r.status !== 0) fail(`${path.basename(p)} does not apply to ${crateDir}: ${(r.stdout + r.stderr).trim()}`);
}
fs.mkdirSync(path.join(build, ".cargo"));
fs.writeFileSync(
  path.join(build, ".cargo/config.toml"),
  `[source.crates-io]
replace-with = "debian"
[source.debian]
directory = ${JSON.stringify(registry)}
[net]
offline = true
`,
);
const env = {
  ...process.env,
  CARGO_TARGET_DIR: path.join(work, "target"),
  LIBSECCOMP_LIB_PATH: cLibs,
  LIBSECCOMP_LINK_TYPE: "static",
  LIBCAPNG_LIB_PATH: cLibs,
  LIBCAPNG_LINK_TYPE: "static",
};
say(`building ${crateDir} with ${cargo} (about 2 minutes on 2 cores)`);
const log = path.join(work, "cargo.log");
// No lock file ships with the crate: cargo writes one from the directory source.
const r = spawnSync(cargo, ["build", "--release", "--bin", "virtiofsd"], { cwd: build, env, stdio: ["ignore", fs.openSync(log, "w"), fs.openSync(log, "a")] });
if (r.status !== 0) fail(`cargo build failed (log: ${log}):\n${fs.readFileSync(log, "utf8").split("\n").slice(-30).join("\n")}`);

// What the binary links: the crates of the normal (not build or dev) graph.
const crates = execFileSync(cargo, ["tree", "--offline", "-e", "normal", "--prefix", "none", "-f", "{p}"], {
  cwd: build,
  env,
  encoding: "utf8",
})
  .split("\n")
  .map((line) => /^(\S+) v(\S+)/.exec(line))
  .filter(Boolean)
  .map(([, name, v]) => `${name}-${v}`);

const tmp = `${out}.tmp-${process.pid}`;
fs.rmSync(tmp, { recursive: true, force: true });
fs.mkdirSync(path.join(tmp, "licenses"), { recursive: true });
fs.copyFileSync(path.join(env.CARGO_TARGET_DIR, "release/virtiofsd"), path.join(tmp, "virtiofsd"));
execFileSync("strip", [path.join(tmp, "virtiofsd")]);
for (const crate of new Set(crates)) {
  const pkg = packageOfCrate.get(crate);
  if (!pkg) fail(`no Debian package found for crate ${crate}`);
  fs.copyFileSync(path.join(unpacked, "usr/share/doc", pkg, "copyright"), path.join(tmp, "licenses", `${crate}.copyright`));
}
for (const lib of ["libseccomp-dev", "libcap-ng-dev"])
  fs.copyFileSync(path.join(cDocs, lib, "copyright"), path.join(tmp, "licenses", `${lib.replace(/-dev$/, "")}.copyright`));
fs.writeFileSync(
  path.join(tmp, "version"),
  `${execFileSync(path.join(tmp, "virtiofsd"), ["--version"], { encoding: "utf8" }).trim()} (built from Debian ${suite}'s librust-virtiofsd-dev ${version}` +
    `${patches.length ? `, with krunbox's ${patches.map((p) => path.basename(p, ".patch").replace(/^virtiofsd-/, "")).join(", ")} patch` : ""})\n`,
);
fs.writeFileSync(path.join(tmp, "patches"), `${patchesHash}\n`);
fs.writeFileSync(path.join(tmp, "crates.txt"), [...new Set(crates)].sort().join("\n") + "\n");
fs.rmSync(out, { recursive: true, force: true });
fs.renameSync(tmp, out);
say(`built ${fs.readFileSync(path.join(out, "version"), "utf8").trim()}, ${new Set(crates).size} crates linked`);
