// Host-side file operations confined beneath a folder that a guest can
// write to (volumes, copyOut destinations, image roots), and advisory
// locks; used by lib/fs, lib/volumes and lib/images.
#pragma once

#include <napi.h>

namespace krunbox {
void InitBeneath(Napi::Env env, Napi::Object exports);
}
