// Input and output files from outside the program (see file_io.h).
#include "engine/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "engine/error.h"

namespace mixgrad::io {
namespace {

std::string reason() { return std::strerror(errno); }

Error file_error(const std::filesystem::path& path, const std::string& what) {
  return Error(fmt::format("{}: {}", path.string(), what));
}

Error not_regular(const std::filesystem::path& path, unsigned mode, const char* use) {
  return file_error(
      path, fmt::format("not a regular file (it is a {}); expected a regular file to {}", file_kind(mode), use));
}

// Closes `fd` at scope exit.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// write(2) until done, retrying on EINTR and short writes; false (errno set) on failure.
bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (w == 0) {
      errno = EIO;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

std::string file_kind(unsigned mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "regular file";
    case S_IFDIR:
      return "directory";
    case S_IFIFO:
      return "FIFO";
    case S_IFCHR:
      return "character device";
    case S_IFBLK:
      return "block device";
    case S_IFSOCK:
      return "socket";
    case S_IFLNK:
      return "symbolic link";
    default:
      return "special file";
  }
}

void require_regular_file(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw file_error(path, "cannot open file for reading: " + reason());
  if (!S_ISREG(st.st_mode)) throw not_regular(path, st.st_mode, "read");
}

std::vector<uint8_t> read_regular_file(const std::filesystem::path& path, uint64_t max_bytes,
                                       const std::string& what_limit) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  Fd f{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
  if (f.fd < 0) throw file_error(path, "cannot open file for reading: " + reason());
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) throw file_error(path, "cannot determine the file size: " + reason());
  if (!S_ISREG(st.st_mode)) throw not_regular(path, st.st_mode, "read");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes)
    throw file_error(path, fmt::format("file is {} bytes, more than {} ({} bytes)", size, what_limit, max_bytes));
  std::vector<uint8_t> bytes;
  try {
    bytes.resize(static_cast<size_t>(size));
  } catch (const std::bad_alloc&) {
    throw file_error(path, fmt::format("file is {} bytes, more than this machine can hold in memory", size));
  }
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t r = ::read(f.fd, bytes.data() + done, std::min<size_t>(bytes.size() - done, size_t(1) << 30));
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r < 0) throw file_error(path, fmt::format("read error after {} of {} bytes: {}", done, size, reason()));
    if (r == 0)
      throw file_error(path, fmt::format("file shrank while being read: ended after {} of {} bytes", done, size));
    done += static_cast<size_t>(r);
  }
  return bytes;
}

void require_replaceable(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw file_error(path, "cannot inspect the output path: " + reason());
  }
  if (!S_ISREG(st.st_mode))
    throw file_error(path, fmt::format("exists and is not a regular file (it is a {}); refusing to replace it "
                                       "with an output file, expected a regular file or nothing at that path",
                                       file_kind(st.st_mode)));
}

void write_file_atomic(const std::filesystem::path& path, const std::vector<Bytes>& pieces) {
  require_replaceable(path);
  const std::filesystem::path tmp = path.string() + ".tmp";
  struct stat st {};
  if (::lstat(tmp.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode))
      throw file_error(tmp, fmt::format("the temporary path for {} is a {}, expected a regular file or nothing",
                                        path.string(), file_kind(st.st_mode)));
    ::unlink(tmp.c_str());
  }
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) throw file_error(tmp, "cannot create the temporary output file: " + reason());
  const auto fail = [&](const std::string& what) {
    const std::string why = reason();
    ::close(fd);
    ::unlink(tmp.c_str());
    return file_error(tmp, fmt::format("{}: {} ({} left unchanged)", what, why, path.string()));
  };
  for (const Bytes& b : pieces)
    if (b.size > 0 && !write_all(fd, b.data, b.size)) throw fail("write failed");
  if (::fsync(fd) != 0) throw fail("fsync failed");
  if (::close(fd) != 0) {
    const std::string why = reason();
    ::unlink(tmp.c_str());
    throw file_error(tmp, fmt::format("close failed: {} ({} left unchanged)", why, path.string()));
  }
  // Checked again right before the rename: the target may have changed while the data was written.
  try {
    require_replaceable(path);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = reason();
    ::unlink(tmp.c_str());
    throw file_error(path, fmt::format("cannot rename {} over it: {}", tmp.string(), why));
  }
  // Make the rename itself durable; a failure here does not undo a complete, correctly named file.
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::filesystem::path& path, const std::string& text) {
  write_file_atomic(path, std::vector<Bytes>{{text.data(), text.size()}});
}

}  // namespace mixgrad::io
