// phinfer._phinfer: the Python binding of the public C++ API (Pipeline, Generator, Tokenizer).
//
// Threading and signals: every call that computes releases the GIL. A generation runs on a worker thread
// that never touches Python; the calling thread waits for its text with the GIL released, and between
// waits (every few milliseconds, and after each piece of text) takes the GIL to run Python's signal
// handlers (PyErr_CheckSignals). When one raises (Ctrl-C: KeyboardInterrupt), the generation is
// cancelled through GenerationConfig::cancel, which the library checks between prefill chunks and
// tokens, the worker is joined, and the exception propagates: the model is ready for the next call.
// Python callbacks (streamers) therefore always run on the calling thread, with the GIL held.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "phinfer/engine.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace phinfer::python {
namespace {

// The GenerationConfig fields a caller may set by keyword (also the attributes of phinfer.GenerationConfig).
// `cancel` is not one: the binding owns it (Ctrl-C).
const std::vector<std::string>& config_fields() {
  static const std::vector<std::string> fields = {
      "max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
      "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "seed", "return_full_text",
      "skip_prompt", "skip_special_tokens", "extra_eos_token_ids", "ignore_eos", "stop_strings"};
  return fields;
}

// `base` (a GenerationConfig or None) with the keyword arguments applied; an unknown keyword is a TypeError
// naming it, as Python does for unexpected keyword arguments.
GenerationConfig make_config(const py::object& base, const py::kwargs& kwargs) {
  py::object config = base.is_none() ? py::cast(GenerationConfig{}) : py::cast(base.cast<GenerationConfig>());
  for (const auto& [key, value] : kwargs) {
    const std::string name = py::str(key);
    const auto& fields = config_fields();
    if (std::find(fields.begin(), fields.end(), name) == fields.end())
      throw py::type_error("unexpected generation argument '" + name + "'; known: max_new_tokens, do_sample, "
                           "temperature, top_k, top_p, min_p, repetition_penalty, presence_penalty, "
                           "frequency_penalty, logprobs, top_logprobs, seed, return_full_text, skip_prompt, "
                           "skip_special_tokens, extra_eos_token_ids, ignore_eos, stop_strings");
    py::setattr(config, key, value);
  }
  return config.cast<GenerationConfig>();
}

// Chat messages: a list of dicts with string "role" and "content"; other keys reach the template as
// message.<key> (converted through JSON, so they must be JSON-serializable).
std::vector<ChatMessage> to_messages(const py::handle& obj) {
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj))
    throw py::type_error("chat messages must be a list of dicts with 'role' and 'content'");
  std::vector<ChatMessage> messages;
  const py::object dumps = py::module_::import("json").attr("dumps");
  size_t index = 0;
  for (const py::handle item : obj) {
    if (!py::isinstance<py::dict>(item))
      throw py::type_error("chat message " + std::to_string(index) + " is a " +
                           std::string(py::str(item.get_type().attr("__name__"))) + ", expected a dict");
    ChatMessage m;
    for (const auto& [key, value] : item.cast<py::dict>()) {
      const std::string name = py::str(key);
      if (name == "role" || name == "content") {
        if (!py::isinstance<py::str>(value))
          throw py::type_error("chat message " + std::to_string(index) + ": '" + name + "' must be a string");
        (name == "role" ? m.role : m.content) = value.cast<std::string>();
      } else {
        m.extra[name] = nlohmann::json::parse(dumps(value).cast<std::string>());
      }
    }
    if (m.role.empty()) throw py::value_error("chat message " + std::to_string(index) + " has no 'role'");
    messages.push_back(std::move(m));
    ++index;
  }
  return messages;
}

bool is_messages(const py::handle& obj) {
  if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj)) return false;
  const py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
  return py::len(seq) > 0 && py::isinstance<py::dict>(seq[0]);
}

std::string default_cache_dir() {  // as the CLI: $XDG_CACHE_HOME/phinfer or ~/.cache/phinfer
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/phinfer";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/phinfer";
  return ".phinfer-cache";
}

py::array_t<float> to_array(const std::vector<float>& values, std::vector<py::ssize_t> shape) {
  py::array_t<float> out(shape);
  std::memcpy(out.mutable_data(), values.data(), values.size() * sizeof(float));
  return out;
}

