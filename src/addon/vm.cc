#include "addon/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/posix.h"

extern char** environ;

namespace krunbox {
namespace {

constexpr size_t kMaxEventBytes = 1 << 20;
// How long after the stop grace period the runner gets to finish on its own.
constexpr int64_t kStopBackstopMs = 10000;

Napi::Error TypedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

// A pipe whose ends sit above the descriptors the runner expects (0, 3, 4),
// so that posix_spawn's dup2 always clears close-on-exec on the copy.
bool HighPipe(int fds[2]) {
  int raw[2];
  if (pipe2(raw, O_CLOEXEC) != 0) return false;
  for (int i = 0; i < 2; i++) {
    fds[i] = fcntl(raw[i], F_DUPFD_CLOEXEC, 10);
    close(raw[i]);
  }
  return fds[0] >= 0 && fds[1] >= 0;
}

}  // namespace

Napi::Object Vm::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "Vm",
                                    {InstanceMethod("start", &Vm::Start), InstanceMethod("stop", &Vm::Stop),
                                     InstanceMethod("verdict", &Vm::Verdict), InstanceMethod("ref", &Vm::KeepAlive),
                                     InstanceMethod("unref", &Vm::LetGo), InstanceMethod("attach", &Vm::Attach),
                                     InstanceAccessor("pid", &Vm::Pid, nullptr)});
  exports.Set("Vm", ctor);
  return exports;
}

// new Vm(runnerPath, config, onEvent): throws ERR_KRUNBOX_CONFIG naming the
// offending field; nothing is started until start().
Vm::Vm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Vm>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsObject() || !info[2].IsFunction()) {
    TypedError(env, "ERR_INVALID_ARG_TYPE", "new Vm(runnerPath: string, config: object, onEvent: function)")
        .ThrowAsJavaScriptException();
    return;
  }
  runnerPath_ = info[0].As<Napi::String>();
  Napi::Object json = env.Global().Get("JSON").As<Napi::Object>();
  const std::string text = json.Get("stringify").As<Napi::Function>().Call(json, {info[1]}).As<Napi::String>();
  try {
    config_ = VmConfigFromJson(nlohmann::json::parse(text));
  } catch (const ConfigError& e) {
    Napi::Error err = TypedError(env, "ERR_KRUNBOX_CONFIG", e.what());
    err.Set("field", Napi::String::New(env, e.field()));
    err.ThrowAsJavaScriptException();
    return;
  } catch (const nlohmann::json::exception& e) {
    TypedError(env, "ERR_KRUNBOX_CONFIG", e.what()).ThrowAsJavaScriptException();
    return;
  }
  onEvent_ = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "krunbox-vm", 0, 1);
  // The VM keeps Node alive only while it runs.
  onEvent_.Unref(env);
}

Vm::~Vm() {
  if (!watcher_.joinable()) return;
  // Node is exiting with the runner still running (an unref()'d VM, or
  // process.exit()): end it as its parent's death would, with the stop
  // backstop, so that the watcher sees the runner go and can be joined.
  if (killDeadline_.load() < 0) {
    kill(pid_, SIGTERM);
    killDeadline_ = NowMs() + kStopBackstopMs;
  }
  watcher_.join();
}

