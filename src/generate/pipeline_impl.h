#pragma once
// Pipeline's state, shared with the engine (src/engine) that runs its generations.
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>

#include "backend/backend.h"
#include "grammar/vocabulary.h"
#include "model/phi3.h"
#include "phinfer/chat_template.h"
#include "phinfer/engine.h"
#include "phinfer/pipeline.h"
#include "phinfer/tokenizer.h"

namespace phinfer {

struct Pipeline::Impl {
  std::filesystem::path dir;
  PipelineOptions options;
  std::shared_ptr<const model::Phi3Model> model;
  std::optional<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat_template;
  GenerationDefaults defaults;
  // Speculative decoding's draft model (PipelineOptions::draft_model), or null.
  std::shared_ptr<const model::Phi3Model> draft_model;
  std::filesystem::path draft_dir;  // the file or folder loaded for it
  // The pipeline's own backend and engine, for generate, logits and Generators; `compute`
  // serializes them (an Engine made by a user has its own backend and needs no lock).
  std::mutex compute;
  std::unique_ptr<backend::Backend> backend;
  std::unique_ptr<Engine::Impl> engine;
  mutable std::once_flag vocabulary_once;
  mutable std::shared_ptr<const grammar::Vocabulary> grammar_vocabulary;

  const Tokenizer& tok() const;
  // The vocabulary as grammars see it, built at the first constrained generation.
  std::shared_ptr<const grammar::Vocabulary> vocabulary() const;
  std::vector<int32_t> stop_ids(const GenerationConfig& config) const;
};

// A conversation's KV cache, kept between generations (owned by the backend that made it).
struct KVState::Impl {
  std::unique_ptr<backend::SequenceCache> cache;
  const backend::Backend* owner = nullptr;
  std::vector<int32_t> tokens;  // the tokens whose keys/values the cache holds
};

}  // namespace phinfer
