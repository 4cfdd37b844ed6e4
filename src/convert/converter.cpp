#include "phinfer/convert.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "format/file_io.h"
#include "format/json_file.h"
#include "format/native_file.h"
#include "format/safetensors.h"
#include "kernels/quant.h"
#include "model/gguf_weights.h"
#include "model/weights.h"
#include "tokenizer/gguf_vocab.h"
#include "phinfer/config.h"
#include "phinfer/error.h"

namespace phinfer {
namespace {

using kernels::WeightFormat;
using nlohmann::json;
using model::TensorSpec;

// A format name of the registry (kernels::weight_formats), or null.
const kernels::FormatInfo* named_format(const std::string& name) {
  const kernels::FormatInfo* f = kernels::find_format_by_name(name);
  return f && name == f->name ? f : nullptr;  // legacy file tags are not option values
}

WeightFormat to_kernel_format(const std::string& f) { return named_format(f)->format; }

std::string file_format_name(WeightFormat f) { return kernels::format_info(f).name; }

// A planned tensor: where its values come from and how it will be stored.
struct Planned {
  TensorSpec spec;
  const format::TensorView* source = nullptr;
  WeightFormat format = WeightFormat::F32;
  int group_size = -1;
  bool symmetric = true;
  double rel_rmse = 0;

