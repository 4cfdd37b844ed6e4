// Hostile files, generated here: special files as inputs and outputs, corrupt cached conversions,
// stale partial files of killed writers, crafted .phi metadata, misaligned safetensors data, and
// CLI arguments that would grow memory. Every case must end in a clear phinfer::Error (or a clean
// result), never a hang, a crash or a replaced device node.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <thread>

#include "format/file_io.h"
#include "format/json_file.h"
#include "format/mapped_file.h"
#include "format/native_file.h"
#include "format/safetensors.h"
#include "kernels/probe.h"
#include "kernels/quant.h"
#include "phinfer/config.h"
#include "phinfer/convert.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"
#include "test_util.h"

namespace phinfer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void expect_contains(const std::string& text, std::initializer_list<std::string> parts) {
  EXPECT_FALSE(text.empty()) << "expected an error";
  for (const auto& p : parts) EXPECT_NE(text.find(p), std::string::npos) << "lacks '" << p << "': " << text;
}

fs::path make_fifo(const fs::path& p) {
  fs::remove(p);
  if (::mkfifo(p.c_str(), 0600) != 0) throw std::runtime_error("mkfifo failed for " + p.string());
  return p;
}

// The error `fn` gives for a FIFO input. Should `fn` block (the bug: open() of a FIFO waits for a
// writer), a watchdog opens and closes the writing end after 5 s, so the test fails, never hangs.
std::string error_on_fifo(const fs::path& fifo, const std::function<void()>& fn) {
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 500 && !done; ++i) std::this_thread::sleep_for(10ms);
    while (!done) {
      int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) ::close(fd);
      std::this_thread::sleep_for(10ms);
    }
  });
  const auto start = std::chrono::steady_clock::now();
  std::string err = error_of(fn);
  done = true;
  watchdog.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s) << "blocked on the FIFO " << fifo;
  return err;
}

// A checkpoint folder whose files are links to the shared model's, except those the test replaces.
fs::path linked_model(const std::string& model, const std::string& name) {
  const fs::path src = test::shared_path("models/" + model);
  const fs::path dir = test::temp_dir(name);
  for (const auto& e : fs::directory_iterator(src)) fs::create_symlink(e.path(), dir / e.path().filename());
  return dir;
}

fs::path stories() { return test::shared_path("models/stories260K-phi3"); }

bool has_partial_files(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".partial.") != std::string::npos) return true;
  return false;
}

// ---- 1. Inputs: only regular files are opened ----

TEST(HostileInputs, FifoInsteadOfAnInputFileIsRejectedAtOnce) {
  const fs::path dir = test::temp_dir("hostile_fifo");
  const fs::path fifo = make_fifo(dir / "fifo");
  expect_contains(error_on_fifo(fifo, [&] { format::MappedFile m(fifo); }), {fifo.string(), "FIFO"});
  expect_contains(error_on_fifo(fifo, [&] { format::read_json_file(fifo); }), {fifo.string(), "FIFO"});
  expect_contains(error_on_fifo(fifo, [&] { format::read_whole_file(fifo); }), {"FIFO"});
  expect_contains(error_on_fifo(fifo, [&] { format::NativeFile::open(fifo); }), {"FIFO"});
  expect_contains(error_on_fifo(fifo, [&] { ModelConfig::from_file(fifo); }), {"FIFO"});
  expect_contains(error_on_fifo(fifo, [&] { GenerationDefaults::from_file(fifo); }), {"FIFO"});
  EXPECT_FALSE(format::is_native_file(fifo));

  // Each input file of a checkpoint folder, as a FIFO.
  for (const char* file : {"model.safetensors", "config.json", "generation_config.json", "tokenizer_config.json"}) {
    SCOPED_TRACE(file);
    const fs::path model = linked_model("stories260K-phi3", std::string("hostile_fifo_") + file);
    fs::remove(model / file);
    make_fifo(model / file);
    ConvertOptions o;
    o.weight_format = "fp32";
    expect_contains(error_on_fifo(model / file, [&] { convert(model, dir / "out.phi", o); }), {file, "FIFO"});
    expect_contains(error_on_fifo(model / file, [&] { cached_conversion(model, o, dir / "cache"); }), {file, "FIFO"});
  }
  const fs::path shard_dir = linked_model("stories260K-phi3", "hostile_fifo_shard");
  fs::remove(shard_dir / "model.safetensors");
  make_fifo(shard_dir / "model.safetensors");
  expect_contains(error_on_fifo(shard_dir / "model.safetensors", [&] { format::SafetensorsCheckpoint::open(shard_dir); }),
                  {"model.safetensors", "FIFO"});
}

