#include <napi.h>

#include "vm.h"

Napi::Object InitKrunbox(Napi::Env env, Napi::Object exports) { return krunbox::Vm::Init(env, exports); }

NODE_API_MODULE(krunbox, InitKrunbox)
