// The file protocol between the host (sb.fs) and the guest agent; its
// TypeScript twin is lib/fs/protocol.ts (keep the two in step). The host
// opens connections to vsock port kFsPort; the agent forks one worker per
// connection, which chroots into the sandbox's root and drops to the user
// named in HELLO, so the guest kernel decides every permission (EACCES,
// EROFS, ENOSPC) on the guest's view of paths.
//
// Frames as in exec_protocol.h: u32 little-endian length of (type +
// payload), u8 type, payload; at most kMaxFrame bytes. Protocol version 1.
//   host -> guest  HELLO {"v":1,"user":""}           first frame; OK {} or ERROR
//                  REQUEST {"op":..}                 one at a time, answered below
//                  DATA bytes, END                   a file's contents
//                  ENTRY {"path","type","mode","target"}, DONE   a tree
//   guest -> host  OK {..} | ERROR {"errno":n,"syscall":"open","path":"/x"}
//                  DATA, END, ENTRY, DONE as above; ENTRIES [[name,type],..];
//                  EVENT {"eventType":"rename"|"change","filename":".."}
// Requests (paths are absolute guest paths):
//   stat {path,follow}        -> OK {dev,ino,mode,nlink,uid,gid,rdev,size,blksize,blocks,atimeMs,mtimeMs,ctimeMs}
//   readdir {path}            -> ENTRIES.. OK {}
//   mkdir {path,recursive,mode}, rm {path,recursive,force}, rename {from,to} -> OK {}
//   read {path}               -> OK {size} DATA.. END          (ERROR may replace any of it)
//   write {path,mode,flags}   -> OK {}; host DATA.. END; -> OK {} (flags "w", "wx" or "a")
//   copyIn {path}             -> OK {}; host (ENTRY (DATA.. END)?).. DONE; -> OK {}
//   copyOut {path}            -> (ENTRY (DATA.. END)?).. DONE  (FIFOs, devices, sockets skipped)
//   watch {path,recursive}    -> OK {}; EVENT.. until the host closes the connection
// ERROR during a host stream (write, copyIn) comes at once; the host then
// stops sending and closes the connection, or ends the stream (END or DONE),
// which the guest skips to.
// In a tree, ENTRY paths are relative to the request's path ("" is that
// path itself), parents come before their contents.
#pragma once

#include <cstdint>

namespace krunbox {

enum FsFrameType : uint8_t {
  kFsHello = 1,
  kFsRequest = 2,
  kFsOk = 3,
  kFsError = 4,
  kFsData = 5,
  kFsEnd = 6,
  kFsEntry = 7,
  kFsDone = 8,
  kFsEntries = 9,
  kFsEvent = 10,
};
constexpr uint32_t kFsProtocolVersion = 1;
// File contents travel in DATA frames of at most this size.
constexpr uint32_t kFsChunk = 256 * 1024;
// Paths and symlink targets, as the kernel's PATH_MAX.
constexpr uint32_t kFsMaxPath = 4096;

}  // namespace krunbox