Napi::Value Vm::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (pid_ >= 0) {
    TypedError(env, "ERR_KRUNBOX_STATE", "this VM was already started").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int configPipe[2], eventsPipe[2], controlPipe[2];
  if (!HighPipe(configPipe) || !HighPipe(eventsPipe) || !HighPipe(controlPipe)) {
    TypedError(env, "ERR_KRUNBOX_SPAWN", std::string("pipe: ") + strerror(errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, configPipe[0], 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, eventsPipe[1], 3);
  posix_spawn_file_actions_adddup2(&fa, controlPipe[0], 4);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  // Its own process group: a stop backstop kills the runner and its helpers
  // in one call.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> envStrings;
  for (char** e = environ; *e; e++)
    if (strncmp(*e, "KRUNBOX_PARENT_PID=", 19) != 0) envStrings.push_back(*e);
  envStrings.push_back("KRUNBOX_PARENT_PID=" + std::to_string(getpid()));
  std::vector<char*> envp;
  for (std::string& s : envStrings) envp.push_back(s.data());
  envp.push_back(nullptr);
  char* argv[] = {runnerPath_.data(), nullptr};

  // Spawned from the JS thread, which lives as long as the process: the
  // runner's PR_SET_PDEATHSIG fires when its parent *thread* ends.
  const int rc = posix_spawn(&pid_, runnerPath_.c_str(), &fa, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(configPipe[0]);
  close(eventsPipe[1]);
  close(controlPipe[0]);
  if (rc != 0) {
    pid_ = -1;
    for (int fd : {configPipe[1], eventsPipe[0], controlPipe[1]}) close(fd);
    TypedError(env, "ERR_KRUNBOX_SPAWN", "cannot start " + runnerPath_ + ": " + strerror(rc) +
                                             " (rebuild with `npm run build`)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  eventsFd_ = eventsPipe[0];
  controlFd_ = controlPipe[1];
  if (keepsNodeAlive_) onEvent_.Ref(env);
  running_ = true;
  Ref();  // stay alive until the runner's last event has been delivered
  const int configFd = configPipe[1];
  const std::string config = VmConfigToJson(config_).dump();
  watcher_ = std::thread([this, configFd, config] {
    WriteAll(configFd, config);
    close(configFd);
    Watch();
  });
  return Napi::Number::New(env, pid_);
}

Napi::Value Vm::Stop(const Napi::CallbackInfo& info) {
  const int64_t graceMs = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int64Value() : 0;
  if (controlFd_ < 0 || killDeadline_.load() >= 0) return info.Env().Undefined();
  WriteAll(controlFd_, "stop " + std::to_string(graceMs < 0 ? 0 : graceMs) + "\n");
  killDeadline_ = NowMs() + (graceMs < 0 ? 0 : graceMs) + kStopBackstopMs;
  return info.Env().Undefined();
}

// verdict(id, allowed): the host program's answer to a "connect-request" event.
Napi::Value Vm::Verdict(const Napi::CallbackInfo& info) {
  if (controlFd_ < 0 || info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBoolean()) return info.Env().Undefined();
  const int64_t id = info[0].As<Napi::Number>().Int64Value();
  const bool allowed = info[1].As<Napi::Boolean>().Value();
  WriteAll(controlFd_, "verdict " + std::to_string(id) + (allowed ? " 1\n" : " 0\n"));
  return info.Env().Undefined();
}

// ref() / unref(): whether the running VM keeps Node's event loop alive
// (as a child process does); remembered for a VM not yet started.
Napi::Value Vm::KeepAlive(const Napi::CallbackInfo& info) {
  keepsNodeAlive_ = true;
  if (running_) onEvent_.Ref(info.Env());
  return info.Env().Undefined();
}

Napi::Value Vm::LetGo(const Napi::CallbackInfo& info) {
  keepsNodeAlive_ = false;
  if (running_) onEvent_.Unref(info.Env());
  return info.Env().Undefined();
}

// attach(id, json): mount a share or tmpfs in the running guest; the runner
// answers with an "attached" event. Newlines cannot occur in JSON.stringify's output.
Napi::Value Vm::Attach(const Napi::CallbackInfo& info) {
  if (controlFd_ < 0 || info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString()) return info.Env().Undefined();
  const int64_t id = info[0].As<Napi::Number>().Int64Value();
  const std::string spec = info[1].As<Napi::String>();
  if (spec.find('\n') != std::string::npos) return info.Env().Undefined();
  WriteAll(controlFd_, "attach " + std::to_string(id) + " " + spec + "\n");
  return info.Env().Undefined();
}

Napi::Value Vm::Pid(const Napi::CallbackInfo& info) {
  return pid_ < 0 ? info.Env().Null() : Napi::Number::New(info.Env(), pid_);
}

void Vm::Watch() {
  auto deliver = [this](std::string line) {
    auto* s = new std::string(std::move(line));
    // Refused once Node tears its environment down: nobody will hear it.
    if (onEvent_.BlockingCall(s, [](Napi::Env env, Napi::Function fn, std::string* s) {
          fn.Call({Napi::String::New(env, *s)});
          delete s;
        }) != napi_ok)
      delete s;
  };
  std::string buf;
  char chunk[65536];
  for (;;) {
    const int64_t deadline = killDeadline_.load();
    // Wake now and then to honour a stop() that arrived during poll().
    const int timeout = deadline < 0 ? 250 : static_cast<int>(std::max<int64_t>(0, deadline - NowMs()));
    pollfd p{eventsFd_, POLLIN, 0};
    const int n = poll(&p, 1, timeout);
    if (n > 0) {
      const ssize_t r = read(eventsFd_, chunk, sizeof chunk);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      buf.append(chunk, static_cast<size_t>(r));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        deliver(buf.substr(0, nl));
        buf.erase(0, nl + 1);
      }
      if (buf.size() > kMaxEventBytes) buf.clear();
    }
    if (deadline >= 0 && NowMs() >= deadline) kill(-pid_, SIGKILL);
  }
  // The whole group goes, in case the runner died before its helpers; the
  // unreaped runner keeps its pid (and so the group id) from being reused.
  siginfo_t info{};
  while (waitid(P_PID, pid_, &info, WEXITED | WNOWAIT) < 0 && errno == EINTR) {
  }
  kill(-pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  close(eventsFd_);
  const std::string last = WIFSIGNALED(status)
                               ? R"({"event":"runner-exit","signal":)" + std::to_string(WTERMSIG(status)) + "}"
                               : R"({"event":"runner-exit","code":)" + std::to_string(WEXITSTATUS(status)) + "}";
  onEvent_.BlockingCall(new std::string(last), [this](Napi::Env env, Napi::Function fn, std::string* s) {
    close(controlFd_);
    controlFd_ = -1;
    running_ = false;
    fn.Call({Napi::String::New(env, *s)});
    delete s;
    onEvent_.Unref(env);
    Unref();
  });
}

}  // namespace krunbox