TEST(HostileInputs, DevicesAndFoldersAreNotInputFiles) {
  expect_contains(error_of([] { format::MappedFile m("/dev/zero"); }), {"/dev/zero", "character device"});
  expect_contains(error_of([] { format::read_whole_file("/dev/zero"); }), {"character device"});
  const fs::path dir = test::temp_dir("hostile_dir_input");
  expect_contains(error_of([&] { format::read_json_file(dir); }), {"a directory"});
  // A regular file larger than the caller's bound is refused before it is read.
  std::ofstream(dir / "big.json") << std::string(5000, ' ') << "{}";
  expect_contains(error_of([&] { format::read_whole_file(dir / "big.json", 4096); }), {"4096-byte limit"});
}

// ---- 2. Outputs: written beside the target and renamed; never over a special file or into a missing folder ----

TEST(HostileOutputs, SpecialFilesAreNeverReplaced) {
  const fs::path dir = test::temp_dir("hostile_out_special");
  ConvertOptions o;
  o.weight_format = "fp32";
  expect_contains(error_of([&] { convert(stories(), "/dev/full", o); }), {"/dev/full", "character device", "refusing"});
  struct stat st {};
  ASSERT_EQ(::stat("/dev/full", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode)) << "/dev/full is no longer a device node";
  EXPECT_FALSE(fs::exists(format::partial_path("/dev/full")));

  const fs::path fifo = make_fifo(dir / "out.phi");
  expect_contains(error_of([&] { convert(stories(), fifo, o); }), {"FIFO", "refusing"});
  fs::create_symlink(fifo, dir / "link.phi");  // a link to a special file counts as one
  expect_contains(error_of([&] { convert(stories(), dir / "link.phi", o); }), {"FIFO", "refusing"});
  fs::create_directory(dir / "folder.phi");
  expect_contains(error_of([&] { format::NativeFileWriter w(dir / "folder.phi", json::object(), {}); }), {"a directory"});
  expect_contains(error_of([&] { format::SafetensorsWriter w(fifo, {}); }), {"FIFO"});
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_TRUE(fs::is_directory(dir / "folder.phi"));
  EXPECT_FALSE(has_partial_files(dir));
}

TEST(HostileOutputs, MissingFoldersAreNotCreated) {
  const fs::path dir = test::temp_dir("hostile_out_nodir");
  ConvertOptions o;
  o.weight_format = "fp32";
  const fs::path target = dir / "no" / "such" / "x.phi";
  expect_contains(error_of([&] { convert(stories(), target, o); }), {target.string(), "does not exist"});
  EXPECT_FALSE(fs::exists(dir / "no"));
  expect_contains(error_of([&] { format::NativeFileWriter w(target, json::object(), {}); }), {"does not exist"});
  expect_contains(error_of([&] { format::SafetensorsWriter w(target, {}); }), {"does not exist"});
  EXPECT_FALSE(fs::exists(dir / "no"));
}