// A prompt as given: text (encoded with the tokenizer's special tokens; return_full_text repeats it as
// written) or token ids.
using Prompt = std::variant<std::string, std::vector<int32_t>>;

// One generation on its own thread, read piece by piece by the calling thread (see the file comment).
class TextStream {
 public:
  TextStream(std::shared_ptr<const Pipeline> pipe, Prompt prompt, GenerationConfig config)
      : pipe_(std::move(pipe)), prompt_(std::move(prompt)), config_(std::move(config)) {
    config_.cancel = &cancel_;
    worker_ = std::thread([this] { run(); });
  }
  ~TextStream() {
    try {
      stop();
    } catch (...) {
    }
  }
  TextStream(const TextStream&) = delete;
  TextStream& operator=(const TextStream&) = delete;

  // The next piece of text, or nullopt when the generation has ended. Called with the GIL held.
  // Throws the library's error, or error_already_set when a signal handler raised (after cancelling).
  std::optional<std::string> next() {
    while (true) {
      std::optional<std::string> piece;
      bool ended = false;
      {
        py::gil_scoped_release release;
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(20), [&] { return !pieces_.empty() || finished_; });
        if (!pieces_.empty()) {
          piece = std::move(pieces_.front());
          pieces_.pop_front();
        } else {
          ended = finished_;
        }
      }
      if (PyErr_CheckSignals() != 0) {
        py::error_already_set raised;  // takes the pending exception before the GIL is released again
        stop();
        throw raised;
      }
      if (piece) return piece;
      if (ended) {
        join();
        std::exception_ptr error;
        {
          std::lock_guard<std::mutex> lock(mu_);
          error = std::exchange(error_, nullptr);
        }
        if (error) std::rethrow_exception(error);
        return std::nullopt;
      }
    }
  }

  // Cancels the generation (if still running) and waits for its thread. Called with the GIL held.
  void stop() {
    cancel_ = true;
    join();
  }

  // The result once the generation has ended (next() returned nullopt, or after stop()); nullopt before.
  std::optional<GenerationResult> result() {
    std::lock_guard<std::mutex> lock(mu_);
    return result_;
  }

 private:
  void run() {
    const Streamer streamer = [this](std::string_view text) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        pieces_.emplace_back(text);
      }
      cv_.notify_one();
      return !cancel_.load();
    };
    std::optional<GenerationResult> result;
    std::exception_ptr error;
    try {
      if (const auto* text = std::get_if<std::string>(&prompt_))
        result = pipe_->generate(std::string_view(*text), config_, streamer);
      else
        result = pipe_->generate(std::get<std::vector<int32_t>>(prompt_), config_, streamer);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      result_ = std::move(result);
      error_ = error;
      finished_ = true;
    }
    cv_.notify_one();
  }

  // Safe from several Python threads at once (join_mu_); never waits while holding the GIL.
  void join() {
    std::optional<py::gil_scoped_release> release;
    if (PyGILState_Check()) release.emplace();
    std::lock_guard<std::mutex> lock(join_mu_);
    if (worker_.joinable()) worker_.join();
  }

  std::shared_ptr<const Pipeline> pipe_;
  Prompt prompt_;
  GenerationConfig config_;
  std::atomic<bool> cancel_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> pieces_;
  bool finished_ = false;
  std::optional<GenerationResult> result_;
  std::exception_ptr error_;
  std::mutex join_mu_;
  std::thread worker_;
};

// A tokenizer: the model's (kept alive with it) or one read from a checkpoint folder.
struct PyTokenizer {
  std::shared_ptr<const Tokenizer> tok;
  std::shared_ptr<const ChatTemplate> chat_template;  // null when the tokenizer has none
  std::string source;                                 // for error messages

  static PyTokenizer make(std::shared_ptr<const Tokenizer> tok, std::string source) {
    PyTokenizer t{std::move(tok), nullptr, std::move(source)};
    const std::string tmpl = t.tok->chat_template();
    if (!tmpl.empty()) t.chat_template = std::make_shared<const ChatTemplate>(tmpl);
    return t;
  }

  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    if (!chat_template)
      throw Error(source + ": tokenizer_config.json has no chat_template, so chat messages cannot be formatted");
    return chat_template->render(messages, add_generation_prompt, tok->bos_token(), tok->eos_token());
  }
};

