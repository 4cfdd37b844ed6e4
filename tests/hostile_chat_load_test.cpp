// Hostile conversation files for ChatSession::load_json and `phinfer chat`'s /load and /save:
// deeply nested fields, directories, FIFOs, missing folders. Each is refused with an error and
// the conversation goes on unchanged; /save never leaves a half-written file or replaces a
// non-regular one.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "phinfer/chat_session.h"
#include "phinfer/chat_template.h"
#include "phinfer/error.h"
#include "phinfer/pipeline.h"
#include "test_util.h"

namespace phinfer {
namespace {

const std::filesystem::path& tiny_model() {
  static const std::filesystem::path p = test::shared_path("models/phi3-tiny-mha");
  return p;
}

const Pipeline& pipeline() {
  static const Pipeline p = Pipeline::load(tiny_model());
  return p;
}

// `depth` nested arrays, as text (nlohmann would recurse to dump it).
std::string nested_arrays(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// A conversation file whose second message has a field nested `depth` levels.
std::string conversation_with_deep_field(size_t depth) {
  return R"([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "deep": )" +
         nested_arrays(depth) + "}]";
}

TEST(HostileChatLoad, DeeplyNestedFieldIsRefusedBeforeAnyCopy) {
  ChatSession chat(pipeline());
  const nlohmann::json good = nlohmann::json::parse(R"([{"role": "user", "content": "hello"}])");
  chat.load_json(good);
  for (size_t depth : {size_t{1000000}, size_t{255}}) {
    SCOPED_TRACE(depth);
    const nlohmann::json deep = nlohmann::json::parse(conversation_with_deep_field(depth));
    try {
      chat.load_json(deep);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("message 1: nested more than 255 levels"), std::string::npos) << e.what();
    }
    EXPECT_EQ(chat.to_json(), good) << "a failed load must leave the conversation as it was";
  }
  // At the limit it loads and renders (the chat template accepts the same nesting).
  chat.load_json(nlohmann::json::parse(conversation_with_deep_field(254)));
  EXPECT_NO_THROW(pipeline().render_chat(chat.messages(), true));
}

TEST(HostileChatLoad, DeepExtraFieldsAreRefusedByTheTemplate) {
  ChatTemplate templ("{% for m in messages %}{{ m.content }}{% endfor %}");
  std::vector<ChatMessage> messages{{"user", "hi"}};  // filled in place: copying a deep value would recurse
  messages[0].extra = nlohmann::json::parse(R"({"deep": )" + nested_arrays(1000000) + "}");
  try {
    templ.render(messages, false, "", "");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("chat message 0: extra fields nested more than"), std::string::npos)
        << e.what();
  }
}

using test::read_file;


// `phinfer chat` with piped commands; `timeout` turns a hang (a FIFO opened for reading) into a
// failure instead of a stuck test.
TEST(HostileChatLoad, CliLoadAndSaveRefuseHostileTargetsAndTheChatGoesOn) {
  const auto dir = test::temp_dir("hostile_chat_load");
  const auto fifo = dir / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::filesystem::create_directory(dir / "folder");
  std::ofstream(dir / "deep.json") << conversation_with_deep_field(1000000);
  std::ofstream(dir / "kept.json") << "old contents";
  const std::string input = "Hello there\n"
                            "/load " + (dir / "folder").string() + "\n" +
                            "/load " + fifo.string() + "\n" +
                            "/load " + (dir / "deep.json").string() + "\n" +
                            "/save " + (dir / "missing" / "x.json").string() + "\n" +
                            "/save " + fifo.string() + "\n" +
                            "/save " + (dir / "folder").string() + "\n" +
                            "/stats\n" +
                            "/save " + (dir / "kept.json").string() + "\n";
  std::ofstream(dir / "in") << input;
  const std::string cmd = "timeout 60 " + std::string(PHINFER_CLI_PATH) + " chat -m " + test::shell_quote(tiny_model().string()) +
                          " --max-new-tokens 4 <" + test::shell_quote((dir / "in").string()) + " >/dev/null 2>" +
                          test::shell_quote((dir / "err").string());
  const int status = std::system(cmd.c_str());
  const std::string err = read_file(dir / "err");
  ASSERT_TRUE(WIFEXITED(status)) << err;
  ASSERT_EQ(WEXITSTATUS(status), 0) << err;
  for (const char* expected :
       {"folder: not a regular file", "fifo: not a regular file", "deep.json: message 1: nested more than",
        "x.json: the folder", "does not exist", "fifo: exists and is not a regular file",
        "folder: exists and is not a regular file", "[2 messages", "[saved 2 messages"})
    EXPECT_NE(err.find(expected), std::string::npos) << "lacks \"" << expected << "\": " << err;
  // The save replaced the file whole and left no temporary file behind.
  const nlohmann::json saved = nlohmann::json::parse(read_file(dir / "kept.json"));
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved[0]["content"], "Hello there");
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
    ++entries;
  }
  EXPECT_EQ(entries, 6u);  // fifo, folder, deep.json, kept.json, in, err
  struct stat st {};
  ASSERT_EQ(::stat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

}  // namespace
}  // namespace phinfer
