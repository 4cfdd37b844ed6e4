#include "format/mapped_file.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "format/file_io.h"
#include "phinfer/error.h"

namespace phinfer::format {

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  struct stat st {};
  const FileDescriptor fd = open_regular_file(path, &st);
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p == MAP_FAILED) throw Error(path.string() + ": cannot memory-map: " + std::strerror(errno));
    data_ = static_cast<const std::byte*>(p);
    // Weights are streamed once per token: 2 MB pages (where the kernel backs the page cache with
    // large folios) save most TLB misses of that stream.
    ::madvise(p, size_, MADV_HUGEPAGE);
  }
}

void MappedFile::release(std::span<const std::byte> range) const {
  if (range.empty() || range.data() < data_ || range.data() + range.size() > data_ + size_) return;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  auto begin = reinterpret_cast<uintptr_t>(range.data());
  auto end = begin + range.size();
  begin = (begin + page - 1) / page * page;  // whole pages inside the range only
  end = end / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

}  // namespace phinfer::format
