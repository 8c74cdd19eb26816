// File commits (staging file, rename, folder fsync) with a fault-injection hook, stale-temporary cleanup and the
// finiteness check of tensors about to be saved.
#include "apps/common/checkpoint.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/error.h"

namespace mixgrad::app {

namespace fs = std::filesystem;

const char* save_step_name(SaveStep step) {
  switch (step) {
    case SaveStep::wrote:
      return "write";
    case SaveStep::renamed:
      return "rename";
    case SaveStep::synced_dir:
      return "folder fsync";
  }
  return "?";
}

SaveInterrupted::SaveInterrupted(const SaveEvent& at)
    : std::runtime_error(fmt::format("save stopped after the {} of {}", save_step_name(at.step), at.path.string())) {}

namespace {

// fsync of a folder, so that a rename in it is durable. Filesystems that cannot sync a folder (EINVAL) are accepted.
void fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  MIXGRAD_CHECK(fd >= 0, "cannot open folder {} to make a rename in it durable: {}", dir.string(),
                std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  MIXGRAD_CHECK(rc == 0 || err == EINVAL, "fsync of folder {} failed: {}", dir.string(), std::strerror(err));
}

// Runs the hook after a step; `fail` is reported like an I/O error of that step.
void after(const SaveHook& hook, SaveStep step, const fs::path& path) {
  if (!hook) return;
  const SaveEvent ev{step, path};
  switch (hook(ev)) {
    case SaveFault::none:
      return;
    case SaveFault::stop:
      throw SaveInterrupted(ev);
    case SaveFault::fail:
      throw Error(fmt::format("{} of {} failed: injected fault", save_step_name(step), path.string()));
  }
}

}  // namespace

void commit_file(const fs::path& path, const std::function<void(const fs::path&)>& write, const SaveHook& hook) {
  const fs::path staging = path.string() + ".tmp";
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  bool renamed = false;
  try {
    write(staging);
    after(hook, SaveStep::wrote, staging);
    std::error_code ec;
    fs::rename(staging, path, ec);
    MIXGRAD_CHECK(!ec, "cannot rename {} over {}: {}", staging.string(), path.string(), ec.message());
    renamed = true;
    after(hook, SaveStep::renamed, path);
    fsync_dir(dir);
    after(hook, SaveStep::synced_dir, dir);
  } catch (const SaveInterrupted&) {
    throw;  // a simulated kill: nothing runs after it
  } catch (const std::exception& e) {
    std::error_code ignored;
    if (!renamed) fs::remove(staging, ignored);
    throw Error(fmt::format("cannot save {}: {}{}", path.string(), e.what(),
                            renamed ? "" : fmt::format(" ({} is unchanged)", path.filename().string())));
  }
}

void commit_tensors(const fs::path& path, const nn::NamedTensors& tensors, const nn::Metadata& metadata,
                    const SaveHook& hook) {
  commit_file(
      path, [&](const fs::path& staging) { nn::save_tensors(staging, tensors, metadata); }, hook);
}

void fsync_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MIXGRAD_CHECK(fd >= 0, "cannot open {} to flush it to disk: {}", path.string(), std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  MIXGRAD_CHECK(rc == 0 || err == EINVAL, "fsync of {} failed: {}", path.string(), std::strerror(err));
}

int64_t remove_stale_temporaries(const fs::path& dir) {
  std::vector<fs::path> stale;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    std::error_code type;
    if (e.path().extension() == ".tmp" && e.is_regular_file(type)) stale.push_back(e.path());
  }
  for (const fs::path& p : stale) {
    std::error_code rm;
    fs::remove(p, rm);
    MIXGRAD_CHECK(!rm, "cannot remove the stale temporary file {}: {}", p.string(), rm.message());
  }
  return int64_t(stale.size());
}

nn::NamedTensors host_copies(const nn::NamedTensors& tensors) {
  nn::NamedTensors out;
  out.reserve(tensors.size());
  for (const auto& [name, t] : tensors) out.emplace_back(name, t.detach().to(kCPU));
  return out;
}

namespace {
template <class T>
std::optional<std::string> first_non_finite_in(const std::string& name, const Tensor& t) {
  const T* p = t.data<T>();
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) return fmt::format("{} holds {} at element {}", name, p[i], i);
  return std::nullopt;
}
}  // namespace

std::optional<std::string> first_non_finite(const nn::NamedTensors& host_tensors) {
  for (const auto& [name, t] : host_tensors) {
    std::optional<std::string> bad;
    if (t.dtype() == DType::f32) bad = first_non_finite_in<float>(name, t);
    if (t.dtype() == DType::f64) bad = first_non_finite_in<double>(name, t);
    if (bad) return bad;
  }
  return std::nullopt;
}

}  // namespace mixgrad::app