struct PyModel {
  std::shared_ptr<const Pipeline> pipe;

  // Text, token ids or chat messages (the chat template applied, with the generation prompt).
  Prompt prompt_of(const py::handle& prompt) const {
    if (py::isinstance<py::str>(prompt)) return prompt.cast<std::string>();
    if (is_messages(prompt)) {
      const std::vector<ChatMessage> messages = to_messages(prompt);
      py::gil_scoped_release release;
      return pipe->encode_chat(messages, /*add_generation_prompt=*/true);
    }
    try {
      return prompt.cast<std::vector<int32_t>>();
    } catch (const py::cast_error&) {
      throw py::type_error("prompt must be a str, a list of token ids or a list of chat message dicts, found " +
                           std::string(py::str(prompt.get_type().attr("__name__"))));
    }
  }

  std::unique_ptr<TextStream> stream(const py::handle& prompt, const py::object& config, const py::kwargs& kwargs) const {
    return std::make_unique<TextStream>(pipe, prompt_of(prompt), make_config(config, kwargs));
  }
};

py::dict stats_dict(const GenerationStats& s) {
  return py::dict("prompt_tokens"_a = s.prompt_tokens, "reused_prompt_tokens"_a = s.reused_prompt_tokens,
                  "generated_tokens"_a = s.generated_tokens, "ttft_ms"_a = s.ttft_ms,
                  "decode_tokens_per_s"_a = s.decode_tokens_per_s);
}

py::list logprobs_list(const std::vector<TokenLogprobs>& all) {
  py::list out;
  for (const auto& t : all) {
    py::list top;
    for (const auto& alt : t.top) top.append(py::make_tuple(alt.id, alt.logprob));
    out.append(py::dict("id"_a = t.id, "logprob"_a = t.logprob, "top"_a = top));
  }
  return out;
}

py::object json_to_python(const nlohmann::json& j) {
  return py::module_::import("json").attr("loads")(j.dump());
}

PipelineOptions pipeline_options(const std::optional<std::string>& weight_format, const std::string& device,
                                 int threads, const std::string& kv_cache, const std::string& sliding_window,
                                 const std::optional<std::filesystem::path>& cache_dir,
                                 const std::optional<int>& group_size, bool symmetric) {
  PipelineOptions o;
  o.device = device;
  o.threads = threads;
  o.kv_cache_dtype = kv_cache;
  o.sliding_window = sliding_window;
  if (weight_format) {
    ConvertOptions c;
    c.weight_format = *weight_format;
    c.group_size = group_size;
    c.symmetric = symmetric;
    c.threads = threads;
    c.validate();
    o.convert = c;
    o.cache_dir = cache_dir ? *cache_dir : std::filesystem::path(default_cache_dir());
  } else if (group_size || symmetric) {
    throw Error("group_size and symmetric apply to a conversion: give weight_format too");
  }
  return o;
}

}  // namespace
}  // namespace phinfer::python