TEST(HostileOutputs, WrittenToAPartialFileThenRenamed) {
  const fs::path dir = test::temp_dir("hostile_out_rename");
  const fs::path target = dir / "t.phi";
  std::ofstream(target) << "old contents";  // an existing regular file is replaced
  {
    format::NativeFileWriter w(target, json::object(), {{"a", {{"format", "f32"}, {"shape", {2}}}, 8}});
    EXPECT_TRUE(fs::is_regular_file(dir / ("t.phi.partial." + std::to_string(::getpid()))));
    EXPECT_EQ(fs::file_size(target), 12u);  // untouched until finished
    const float values[2] = {1.5f, -2.0f};
    w.write(std::as_bytes(std::span(values)));
    w.finish();
  }
  EXPECT_TRUE(format::is_native_file(target));
  EXPECT_NO_THROW(format::NativeFile::open(target).verify());
  EXPECT_FALSE(has_partial_files(dir));
  {
    format::NativeFileWriter abandoned(dir / "u.phi", json::object(), {{"a", {{"format", "f32"}, {"shape", {2}}}, 8}});
  }
  EXPECT_FALSE(fs::exists(dir / "u.phi"));
  EXPECT_FALSE(has_partial_files(dir));
}

// ---- 3. The conversion cache: verified before its first reuse, rebuilt when corrupt, no stale partials ----

void flip_byte(const fs::path& p, uint64_t offset) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x5a));
}

uint64_t tensor_offset(const fs::path& phi, const std::string& name) {
  return format::NativeFile::open(phi).require(name).info["offset"].get<uint64_t>();
}

TEST(HostileCache, CorruptCachedConversionIsRebuilt) {
  const fs::path cache = test::temp_dir("hostile_cache_corrupt");
  ConvertOptions o;
  o.weight_format = "int8";
  bool converted = false;
  const fs::path entry = cached_conversion(stories(), o, cache, &converted);
  ASSERT_TRUE(converted);
  const std::string tensor = "model.layers.0.mlp.down_proj.weight";

  // Corrupt before its first reuse: the check finds it and the entry is rebuilt.
  flip_byte(entry, tensor_offset(entry, tensor) + 3);
  EXPECT_NE(error_of([&] { format::NativeFile::open(entry).verify(); }).find(tensor), std::string::npos);
  EXPECT_EQ(cached_conversion(stories(), o, cache, &converted), entry);
  EXPECT_TRUE(converted);
  EXPECT_NO_THROW(format::NativeFile::open(entry).verify());

  // A sound entry is reused and marked verified; corrupted later, it is checked (and rebuilt) again.
  EXPECT_EQ(cached_conversion(stories(), o, cache, &converted), entry);
  EXPECT_FALSE(converted);
  EXPECT_TRUE(fs::exists(entry.string() + ".verified"));
  const auto mtime = fs::last_write_time(entry);
  flip_byte(entry, tensor_offset(entry, tensor) + 5);
  fs::last_write_time(entry, mtime + 1s);  // as a later write would, whatever the clock's granularity
  cached_conversion(stories(), o, cache, &converted);
  EXPECT_TRUE(converted);
  EXPECT_NO_THROW(format::NativeFile::open(entry).verify());

  // A truncated entry (a crash of a writer that did not use a partial file) is rebuilt too.
  cached_conversion(stories(), o, cache, &converted);
  fs::resize_file(entry, fs::file_size(entry) / 2);
  cached_conversion(stories(), o, cache, &converted);
  EXPECT_TRUE(converted);
  EXPECT_NO_THROW(format::NativeFile::open(entry).verify());
}

TEST(HostileCache, VerificationRunsOnceThenTheMarkerIsTrusted) {
  const fs::path cache = test::temp_dir("hostile_cache_once");
  ConvertOptions o;
  o.weight_format = "fp16";
  bool converted = false;
  const fs::path entry = cached_conversion(stories(), o, cache, &converted);
  cached_conversion(stories(), o, cache, &converted);  // first reuse: verified, marked
  ASSERT_FALSE(converted);
  // A change that keeps size, mtime and inode is not seen: proof that the full read happens only
  // once per version of the file (the marker is keyed by exactly these).
  const auto mtime = fs::last_write_time(entry);
  flip_byte(entry, tensor_offset(entry, "model.norm.weight"));
  fs::last_write_time(entry, mtime);
  cached_conversion(stories(), o, cache, &converted);
  EXPECT_FALSE(converted);
  // Any visible change (here the mtime) invalidates the marker.
  fs::last_write_time(entry, mtime + 2s);
  cached_conversion(stories(), o, cache, &converted);
  EXPECT_TRUE(converted);
}

