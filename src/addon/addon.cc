#include <napi.h>

#include "addon/beneath.h"
#include "addon/vm.h"
#include "common/ip_address.h"

namespace {

// classifyAddress(address or prefix): the special range it lies in ({ kind,
// block }: loopback, private, the host's own...), or null for a public one
// or a prefix that merely spans special ranges (as the egress policy judges
// "naming" them). The policy's own table, so that host-side checks
// (krunbox mcp) never restate it.
Napi::Value ClassifyAddress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "argument 0 must be a string");
  const std::string text = info[0].As<Napi::String>();
  std::optional<krunbox::Cidr> prefix = krunbox::Cidr::Parse(text);
  std::optional<krunbox::IpAddress> base = krunbox::IpAddress::Parse(text.substr(0, text.find('/')));
  if (!prefix || !base) throw Napi::TypeError::New(env, "\"" + text + "\" is not an IP address or prefix");
  std::optional<krunbox::SpecialRange> special = krunbox::ClassifyAddress(*base, krunbox::HostAddresses());
  if (!special || !special->block.Covers(*prefix)) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  out.Set("kind", special->kind);
  out.Set("block", special->block.ToString());
  return out;
}

}  // namespace

Napi::Object InitKrunbox(Napi::Env env, Napi::Object exports) {
  krunbox::InitBeneath(env, exports);
  exports.Set("version", Napi::String::New(env, KRUNBOX_VERSION));
  exports.Set("classifyAddress", Napi::Function::New(env, ClassifyAddress, "classifyAddress"));
  return krunbox::Vm::Init(env, exports);
}

NODE_API_MODULE(krunbox, InitKrunbox)
