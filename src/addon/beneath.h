// Host-side file operations confined beneath a folder (named volumes), and
// advisory locks; exported to lib/volumes.ts.
#pragma once

#include <napi.h>

namespace krunbox {
void InitBeneath(Napi::Env env, Napi::Object exports);
}