// A pid that no longer exists: a child that was killed with SIGKILL, and reaped.
pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) {
    ::raise(SIGKILL);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status));
  return child;
}

TEST(HostileCache, StalePartialFilesOfKilledWritersAreRemoved) {
  const fs::path cache = test::temp_dir("hostile_cache_stale");
  const pid_t dead = dead_pid();
  auto make = [&](const std::string& name, bool old) {
    std::ofstream(cache / name) << "partial";
    if (old) fs::last_write_time(cache / name, fs::file_time_type::clock::now() - 1h);
    return cache / name;
  };
  const fs::path stale = make("0123.phi.partial." + std::to_string(dead), true);
  const fs::path stale_marker = make("0123.phi.verified.partial." + std::to_string(dead), true);
  const fs::path young = make("4567.phi.partial." + std::to_string(dead), false);       // may be starting up
  const fs::path alive = make("89ab.phi.partial." + std::to_string(::getpid()), true);  // still writing
  const fs::path other = make("notes.partial.txt", true);                                // not a partial file
  ConvertOptions o;
  o.weight_format = "fp32";
  cached_conversion(stories(), o, cache);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists(stale_marker));
  EXPECT_TRUE(fs::exists(young));
  EXPECT_TRUE(fs::exists(alive));
  EXPECT_TRUE(fs::exists(other));
}

// ---- 4. .phi metadata: every tensor entry checked at open ----

constexpr uint64_t kDataOffset = 4096;