PYBIND11_MODULE(_phinfer, m) {
  using namespace phinfer;
  using namespace phinfer::python;
  m.doc() = "phinfer: exact, fast inference of Microsoft's Phi-3 family (C++ core; see the phinfer package)";

  py::register_exception<Error>(m, "Error", PyExc_RuntimeError);

  py::class_<GenerationConfig>(m, "GenerationConfig", R"doc(
Generation settings, with Hugging Face's defaults (greedy unless do_sample). Every field may be given as a
keyword argument: GenerationConfig(max_new_tokens=64, do_sample=True, temperature=0.7, seed=1).)doc")
      .def(py::init([](const py::kwargs& kwargs) { return make_config(py::none(), kwargs); }))
      .def_readwrite("max_new_tokens", &GenerationConfig::max_new_tokens)
      .def_readwrite("do_sample", &GenerationConfig::do_sample)
      .def_readwrite("temperature", &GenerationConfig::temperature)
      .def_readwrite("top_k", &GenerationConfig::top_k)
      .def_readwrite("top_p", &GenerationConfig::top_p)
      .def_readwrite("min_p", &GenerationConfig::min_p)
      .def_readwrite("repetition_penalty", &GenerationConfig::repetition_penalty)
      .def_readwrite("presence_penalty", &GenerationConfig::presence_penalty)
      .def_readwrite("frequency_penalty", &GenerationConfig::frequency_penalty)
      .def_readwrite("logprobs", &GenerationConfig::logprobs)
      .def_readwrite("top_logprobs", &GenerationConfig::top_logprobs)
      .def_readwrite("seed", &GenerationConfig::seed)
      .def_readwrite("return_full_text", &GenerationConfig::return_full_text)
      .def_readwrite("skip_prompt", &GenerationConfig::skip_prompt)
      .def_readwrite("skip_special_tokens", &GenerationConfig::skip_special_tokens)
      .def_readwrite("extra_eos_token_ids", &GenerationConfig::extra_eos_token_ids)
      .def_readwrite("ignore_eos", &GenerationConfig::ignore_eos)
      .def_readwrite("stop_strings", &GenerationConfig::stop_strings)
      .def("__repr__", [](const py::object& self) {
        std::string s = "GenerationConfig(";
        for (const auto& f : config_fields()) {
          if (s.back() != '(') s += ", ";
          s += f + "=" + std::string(py::repr(self.attr(f.c_str())));
        }
        return s + ")";
      });

  py::class_<GenerationResult>(m, "GenerationResult", "What one generation produced.")
      .def_readonly("prompt_ids", &GenerationResult::prompt_ids)
      .def_readonly("output_ids", &GenerationResult::output_ids, "generated ids, including the eos that stopped it")
      .def_readonly("text", &GenerationResult::text)
      .def_readonly("finish_reason", &GenerationResult::finish_reason,
                    "'eos', 'stop' (a stop string), 'length' or 'stopped' (cancelled)")
      .def_property_readonly("logprobs", [](const GenerationResult& r) { return logprobs_list(r.logprobs); },
                             "with logprobs=True: one {'id', 'logprob', 'top': [(id, logprob)]} per output id")
      .def_property_readonly("stats", [](const GenerationResult& r) { return stats_dict(r.stats); })
      .def("__repr__", [](const GenerationResult& r) {
        return "GenerationResult(output_ids=<" + std::to_string(r.output_ids.size()) + " ids>, finish_reason='" +
               r.finish_reason + "', text=" + std::string(py::repr(py::str(r.text))) + ")";
      });

  py::class_<TextStream>(m, "TextStream", R"doc(
Iterator over the text of one running generation (from Model.stream). Each item is text that is final
(never a broken UTF-8 sequence). After the last item, .result holds the GenerationResult. close() (or
leaving a `with` block, or dropping the iterator) cancels the generation. Ctrl-C while iterating cancels
it and raises KeyboardInterrupt.)doc")
      .def("__iter__", [](TextStream& s) -> TextStream& { return s; })
      .def("__next__", [](TextStream& s) {
        std::optional<std::string> piece = s.next();
        if (!piece) throw py::stop_iteration();
        return py::str(*piece);
      })
      .def_property_readonly("result", &TextStream::result)
      .def("close", &TextStream::stop)
      .def("__enter__", [](TextStream& s) -> TextStream& { return s; })
      .def("__exit__", [](TextStream& s, const py::args&) { s.stop(); });

  py::class_<PyTokenizer>(m, "Tokenizer", R"doc(
A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json): Model.tokenizer, or
Tokenizer.from_pretrained(folder). Thread-safe.)doc")
      .def_static("from_pretrained", [](const std::filesystem::path& dir) {
        py::gil_scoped_release release;
        return PyTokenizer::make(std::make_shared<const Tokenizer>(Tokenizer::from_dir(dir)), dir.string());
      }, "folder"_a, "Reads folder/tokenizer.json and folder/tokenizer_config.json.")
      .def("encode", [](const PyTokenizer& t, const std::string& text, bool add_special_tokens) {
        py::gil_scoped_release release;
        return t.tok->encode(text, add_special_tokens);
      }, "text"_a, "add_special_tokens"_a = true, "Token ids of text (a list of int).")
      .def("decode", [](const PyTokenizer& t, const std::vector<int32_t>& ids, bool skip_special_tokens) {
        std::string text;
        {
          py::gil_scoped_release release;
          text = t.tok->decode(ids, skip_special_tokens);
        }
        return py::str(text);
      }, "ids"_a, "skip_special_tokens"_a = false)
      .def("__call__", [](const PyTokenizer& t, const std::string& text, bool add_special_tokens) {
        std::vector<int32_t> ids;
        {
          py::gil_scoped_release release;
          ids = t.tok->encode(text, add_special_tokens);
        }
        return py::dict("input_ids"_a = ids, "attention_mask"_a = std::vector<int>(ids.size(), 1));
      }, "text"_a, "add_special_tokens"_a = true, "As Hugging Face: {'input_ids': [...], 'attention_mask': [...]}.")
      .def("apply_chat_template", [](const PyTokenizer& t, const py::object& messages, bool tokenize,
                                     bool add_generation_prompt) -> py::object {
        const std::vector<ChatMessage> msgs = to_messages(messages);
        std::string text;
        std::vector<int32_t> ids;
        {
          py::gil_scoped_release release;
          text = t.render(msgs, add_generation_prompt);
          if (tokenize) ids = t.tok->encode(text, /*add_special_tokens=*/false);
        }
        if (tokenize) return py::cast(ids);
        return py::str(text);
      }, "messages"_a, "tokenize"_a = true, "add_generation_prompt"_a = false, R"doc(
The model's chat template applied to messages (a list of {'role': ..., 'content': ...} dicts), with
Hugging Face's defaults: tokenize=True gives token ids, tokenize=False the text; add_generation_prompt=True
appends the assistant's turn header (what a prompt for generation needs).)doc")
      .def("token_to_id", [](const PyTokenizer& t, const std::string& token) { return t.tok->token_to_id(token); })
      .def("id_to_token", [](const PyTokenizer& t, int32_t id) { return py::str(t.tok->id_to_token(id)); })
      .def_property_readonly("vocab_size", [](const PyTokenizer& t) { return t.tok->vocab_size(); })
      .def_property_readonly("bos_token", [](const PyTokenizer& t) { return t.tok->bos_token(); })
      .def_property_readonly("eos_token", [](const PyTokenizer& t) { return t.tok->eos_token(); })
      .def_property_readonly("bos_token_id", [](const PyTokenizer& t) { return t.tok->bos_id(); })
      .def_property_readonly("eos_token_id", [](const PyTokenizer& t) { return t.tok->eos_id(); })
      .def_property_readonly("chat_template", [](const PyTokenizer& t) { return t.tok->chat_template(); });

  py::class_<Generator>(m, "Generator", R"doc(
One token stream driven step by step (like onnxruntime-genai's Generator): append_tokens, logits,
generate_next_token, is_done, rewind_to. One thread at a time.)doc")
      .def(py::init([](const PyModel& model, const py::object& config, const py::kwargs& kwargs) {
             GenerationConfig gc = make_config(config, kwargs);
             return std::make_unique<Generator>(*model.pipe, gc);
           }),
           "model"_a, "config"_a = py::none(), py::keep_alive<1, 2>())
      .def("append_tokens", [](Generator& g, const std::vector<int32_t>& ids) {
        py::gil_scoped_release release;
        g.append_tokens(ids);
      }, "ids"_a)
      .def("logits", [](const Generator& g) {
        const std::span<const float> l = g.logits();
        return to_array(std::vector<float>(l.begin(), l.end()), {static_cast<py::ssize_t>(l.size())});
      }, "Logits of the last appended token: float32 array [vocab] (empty before any token).")
      .def("generate_next_token", [](Generator& g) {
        py::gil_scoped_release release;
        return g.generate_next_token();
      })
      .def("is_done", &Generator::is_done)
      .def("rewind_to", &Generator::rewind_to, "length"_a)
      .def_property_readonly("tokens", &Generator::tokens);

  py::class_<PyModel>(m, "Model", R"doc(
A loaded model: a Hugging Face checkpoint folder or a phinfer model file.

Model(path, weight_format=None, device="cpu", threads=0, kv_cache="f32", sliding_window="auto",
      cache_dir=None, group_size=None, symmetric=False)

weight_format (fp32, fp16, bf16, int8 or int4) converts a Hugging Face folder once and caches the result
under cache_dir (default $XDG_CACHE_HOME/phinfer or ~/.cache/phinfer); None runs the weights as stored.
Thread-safe: calls from several threads run one at a time.)doc")
      .def(py::init([](const std::filesystem::path& path, const std::optional<std::string>& weight_format,
                       const std::string& device, int threads, const std::string& kv_cache,
                       const std::string& sliding_window, const std::optional<std::filesystem::path>& cache_dir,
                       const std::optional<int>& group_size, bool symmetric) {
             const PipelineOptions o = pipeline_options(weight_format, device, threads, kv_cache, sliding_window,
                                                        cache_dir, group_size, symmetric);
             py::gil_scoped_release release;
             return PyModel{std::make_shared<const Pipeline>(Pipeline::load(path, o))};
           }),
           "path"_a, "weight_format"_a = py::none(), "device"_a = "cpu", "threads"_a = 0, "kv_cache"_a = "f32",
           "sliding_window"_a = "auto", "cache_dir"_a = py::none(), "group_size"_a = py::none(),
           "symmetric"_a = false)
      .def_property_readonly("path", [](const PyModel& m) { return m.pipe->model_path(); },
                             "the file or folder actually loaded (the cached conversion with weight_format)")
      .def_property_readonly("config", [](const PyModel& m) { return json_to_python(m.pipe->config().to_json()); },
                             "the model's config (config.json fields) as a dict")
      .def_property_readonly("tokenizer", [](const PyModel& m) {
        const Tokenizer& tok = m.pipe->tokenizer();
        return PyTokenizer::make(std::shared_ptr<const Tokenizer>(m.pipe, &tok), m.pipe->model_path().string());
      })
      .def("stop_ids", [](const PyModel& m) { return m.pipe->stop_ids({}); },
           "the ids that end a generation (eos ids of the checkpoint and <|end|>)")
      .def("stream", &PyModel::stream, "prompt"_a, "config"_a = py::none(), R"doc(
Starts a generation and returns an iterator over its text (a TextStream): `for text in model.stream(...)`.
prompt: text, token ids, or chat messages (list of dicts; the chat template is applied). config: a
GenerationConfig; keyword arguments override its fields (max_new_tokens=..., do_sample=..., ...).)doc")
      .def("generate", [](const PyModel& m, const py::handle& prompt, const py::object& config,
                          const py::object& streamer, const py::kwargs& kwargs) {
        std::unique_ptr<TextStream> s = m.stream(prompt, config, kwargs);
        while (std::optional<std::string> piece = s->next()) {
          if (streamer.is_none()) continue;
          try {
            streamer(py::str(*piece));
          } catch (...) {
            s->stop();
            throw;
          }
        }
        if (!streamer.is_none() && py::hasattr(streamer, "end")) streamer.attr("end")();
        return *s->result();  // set: next() returned nullopt, so the generation ended without an error
      }, "prompt"_a, "config"_a = py::none(), "streamer"_a = py::none(), R"doc(
Generates to the end and returns a GenerationResult (prompt_ids, output_ids, text, finish_reason, stats).
prompt and config as for stream(). streamer: a callable that receives each piece of text as soon as it
is final; its end() method, if any, is called once at the end (phinfer.TextStreamer fits).)doc")
      .def("logits", [](const PyModel& m, const std::vector<int32_t>& ids, const py::object& positions) {
        std::vector<int64_t> pos;
        const bool last_only = positions.is_none();
        if (last_only) {
          if (!ids.empty()) pos.push_back(static_cast<int64_t>(ids.size()) - 1);
        } else if (py::isinstance<py::str>(positions)) {
          if (positions.cast<std::string>() != "all")
            throw py::value_error("positions: expected None (the last), 'all' or a list of positions");
          for (size_t i = 0; i < ids.size(); ++i) pos.push_back(static_cast<int64_t>(i));
        } else {
          pos = positions.cast<std::vector<int64_t>>();
          if (pos.empty()) throw py::value_error("positions: the list is empty");
        }
        std::vector<float> values;
        {
          py::gil_scoped_release release;
          values = m.pipe->logits(ids, pos);
        }
        const auto vocab = static_cast<py::ssize_t>(values.size() / pos.size());
        if (last_only) return to_array(values, {vocab});
        return to_array(values, {static_cast<py::ssize_t>(pos.size()), vocab});
      }, "ids"_a, "positions"_a = py::none(), R"doc(
One forward pass over token ids; the logits as a float32 NumPy array: [vocab] for the last position
(positions=None), [len(positions), vocab] for a list of positions, [len(ids), vocab] for 'all'.)doc");
}