  int64_t rows() const { return spec.shape[0]; }
  int64_t cols() const { return spec.shape.size() > 1 ? spec.shape[1] : 1; }
  uint64_t bytes() const {
    kernels::WeightMatrix m{format, rows(), cols(), nullptr, group_size, symmetric};
    return m.bytes();
  }
};

// "source": each tensor in the format the checkpoint stores it in (see ConvertOptions).
constexpr const char* kSourceFormat = "source";

// A stored matrix of the loaded checkpoint by its schema entry (norms are returned as fp32 rows).
kernels::WeightMatrix stored_matrix(const model::ModelWeights& w, const TensorSpec& spec, const std::vector<float>** norm) {
  *norm = nullptr;
  if (spec.kind == TensorSpec::Kind::Embedding) return w.embed_tokens;
  if (spec.kind == TensorSpec::Kind::LmHead) return w.lm_head;
  if (spec.name == "model.norm.weight") {
    *norm = &w.final_norm;
    return {};
  }
  const size_t dot = spec.name.find('.', 13);
  const auto& L = w.layers[std::stoul(spec.name.substr(13, dot - 13))];
  const std::string field = spec.name.substr(dot + 1);
  if (field == "input_layernorm.weight") *norm = &L.input_norm;
  if (field == "post_attention_layernorm.weight") *norm = &L.post_attention_norm;
  if (*norm) return {};
  return field == "self_attn.qkv_proj.weight" ? L.qkv_proj
         : field == "self_attn.o_proj.weight" ? L.o_proj
         : field == "mlp.gate_up_proj.weight" ? L.gate_up_proj
                                              : L.down_proj;
}

kernels::QuantParams quant_params(const Planned& p, bool plain) {
  return {p.format, p.group_size, p.symmetric, plain ? kernels::QuantMethod::MinMax : kernels::QuantMethod::Search};
}

// Float formats: the stored values; quantized: the packed bytes.
kernels::AlignedBytes encode(const Planned& p, const std::vector<float>& w, bool plain, kernels::ThreadPool& pool,
                             double* rel_rmse) {
  kernels::AlignedBytes out(p.bytes());
  *rel_rmse = 0;
  const size_t n = w.size();
  switch (p.format) {
    case WeightFormat::F32:
      std::memcpy(out.data(), w.data(), n * 4);
      break;
    case WeightFormat::F16: {
      auto* dst = reinterpret_cast<uint16_t*>(out.data());
      for (size_t i = 0; i < n; ++i) dst[i] = f32_to_f16(w[i]);
      break;
    }
    case WeightFormat::BF16: {
      auto* dst = reinterpret_cast<uint16_t*>(out.data());
      for (size_t i = 0; i < n; ++i) dst[i] = f32_to_bf16(w[i]);
      break;
    }
    case WeightFormat::Int8:
    case WeightFormat::Int4:
      *rel_rmse = kernels::quantize_into(w.data(), p.rows(), p.cols(), quant_params(p, plain), out.data(), &pool).rel_rmse;
      break;
  }
  return out;
}

std::string human_bytes(double b) {
  char buf[32];
  if (b >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else if (b >= 1e6) std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  else std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  return buf;
}

uint64_t fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

}  // namespace

void ConvertOptions::validate() const {
  if (!named_format(weight_format) && weight_format != kSourceFormat)
    throw Error("weight format: expected " + kernels::format_names() + " or source, found '" + weight_format + "'");
  if (group_size && *group_size != -1 && (*group_size < 1 || *group_size > kernels::kMaxGroupSize))
    throw Error("group size: expected -1 (per output channel) or 1.." + std::to_string(kernels::kMaxGroupSize) +
                ", found " + std::to_string(*group_size));
  if (!(ratio > 0.0 && ratio <= 1.0)) throw Error("ratio: expected a number in (0, 1], found " + std::to_string(ratio));
  if (ratio < 1.0 && weight_format != "int4")
    throw Error("ratio: applies to the int4 weight format only, found weight format '" + weight_format + "'");
  if (backup_precision != "int8" && backup_precision != "fp16")
    throw Error("backup precision: expected int8 or fp16, found '" + backup_precision + "'");
  for (const auto* f : {&embedding_format, &lm_head_format})
    if (*f != "auto" && !named_format(*f))
      throw Error("embedding/lm_head format: expected auto, " + kernels::format_names() + ", found '" + *f + "'");
}

std::string ConvertOptions::key() const {
  std::ostringstream s;
  s << "format=" << weight_format << ";group=" << (group_size ? std::to_string(*group_size) : "default")
    << ";sym=" << symmetric << ";ratio=" << ratio << ";backup=" << backup_precision << ";embedding=" << embedding_format
    << ";lm_head=" << lm_head_format << ";plain=" << plain_rounding << ";version=" << format::kNativeVersion;
  return s.str();
}

ConvertSummary convert(const std::filesystem::path& hf_dir, const std::filesystem::path& out, const ConvertOptions& o) {
  o.validate();
  // A bad output path fails now, not after the conversion.
  format::check_output_path(out);
  // The source: a Hugging Face folder, or a GGUF file (dequantized exactly, tensor by tensor).
  std::optional<format::GgufFile> gguf;
  if (format::is_gguf_file(hf_dir)) gguf = format::GgufFile::open(hf_dir);
  // Loading the model validates config and every tensor before any work is done.
  const bool keep_source = o.weight_format == kSourceFormat;
  std::optional<model::LoadedWeights> loaded;  // GGUF: only when its stored matrices are kept
  if (!gguf || keep_source) loaded = model::LoadedWeights::open(hf_dir);
  const ModelConfig cfg = loaded ? loaded->config() : model::config_from_gguf(*gguf);
  if (!loaded)
    for (const TensorSpec& spec : model::expected_tensors(cfg)) model::require_gguf_tensor(*gguf, spec);
  const auto checkpoint = gguf ? format::SafetensorsCheckpoint() : format::SafetensorsCheckpoint::open(hf_dir);
  auto load_f32 = [&](const Planned& p) {
    return gguf ? model::gguf_tensor_f32(*gguf, p.spec) : model::to_f32(model::as_matrix(*p.source));
  };
  auto release = [&](const Planned& p) {
    if (p.source) checkpoint.release(*p.source);
  };
  kernels::ThreadPool pool(o.threads);

  // 1. Choose each tensor's format.
  // int4 groups default to 128, int8 to one scale per output channel; an explicit --group-size applies
  // to the main format only (the int8 backup of a mixed model stays per channel, as in NNCF).
  auto plan_format = [&](Planned& p, const std::string& fmt, bool symmetric, bool main_format) {
    p.format = to_kernel_format(fmt);
    p.symmetric = symmetric;
    p.group_size = -1;
    if (kernels::is_quantized(p.format)) p.group_size = main_format && o.group_size ? *o.group_size : (fmt == "int4" ? 128 : -1);
  };
  const std::string side_auto = o.weight_format == "int4" ? (o.backup_precision == "fp16" ? "fp16" : "int8") : o.weight_format;
  std::vector<Planned> plan;
  for (const TensorSpec& spec : model::expected_tensors(cfg)) {
    Planned p;
    p.spec = spec;
    p.source = checkpoint.find(spec.name);
    if (keep_source) {
      const std::vector<float>* norm;
      const kernels::WeightMatrix m = stored_matrix(loaded->weights(), spec, &norm);
      if (!norm) {
        p.format = m.format;
        p.group_size = m.group_size;
        p.symmetric = m.symmetric;
      }
      plan.push_back(p);
      continue;
    }
    switch (spec.kind) {
      case TensorSpec::Kind::Norm: plan_format(p, "fp32", true, false); break;
      case TensorSpec::Kind::Linear: plan_format(p, o.weight_format, o.symmetric, true); break;
      case TensorSpec::Kind::Embedding: {
        const std::string f = o.embedding_format == "auto" ? side_auto : o.embedding_format;
        plan_format(p, f, o.symmetric, f == o.weight_format);
        break;
      }
      case TensorSpec::Kind::LmHead: {
        const std::string f = o.lm_head_format == "auto" ? side_auto : o.lm_head_format;
        plan_format(p, f, o.symmetric, f == o.weight_format);
        break;
      }
    }
    plan.push_back(p);
  }
  uint64_t total_weights = 0, done_weights = 0;
  for (const auto& p : plan) total_weights += static_cast<uint64_t>(p.rows() * p.cols());
  const bool mixed = o.weight_format == "int4" && o.ratio < 1.0;
  if (mixed) total_weights *= 2;  // the error pass reads the layers once more
  auto progress = [&](const std::string& name) {
    if (o.progress) o.progress(static_cast<double>(done_weights) / static_cast<double>(total_weights), name);
  };

  // 2. Mixed precision, data-free: layers with the largest int4 error go to the backup precision
  //    until the int4 share of the layers' weights is at most `ratio` (NNCF's weight-error criterion).
  if (mixed) {
    std::vector<size_t> linear;
    uint64_t linear_weights = 0;
    for (size_t i = 0; i < plan.size(); ++i)
      if (plan[i].spec.kind == TensorSpec::Kind::Linear) {
        linear.push_back(i);
        linear_weights += static_cast<uint64_t>(plan[i].rows() * plan[i].cols());
      }
    for (size_t i : linear) {
      progress(plan[i].spec.name);
      std::vector<float> w = load_f32(plan[i]);
      release(plan[i]);
      kernels::AlignedBytes scratch(plan[i].bytes());
      plan[i].rel_rmse = kernels::quantize_into(w.data(), plan[i].rows(), plan[i].cols(), quant_params(plan[i], o.plain_rounding),
                                                scratch.data(), &pool)
                             .rel_rmse;
      done_weights += w.size();
    }
    std::stable_sort(linear.begin(), linear.end(), [&](size_t a, size_t b) { return plan[a].rel_rmse < plan[b].rel_rmse; });
    uint64_t int4_weights = 0;
    for (size_t i : linear) {
      const auto n = static_cast<uint64_t>(plan[i].rows() * plan[i].cols());
      if (static_cast<double>(int4_weights + n) <= o.ratio * static_cast<double>(linear_weights) + 0.5) {
        int4_weights += n;
      } else {
        plan_format(plan[i], o.backup_precision, /*symmetric=*/o.backup_precision != "int8", false);
      }
    }
  }

  // 3. Write: metadata first, then each tensor converted and streamed.
  json meta;
  meta["format"] = "phinfer";
  json tokenizer = json::object();
  if (gguf) {
    meta["config"] = cfg.to_json();
    const GenerationDefaults g = model::generation_defaults_from_gguf(*gguf);
    json gc = json::object();
    if (g.bos_token_id) gc["bos_token_id"] = *g.bos_token_id;
    if (!g.eos_token_ids.empty()) gc["eos_token_id"] = g.eos_token_ids;
    if (g.pad_token_id) gc["pad_token_id"] = *g.pad_token_id;
    meta["generation_config"] = gc;
    if (gguf->find("tokenizer.ggml.model")) {
      const tok::TokenizerFiles files = tok::tokenizer_files_from_gguf(*gguf);
      tokenizer["tokenizer.json"] = files.tokenizer_json;
      tokenizer["tokenizer_config.json"] = files.tokenizer_config_json;
    }
  } else {
    meta["config"] = format::read_json_file(hf_dir / "config.json");
    meta["generation_config"] = std::filesystem::exists(hf_dir / "generation_config.json")
                                    ? format::read_json_file(hf_dir / "generation_config.json")
                                    : json(nullptr);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      if (std::filesystem::exists(hf_dir / f)) tokenizer[f] = format::read_whole_file(hf_dir / f);
  }
  meta["tokenizer"] = tokenizer;
  meta["quantization"] = {{"weight_format", o.weight_format},
                          {"group_size", o.group_size ? *o.group_size : (o.weight_format == "int4" ? 128 : -1)},
                          {"symmetric", o.symmetric},
                          {"ratio", o.ratio},
                          {"backup_precision", o.backup_precision},
                          {"embedding_format", o.embedding_format},
                          {"lm_head_format", o.lm_head_format},
                          {"method", o.plain_rounding ? "minmax" : "search"}};
  std::vector<format::NativeFileWriter::TensorDecl> decls;
  for (const auto& p : plan) {
    json info = {{"format", file_format_name(p.format)}, {"shape", p.spec.shape}};
    if (kernels::is_quantized(p.format)) {
      info["group_size"] = p.group_size;
      info["symmetric"] = p.symmetric;
    }
    decls.push_back({p.spec.name, info, p.bytes()});
  }
  format::NativeFileWriter writer(out, meta, decls);
  ConvertSummary summary;
  uint64_t weight_bits = 0, matrix_weights = 0;
  done_weights = mixed ? total_weights / 2 : 0;
  for (auto& p : plan) {
    progress(p.spec.name);
    double err = 0;
    if (keep_source) {
      const std::vector<float>* norm;
      const kernels::WeightMatrix m = stored_matrix(loaded->weights(), p.spec, &norm);
      writer.write(norm ? std::as_bytes(std::span<const float>(*norm)) : std::span<const std::byte>(m.data, m.bytes()));
    } else {
      std::vector<float> w = load_f32(p);
      release(p);
      kernels::AlignedBytes bytes = encode(p, w, o.plain_rounding, pool, &err);
      writer.write(std::span<const std::byte>(bytes.data(), p.bytes()));
    }
    p.rel_rmse = err;
    done_weights += static_cast<uint64_t>(p.rows() * p.cols());
    summary.tensors.push_back({p.spec.name, file_format_name(p.format), p.group_size, p.symmetric, p.rows(), p.cols(), err, p.bytes()});
    if (p.spec.kind != TensorSpec::Kind::Norm) {
      weight_bits += p.bytes() * 8;
      matrix_weights += static_cast<uint64_t>(p.rows() * p.cols());
    }
  }
  progress("done");
  writer.finish();
  summary.file_bytes = std::filesystem::file_size(out);
  summary.bits_per_weight = matrix_weights ? static_cast<double>(weight_bits) / static_cast<double>(matrix_weights) : 0;

  if (o.report) {
    // One row per (kind, format): how many tensors, weights, bytes, and the mean relative error.
    struct Row {
      int count = 0;
      uint64_t weights = 0, bytes = 0;
      double err = 0;
    };
    std::map<std::string, Row> rows;
    for (size_t i = 0; i < plan.size(); ++i) {
      const auto& p = plan[i];
      const char* kind = p.spec.kind == TensorSpec::Kind::Linear      ? "layers"
                         : p.spec.kind == TensorSpec::Kind::Embedding ? "embedding"
                         : p.spec.kind == TensorSpec::Kind::LmHead    ? "lm_head"
                                                                      : "norms";
      std::string fmt = summary.tensors[i].format;
      if (kernels::is_quantized(p.format))
        fmt += (p.group_size < 0 ? " per-channel" : " g" + std::to_string(p.group_size)) + (p.symmetric ? " sym" : " asym");
      Row& r = rows[std::string(kind) + "|" + fmt];
      r.count++;
      r.weights += static_cast<uint64_t>(p.rows() * p.cols());
      r.bytes += p.bytes();
      r.err += summary.tensors[i].rel_rmse;
    }
    char line[256];
    std::snprintf(line, sizeof line, "%-10s %-22s %7s %12s %12s %10s", "tensors", "format", "count", "weights", "bytes", "rel.err");
    o.report(line);
    for (const auto& [key, r] : rows) {
      const auto bar = key.find('|');
      std::snprintf(line, sizeof line, "%-10s %-22s %7d %12llu %12s %10.5f", key.substr(0, bar).c_str(), key.substr(bar + 1).c_str(),
                    r.count, static_cast<unsigned long long>(r.weights), human_bytes(static_cast<double>(r.bytes)).c_str(),
                    r.err / r.count);
      o.report(line);
    }
    std::snprintf(line, sizeof line, "file %s, %.3f bits per weight", human_bytes(static_cast<double>(summary.file_bytes)).c_str(),
                  summary.bits_per_weight);
    o.report(line);
  }
  return summary;
}

namespace {

// Partial files of a killed conversion are removed once they are this old and their process is gone.
constexpr std::chrono::seconds kStalePartialAge{60};

// The file's identity for the verified marker: any rewrite or replacement changes it.
std::string file_stamp(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return "";
  return "size " + std::to_string(st.st_size) + " mtime " + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec) + " inode " + std::to_string(st.st_ino) + "\n";
}

std::filesystem::path verified_marker(const std::filesystem::path& p) { return p.string() + ".verified"; }

// A cached model file is trusted only after one full check of its tensor CRCs; the marker beside
// it records the file as it was then, so the check runs once, and again after any change.
bool cached_file_is_sound(const std::filesystem::path& path) {
  if (!format::is_native_file(path)) return false;
  const std::string stamp = file_stamp(path);
  try {
    if (format::read_whole_file(verified_marker(path), 4096) == stamp) return true;
  } catch (const Error&) {  // no marker yet (or an unreadable one): check the file
  }
  try {
    format::NativeFile::open(path).verify();
  } catch (const Error&) {
    return false;
  }
  try {
    format::write_whole_file(verified_marker(path), stamp);
  } catch (const Error&) {  // a read-only cache: the file is sound, it is just checked again next time
  }
  return true;
}

// The cache key's hash of one source file: name, size, modification time, first and last MiB.
uint64_t hash_source_file(const std::filesystem::path& f, uint64_t h) {
  struct stat st {};
  const format::FileDescriptor fd = format::open_regular_file(f, &st);
  const std::string name = f.filename().string();
  const auto size = static_cast<uint64_t>(st.st_size);
  const auto mtime = std::filesystem::last_write_time(f).time_since_epoch().count();
  h = fnv1a(name.data(), name.size(), h);
  h = fnv1a(&size, sizeof size, h);
  h = fnv1a(&mtime, sizeof mtime, h);
  // The first and last MiB catch a replaced file whose size and time happen to match.
  std::vector<char> buf(1 << 20);
  auto hash_at = [&](uint64_t offset) {
    const ssize_t n = ::pread(fd.get(), buf.data(), buf.size(), static_cast<off_t>(offset));
    if (n < 0) throw Error(f.string() + ": read failed: " + std::strerror(errno));
    h = fnv1a(buf.data(), static_cast<size_t>(n), h);
  };
  hash_at(0);
  if (size > buf.size()) hash_at(size - buf.size());
  return h;
}

}  // namespace

std::filesystem::path cached_conversion(const std::filesystem::path& hf_dir, const ConvertOptions& options,
                                        const std::filesystem::path& cache_dir, bool* converted) {
  options.validate();
  uint64_t h = 0xcbf29ce484222325ull;
  const std::string key = options.key();
  h = fnv1a(key.data(), key.size(), h);
  std::vector<std::filesystem::path> files;
  if (format::is_gguf_file(hf_dir)) {
    files.push_back(hf_dir);
  } else {
    for (const auto& e : std::filesystem::directory_iterator(hf_dir)) {
      const auto ext = e.path().extension().string();
      if (ext == ".json" || ext == ".safetensors") files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) h = hash_source_file(f, h);  // a FIFO or device among them is an error
  char name[64];
  std::snprintf(name, sizeof name, "%016llx.phi", static_cast<unsigned long long>(h));
  const auto path = cache_dir / name;
  if (converted) *converted = false;
  // The cache folder is the library's own: it may be created (an output path given by a user never is).
  std::filesystem::create_directories(cache_dir);
  format::remove_stale_partials(cache_dir, kStalePartialAge);
  if (cached_file_is_sound(path)) return path;
  // Missing or corrupt: (re)build it. The old marker must not vouch for the new file.
  std::error_code ec;
  std::filesystem::remove(verified_marker(path), ec);
  convert(hf_dir, path, options);
  if (converted) *converted = true;
  return path;
}

}  // namespace phinfer