// A .phi file laid out by hand: the metadata text (with a correct checksum) at 64, then a data
// section of data_size zero bytes at kDataOffset.
void write_raw_phi(const fs::path& p, const std::string& text, uint64_t data_size) {
  ASSERT_LT(64 + text.size(), kDataOffset);
  std::vector<char> bytes(kDataOffset + data_size, 0);
  auto put = [&](size_t at, auto v) { std::memcpy(bytes.data() + at, &v, sizeof v); };
  std::memcpy(bytes.data(), format::kNativeMagic, 8);
  put(8, format::kNativeVersion);
  put(16, uint64_t{64});
  put(24, uint64_t{text.size()});
  put(32, kDataOffset);
  put(40, data_size);
  put(48, format::crc32(std::as_bytes(std::span(text.data(), text.size()))));
  std::memcpy(bytes.data() + 64, text.data(), text.size());
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string zeros_crc(uint64_t n) {
  std::vector<std::byte> z(n);
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", format::crc32(z));
  return buf;
}

json f32_entry(uint64_t offset, int64_t rows, int64_t cols) {
  const uint64_t size = static_cast<uint64_t>(rows * cols * 4);
  return {{"format", "f32"}, {"shape", {rows, cols}}, {"offset", offset}, {"size", size}, {"crc32", zeros_crc(size)}};
}

json q4_entry(uint64_t offset, json group_size) {
  const uint64_t size = kernels::quantized_size(kernels::WeightFormat::Int4, 16, 64, 32, true);
  return {{"format", "q4"},      {"shape", {16, 64}}, {"group_size", group_size}, {"symmetric", true},
          {"offset", offset},    {"size", size},      {"crc32", zeros_crc(size)}};
}

std::string open_error(const fs::path& dir, const json& tensors) {
  write_raw_phi(dir / "x.phi", json{{"config", json::object()}, {"tensors", tensors}}.dump(), 8192);
  return error_of([&] { format::NativeFile::open(dir / "x.phi").verify(); });
}

TEST(HostileNativeFile, EveryTensorEntryIsCheckedAtOpen) {
  const fs::path dir = test::temp_dir("hostile_phi");
  const uint64_t d = kDataOffset;
  // The well-formed baseline opens and verifies: each failure below is the edited field's.
  EXPECT_EQ(open_error(dir, {{"a", f32_entry(d, 4, 4)}, {"b", f32_entry(d + 64, 4, 4)}, {"q", q4_entry(d + 128, 32)}}), "");

  expect_contains(open_error(dir, {{"a", f32_entry(d, 4, 4)}, {"b", f32_entry(d, 4, 4)}}), {"'a'", "'b'", "overlap"});
  expect_contains(open_error(dir, {{"a", f32_entry(d, 8, 8)}, {"b", f32_entry(d + 64, 4, 4)}}), {"overlap"});
  expect_contains(open_error(dir, {{"a", f32_entry(d + 8192, 4, 4)}}), {"'a'", "outside"});
  expect_contains(open_error(dir, {{"a", f32_entry(d + 8, 4, 4)}}), {"'a'", "misaligned"});
  expect_contains(open_error(dir, {{"a", f32_entry(d - 64, 4, 4)}}), {"'a'", "outside"});

  // group_size 4294967328 = 2^32 + 32 must not become 32.
  expect_contains(open_error(dir, {{"q", q4_entry(d, (uint64_t{1} << 32) + 32)}}), {"'q'", "group_size", "4294967328"});
  for (json bad : {json(0), json(-2), json(65537), json(32.0), json("32"), json(nullptr)})
    expect_contains(open_error(dir, {{"q", q4_entry(d, bad)}}), {"'q'", "group_size"});
  json q = q4_entry(d, 32);
  q.erase("symmetric");
  expect_contains(open_error(dir, {{"q", q}}), {"symmetric"});

  json e = f32_entry(d, 4, 4);
  e["format"] = "q5";
  expect_contains(open_error(dir, {{"a", e}}), {"unknown weight format"});
  for (json shape : {json::array({-1, 4}), json::array({2, 2, 4}), json::array(), json::array({uint64_t{1} << 40, 2}),
                     json::array({uint64_t{1} << 63, 0})}) {
    e = f32_entry(d, 4, 4);
    e["shape"] = shape;
    expect_contains(open_error(dir, {{"a", e}}), {"'a'", "shape"});
  }
  e = f32_entry(d, 4, 4);
  e["size"] = 60;
  expect_contains(open_error(dir, {{"a", e}}), {"'a'", "size 60", "needs 64"});
  e = f32_entry(d, 4, 4);
  e["crc32"] = "xyz";
  expect_contains(open_error(dir, {{"a", e}}), {"crc32"});
  // A number JSON cannot hold as a double is a corrupt file, not an escaped nlohmann exception.
  write_raw_phi(dir / "big.phi", R"({"tensors": {}, "x": 1e999})", 64);
  expect_contains(error_of([&] { format::NativeFile::open(dir / "big.phi"); }), {"big.phi", "not JSON"});
}

// ---- 5. safetensors data that is not aligned to its element size ----

struct RawTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

// A safetensors file whose data section starts at 8 + header length; `misalign` spaces make that
// odd (HF always pads to a multiple of 8; other writers need not).
void write_safetensors(const fs::path& p, const std::vector<RawTensor>& tensors, size_t misalign) {
  json header = json::object();
  uint64_t off = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
    off += t.bytes.size();
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != misalign) text.push_back(' ');
  const uint64_t n = text.size();
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << text;
  for (const auto& t : tensors) f.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
}

template <typename T>
std::vector<std::byte> as_byte_vector(const std::vector<T>& v) {
  auto b = std::as_bytes(std::span(v));
  return {b.begin(), b.end()};
}

