// The layer tar decoder on its own: hostile sparse maps and headers are
// UnsafeLayerErrors, never skipped or misread.
import { expect, it } from "vitest";
import { UnsafeLayerError } from "../lib/index.js";
import { checkSparseMap, decodeHeader, gnuSparseMap, noPax, parsePax, paxSparse, readDataMap } from "../lib/images/tar.js";

// "LEN key=value\n", LEN counting itself.
const record = (kv: string) => {
  let len = kv.length + 3;
  while (String(len).length + kv.length + 2 !== len) len++;
  return `${len} ${kv}\n`;
};
const pax = (records: Record<string, string>) => ({ ...noPax(), values: records });
const blocks = (text: string) => {
  const data = Buffer.alloc(Math.ceil(text.length / 512) * 512 || 512);
  data.write(text, "latin1");
  let at = 0;
  return async () => data.subarray(at, (at += 512));
};

it("checks sparse maps: in order, inside the file, adding up to the stored bytes", () => {
  const ok = { realSize: 100, segments: [{ offset: 0, length: 10 }, { offset: 50, length: 10 }, { offset: 100, length: 0 }] };
  expect(checkSparseMap("f", ok, 20)).toBe(ok);
  for (const [map, stored] of [
    [{ realSize: 100, segments: [{ offset: 50, length: 10 }, { offset: 0, length: 10 }] }, 20],
    [{ realSize: 100, segments: [{ offset: 95, length: 10 }] }, 10],
    [{ realSize: 100, segments: [{ offset: 0, length: 10 }] }, 11],
    [{ realSize: -1, segments: [] }, 0],
    [{ realSize: 2 ** 60, segments: [] }, 0],
    [{ realSize: 100, segments: [{ offset: NaN, length: 1 }] }, 1],
  ] as const)
    expect(() => checkSparseMap("f", map as never, stored), JSON.stringify(map)).toThrow(UnsafeLayerError);
});

it("reads the pax sparse formats and refuses one it does not know", async () => {
  expect(paxSparse(pax({ "GNU.sparse.map": "0,5,10,5", "GNU.sparse.size": "20", "GNU.sparse.name": "real" }), "x")).toEqual({
    realName: "real",
    map: { realSize: 20, segments: [{ offset: 0, length: 5 }, { offset: 10, length: 5 }] },
  });
  // Format 0.0 repeats its offset and numbytes records.
  const zero = parsePax(["GNU.sparse.size=20", "GNU.sparse.offset=3", "GNU.sparse.numbytes=4", "GNU.sparse.offset=9", "GNU.sparse.numbytes=1"].map(record).join(""));
  expect(paxSparse(zero, "x")?.map).toEqual({ realSize: 20, segments: [{ offset: 3, length: 4 }, { offset: 9, length: 1 }] });
  expect(() => paxSparse(pax({ "GNU.sparse.major": "2", "GNU.sparse.minor": "0" }), "x")).toThrow(/unknown format 2\.0/);
  expect(() => paxSparse(pax({ "GNU.sparse.map": "0,5,10" }), "x")).toThrow(/odd number/);
  expect(paxSparse(pax({ path: "plain" }), "x")).toBeUndefined();

  expect(await readDataMap(blocks("2\n0\n5\n10\n5\n"), "x", 20)).toEqual({ map: { realSize: 20, segments: [{ offset: 0, length: 5 }, { offset: 10, length: 5 }] }, bytes: 512 });
  await expect(readDataMap(blocks("2\n0\nfive\n"), "x", 20)).rejects.toThrow(/malformed map/);
  await expect(readDataMap(blocks("99999999\n"), "x", 20)).rejects.toThrow(/more than 65536 segments/);
  // A map that never ends is bounded.
  const endless = async () => Buffer.from("1\n".padEnd(512, "7"));
  await expect(readDataMap(endless, "x", 20)).rejects.toThrow(UnsafeLayerError);
});

it("refuses a GNU sparse header whose extension blocks never end", async () => {
  const h = Buffer.alloc(512);
  h.write("0000000000\0" + "00000000001\0", 386, "latin1");
  h[482] = 1; // isextended
  const ext = Buffer.alloc(512);
  ext.write("00000000002\0" + "00000000001\0", 0, "latin1");
  ext[504] = 1;
  await expect(gnuSparseMap({ type: "S", name: "f", linkpath: "", size: 0, mode: 0, uid: 0, gid: 0, block: h }, async () => ext)).rejects.toThrow(
    /more than 65536 segments/,
  );
});

it("refuses a header whose checksum does not match, and accepts GNU tar's", () => {
  const h = Buffer.alloc(512);
  h.write("name", 0);
  h.write("0000644\0", 100, "latin1");
  h.write("00000000000\0", 124, "latin1");
  h.write("0", 156);
  h.fill(" ", 148, 156);
  const sum = h.reduce((a, b) => a + b, 0);
  h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
  expect(decodeHeader(h)).toMatchObject({ name: "name", type: "0", size: 0, mode: 0o644 });
  h[0] ^= 1;
  expect(() => decodeHeader(h)).toThrow(/checksum does not match/);
});
