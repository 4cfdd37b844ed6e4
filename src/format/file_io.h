#pragma once
// Every file the project reads or writes goes through here, so hostile paths are handled once:
//   inputs:  only regular files are opened (a FIFO would block open() forever, a device could
//            stream without end), and whole-file reads are bounded;
//   outputs: written to a per-process partial file beside the target and renamed into place,
//            never into a missing folder (no folders are created) and never over anything that
//            is not a regular file (a device node such as /dev/full stays a device node).
#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace phinfer::format {

// An open file descriptor, closed when it goes out of scope.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) : fd_(fd) {}
  ~FileDescriptor();
  FileDescriptor(FileDescriptor&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  FileDescriptor& operator=(FileDescriptor&& o) noexcept;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

// "a FIFO", "a character device", "a directory", ... for error messages.
std::string file_kind(mode_t mode);

// Opens a regular file read-only; throws phinfer::Error naming the file when it is missing,
// unreadable or anything but a regular file. `st` receives its fstat.
FileDescriptor open_regular_file(const std::filesystem::path& path, struct stat* st = nullptr);

inline constexpr uint64_t kMaxWholeFileBytes = uint64_t{1} << 30;

// The whole contents of a regular file of at most max_bytes (more is an Error, not an allocation).
std::string read_whole_file(const std::filesystem::path& path, uint64_t max_bytes = kMaxWholeFileBytes);

// Throws phinfer::Error unless `target` can be written as described above: its folder exists and
// it is either absent or a regular file.
void check_output_path(const std::filesystem::path& target);

// The per-process partial file an output is written to before the rename: "<target>.partial.<pid>".
std::filesystem::path partial_path(const std::filesystem::path& target);

// Removes partial files in `dir` left by processes that no longer exist (killed mid-write), when
// older than min_age (a pid can be reused; a young file may belong to a process just starting).
void remove_stale_partials(const std::filesystem::path& dir, std::chrono::seconds min_age);

// An output file being written: a stdio stream on partial_path(target); commit() renames it onto
// the target, destruction without commit() removes it.
class OutputFile {
 public:
  explicit OutputFile(const std::filesystem::path& target);  // throws phinfer::Error
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  std::FILE* stream() const { return stream_; }
  const std::filesystem::path& partial() const { return partial_; }
  void commit();

 private:
  std::filesystem::path target_, partial_;
  std::FILE* stream_ = nullptr;
};

// Writes `text` to `target` through an OutputFile.
void write_whole_file(const std::filesystem::path& target, const std::string& text);

}  // namespace phinfer::format
