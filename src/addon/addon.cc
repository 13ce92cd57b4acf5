#include <napi.h>

#include "addon/beneath.h"
#include "addon/vm.h"

Napi::Object InitKrunbox(Napi::Env env, Napi::Object exports) {
  krunbox::InitBeneath(env, exports);
  exports.Set("version", Napi::String::New(env, KRUNBOX_VERSION));
  return krunbox::Vm::Init(env, exports);
}

NODE_API_MODULE(krunbox, InitKrunbox)