TEST(HostileSafetensors, OddHeaderLengthLoadsAlignedCopies) {
  const fs::path dir = test::temp_dir("hostile_st_odd");
  std::vector<uint16_t> bf16, f16;
  std::vector<float> f32;
  for (int i = 0; i < 24; ++i) {
    const float x = 0.25f * static_cast<float>(i) - 3.0f;
    bf16.push_back(f32_to_bf16(x));
    f16.push_back(f32_to_f16(x));
    f32.push_back(x);
  }
  const std::vector<RawTensor> tensors = {{"b", "BF16", {4, 6}, as_byte_vector(bf16)},
                                          {"h", "F16", {4, 6}, as_byte_vector(f16)},
                                          {"f", "F32", {4, 6}, as_byte_vector(f32)}};
  for (size_t misalign : {1, 3, 6}) {
    SCOPED_TRACE(misalign);
    write_safetensors(dir / "model.safetensors", tensors, misalign);
    format::MappedFile file(dir / "model.safetensors");
    const auto views = format::parse_safetensors(file.bytes(), "odd.safetensors");
    for (const auto& [name, t] : views) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data.data()) % dtype_size(t.dtype), 0u) << name;
      for (size_t i = 0; i < 24; ++i) {
        float v = 0;
        if (t.dtype == DType::F32) v = reinterpret_cast<const float*>(t.data.data())[i];
        if (t.dtype == DType::BF16) v = bf16_to_f32(reinterpret_cast<const uint16_t*>(t.data.data())[i]);
        if (t.dtype == DType::F16) v = f16_to_f32(reinterpret_cast<const uint16_t*>(t.data.data())[i]);
        EXPECT_EQ(v, f32[i]) << name << "[" << i << "]";
      }
    }
  }
}

// The whole model, rewritten with its data section one byte off alignment, gives the same logits.
TEST(HostileSafetensors, MisalignedCheckpointGivesTheSameLogits) {
  const fs::path model = linked_model("stories260K-phi3", "hostile_st_model");
  fs::remove(model / "model.safetensors");
  format::MappedFile original(stories() / "model.safetensors");
  std::vector<RawTensor> tensors;
  for (const auto& [name, t] : format::parse_safetensors(original.bytes(), "stories")) {
    // As bf16: the 2-byte elements are then misaligned by the odd header as well.
    std::vector<uint16_t> half(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < half.size(); ++i) {
      float x;
      std::memcpy(&x, t.data.data() + 4 * i, 4);
      half[i] = f32_to_bf16(x);
    }
    tensors.push_back({name, "BF16", t.shape, as_byte_vector(half)});
  }
  write_safetensors(model / "model.safetensors", tensors, 1);
  const fs::path aligned = linked_model("stories260K-phi3", "hostile_st_aligned");
  fs::remove(aligned / "model.safetensors");
  write_safetensors(aligned / "model.safetensors", tensors, 0);
  Pipeline odd = Pipeline::load(model), even = Pipeline::load(aligned);
  const std::vector<int32_t> ids = odd.tokenizer().encode("Once upon a time, there was a little", true);
  const std::vector<int64_t> positions = {0, static_cast<int64_t>(ids.size()) - 1};
  const auto a = odd.logits(ids, positions), b = even.logits(ids, positions);
  EXPECT_EQ(a, b);
  for (float x : a) ASSERT_TRUE(std::isfinite(x));
}

// ---- 7. The int8 peak probe: its accumulators wrap without undefined behaviour ----

TEST(HostileArithmetic, Int8PeakProbeIsDefinedAndPositive) {
  kernels::ThreadPool pool(1);
  const double gops = kernels::measure_int8_peak_gops(pool);
  EXPECT_TRUE(std::isfinite(gops));
  EXPECT_GT(gops, 0.0);
}

// ---- The CLI: `verify`, and `logits --positions` bounded by the prompt ----

struct CliResult {
  int status = -1;
  std::string out, err;
};

