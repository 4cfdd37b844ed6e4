#include "format/file_io.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "phinfer/error.h"

namespace phinfer::format {

FileDescriptor::~FileDescriptor() {
  if (fd_ >= 0) ::close(fd_);
}

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

std::string file_kind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "a special file";
}

FileDescriptor open_regular_file(const std::filesystem::path& path, struct stat* st_out) {
  // O_NONBLOCK: opening a FIFO with no writer returns at once (and then fails the S_ISREG check)
  // instead of waiting forever; O_NOCTTY: a terminal never becomes the controlling one.
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (fd.get() < 0) throw Error(path.string() + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw Error(path.string() + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw Error(path.string() + ": not a regular file (found " + file_kind(st.st_mode) + ")");
  // Regular files ignore O_NONBLOCK today; clear it anyway so reads keep their usual meaning.
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  if (st_out) *st_out = st;
  return fd;
}

std::string read_whole_file(const std::filesystem::path& path, uint64_t max_bytes) {
  struct stat st {};
  FileDescriptor fd = open_regular_file(path, &st);
  auto too_large = [&] {
    return Error(path.string() + ": file is larger than the " + std::to_string(max_bytes) + "-byte limit for this kind of file");
  };
  if (static_cast<uint64_t>(st.st_size) > max_bytes) throw too_large();
  // The size is a hint only (the file may grow while read, /proc files report 0): read to EOF.
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t used = 0;
  for (;;) {
    if (used == out.size()) {
      if (out.size() > max_bytes) throw too_large();
      out.resize(std::max<size_t>(4096, out.size() * 2));
    }
    const ssize_t n = ::read(fd.get(), out.data() + used, out.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(path.string() + ": read failed: " + std::strerror(errno));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  if (used > max_bytes) throw too_large();
  out.resize(used);
  return out;
}

void check_output_path(const std::filesystem::path& target) {
  std::filesystem::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error(target.string() + ": cannot write the file: its folder '" + dir.string() + "' does not exist");
  if (target.filename().empty() || target.filename() == "." || target.filename() == "..")
    throw Error(target.string() + ": expected a file name, found a folder");
  // stat follows symbolic links: a link to a device is refused like the device itself.
  if (::stat(target.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw Error(target.string() + ": exists and is " + file_kind(st.st_mode) +
                ", not a regular file; refusing to replace it");
}

std::filesystem::path partial_path(const std::filesystem::path& target) {
  // A per-process name: two processes writing the same target never write into one file.
  return target.string() + ".partial." + std::to_string(::getpid());
}

namespace {

constexpr std::string_view kPartialInfix = ".partial.";

// The writer's pid of a partial file name, or 0 when the name is not one.
pid_t partial_owner(const std::string& name) {
  const size_t at = name.rfind(kPartialInfix);
  if (at == std::string::npos || at == 0) return 0;
  const char* begin = name.data() + at + kPartialInfix.size();
  const char* end = name.data() + name.size();
  pid_t pid = 0;
  auto [p, ec] = std::from_chars(begin, end, pid);
  if (ec != std::errc() || p != end || begin == end || pid <= 0) return 0;
  return pid;
}

}  // namespace

void remove_stale_partials(const std::filesystem::path& dir, std::chrono::seconds min_age) {
  std::error_code ec;
  const auto now = std::filesystem::file_time_type::clock::now();
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const pid_t pid = partial_owner(it->path().filename().string());
    if (pid == 0) continue;
    std::error_code entry_ec;
    if (!it->is_regular_file(entry_ec) || it->is_symlink(entry_ec)) continue;
    const auto mtime = it->last_write_time(entry_ec);
    if (entry_ec || now - mtime < min_age) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge (EPERM)
    std::filesystem::remove(it->path(), entry_ec);      // best effort: another process may race us
  }
}

OutputFile::OutputFile(const std::filesystem::path& target) : target_(target), partial_(partial_path(target)) {
  check_output_path(target_);
  // O_NOFOLLOW and O_NONBLOCK: a symbolic link or FIFO planted at the partial name is not
  // followed or waited on; fstat then insists on a regular file.
  FileDescriptor fd(::open(partial_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0666));
  if (fd.get() < 0) throw Error(partial_.string() + ": cannot create file: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    throw Error(partial_.string() + ": not a regular file (found " + file_kind(st.st_mode) + ")");
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  stream_ = ::fdopen(fd.get(), "wb");
  if (!stream_) {
    const int err = errno;
    std::error_code ec;
    std::filesystem::remove(partial_, ec);
    throw Error(partial_.string() + ": cannot create file: " + std::strerror(err));
  }
  fd.release();  // the stream owns it now
}

OutputFile::~OutputFile() {
  if (stream_) {
    std::fclose(stream_);
    std::error_code ec;
    std::filesystem::remove(partial_, ec);
  }
}

void OutputFile::commit() {
  if (!stream_) throw Error(partial_.string() + ": already closed");
  const bool flushed = std::fflush(stream_) == 0 && !std::ferror(stream_);
  const bool closed = std::fclose(stream_) == 0;
  stream_ = nullptr;
  std::error_code ec;
  if (!flushed || !closed) {
    std::filesystem::remove(partial_, ec);
    throw Error(partial_.string() + ": write failed (disk full?)");
  }
  try {
    check_output_path(target_);  // again: the target may have changed while the file was written
  } catch (const Error&) {
    std::filesystem::remove(partial_, ec);
    throw;
  }
  std::filesystem::rename(partial_, target_, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(partial_, ignored);
    throw Error(target_.string() + ": cannot rename the finished file into place: " + ec.message());
  }
}

void write_whole_file(const std::filesystem::path& target, const std::string& text) {
  OutputFile out(target);
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), out.stream()) != text.size())
    throw Error(out.partial().string() + ": write failed (disk full?)");
  out.commit();
}

}  // namespace phinfer::format