CliResult run_phinfer(const std::string& args) {
  static int counter = 0;
  const fs::path dir = test::temp_dir("hostile_cli_" + std::to_string(counter++));
  const std::string cmd = std::string(PHINFER_CLI_PATH) + " " + args + " </dev/null >" + (dir / "out").string() + " 2>" +
                          (dir / "err").string();
  const int st = std::system(cmd.c_str());
  CliResult r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = format::read_whole_file(dir / "out");
  r.err = format::read_whole_file(dir / "err");
  return r;
}

std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

TEST(HostileCli, VerifyNamesTheFirstCorruptTensor) {
  const fs::path dir = test::temp_dir("hostile_verify");
  ConvertOptions o;
  o.weight_format = "fp32";
  const fs::path file = dir / "m.phi";
  convert(stories(), file, o);
  CliResult r = run_phinfer("verify -m " + quoted(file));
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  expect_contains(r.out, {"m.phi", "OK"});

  // Two corrupt tensors: the one earlier in the file is named.
  const std::string first = "model.layers.0.self_attn.qkv_proj.weight", later = "model.norm.weight";
  ASSERT_LT(tensor_offset(file, first), tensor_offset(file, later));
  flip_byte(file, tensor_offset(file, later) + 1);
  flip_byte(file, tensor_offset(file, first) + 1);
  r = run_phinfer("verify -m " + quoted(file));
  EXPECT_EQ(r.status, 1);
  expect_contains(r.out, {"CORRUPT", "tensor '" + first + "'"});

  flip_byte(file, 64 + 3);  // the metadata
  r = run_phinfer("verify -m " + quoted(file));
  EXPECT_EQ(r.status, 1);
  expect_contains(r.out, {"CORRUPT", "checksum"});

  r = run_phinfer("verify -m " + quoted(dir / "missing.phi"));
  EXPECT_EQ(r.status, 1);
  expect_contains(r.err, {"error:", "missing.phi"});
  const fs::path fifo = make_fifo(dir / "fifo.phi");
  r = run_phinfer("verify -m " + quoted(fifo));
  EXPECT_EQ(r.status, 1);
  expect_contains(r.err, {"FIFO"});
}

TEST(HostileCli, ConvertOutputChecks) {
  const fs::path dir = test::temp_dir("hostile_cli_convert");
  CliResult r = run_phinfer("convert -m " + quoted(stories()) + " -o /dev/full --weight-format fp32");
  EXPECT_EQ(r.status, 1);
  expect_contains(r.err, {"/dev/full", "character device"});
  r = run_phinfer("convert -m " + quoted(stories()) + " -o " + quoted(dir / "nodir" / "x.phi") + " --weight-format fp32");
  EXPECT_EQ(r.status, 1);
  expect_contains(r.err, {"does not exist"});
  EXPECT_FALSE(fs::exists(dir / "nodir"));
}

TEST(HostileCli, LogitsPositionsAreBoundedByThePrompt) {
  const std::string m = "logits -m " + quoted(stories()) + " --prompt-ids 1,2,3 --positions ";
  CliResult r = run_phinfer(m + "0,0");
  EXPECT_EQ(r.status, 1);
  expect_contains(r.err, {"--positions", "position 0 is given twice"});
  r = run_phinfer(m + "3");
  EXPECT_EQ(r.status, 1);
  expect_contains(r.err, {"--positions", "outside the 3 ids"});
  std::string many;
  for (int i = 0; i < 5000; ++i) many += (i ? "," : "") + std::string("1");
  const auto start = std::chrono::steady_clock::now();
  r = run_phinfer(m + many);
  EXPECT_EQ(r.status, 1);
  expect_contains(r.err, {"given twice"});
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  r = run_phinfer(m + "2,0");
  ASSERT_EQ(r.status, 0) << r.err;
  const json out = json::parse(r.out);
  EXPECT_EQ(out["logits"].size(), 2u);
  EXPECT_TRUE(out["logits"].contains("2") && out["logits"].contains("0"));
}

}  // namespace
}  // namespace phinfer
