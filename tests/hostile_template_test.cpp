// Hostile chat templates: work that the step limit does not bound (each step copying or scanning
// megabytes), values that would reference themselves, and nesting deep enough to exhaust the
// stack. Each ends in a phinfer::Error that says why, quickly; none crashes, hangs or leaks.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "phinfer/chat_template.h"
#include "phinfer/error.h"

namespace phinfer {
namespace {

using Clock = std::chrono::steady_clock;

const std::vector<ChatMessage> kMessages = {{"user", "hello"}};

// Rendering must fail with a phinfer::Error holding `needle`, within a few seconds.
void expect_render_error(const std::string& source, const std::string& needle) {
  SCOPED_TRACE(source.substr(0, 200));
  const auto start = Clock::now();
  try {
    ChatTemplate(source).render(kMessages, true, "", "");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 60.0);  // was hours
}

// 4 MB, built once (well within the size of one value).
const std::string kBig = "{% set big = 'x' * 4000000 %}";
const std::string kManySteps = "{% for i in range(100000) %}";
const std::string kWorkError = "template did too much work";

TEST(HostileTemplate, WorkIsBoundedByBytesNotOnlySteps) {
  // Each used to run 100k steps of 4-8 MB each: many minutes, or hours with bigger strings.
  expect_render_error(kBig + kManySteps + "{% set t = big + big %}{% endfor %}", kWorkError);
  expect_render_error(kBig + kManySteps + "{% set t = big ~ 'y' %}{% endfor %}", kWorkError);
  expect_render_error(kBig + kManySteps + "{% set t = [big, big] | join %}{% endfor %}", kWorkError);
  expect_render_error(kBig + kManySteps + "{% set t = big | replace('q', 'y') %}{% endfor %}", kWorkError);
  expect_render_error(kBig + kManySteps + "{% set t = [big] * 2 %}{% endfor %}", kWorkError);
  expect_render_error(kBig + kManySteps + "{% set t = big[1:] %}{% endfor %}", kWorkError);
  // Scans, not copies: length decodes the string, `in` and == read it, a method binds it.
  expect_render_error(kBig + kManySteps + "{% set t = big | length %}{% endfor %}", kWorkError);
  expect_render_error(kBig + kManySteps + "{% set t = 'y' in big %}{% endfor %}", kWorkError);
  expect_render_error(kBig + kManySteps + "{% set t = big == big %}{% endfor %}", kWorkError);
  expect_render_error(kBig + kManySteps + "{% set t = big.startswith('y') %}{% endfor %}", kWorkError);
  // A list grown by copying in every step.
  expect_render_error("{% set ns = namespace(l=[]) %}" + kManySteps + "{% set ns.l = ns.l + [i] %}{% endfor %}",
                      kWorkError);
  // Output: each piece is counted, and the total is bounded.
  expect_render_error(kBig + kManySteps + "{{ big }}{% endfor %}", "value too large");
}

TEST(HostileTemplate, PassingBigValuesAroundIsFree) {
  // A variable lookup or a loop over references does not copy: these finish in milliseconds.
  const auto start = Clock::now();
  const std::string out = ChatTemplate(kBig + "{% set ns = namespace(n=0) %}" + kManySteps +
                                       "{% if big %}{% set other = big %}{% set ns.n = ns.n + 1 %}{% endif %}"
                                       "{% endfor %}{{ ns.n }}")
                              .render(kMessages, true, "", "");
  EXPECT_EQ(out, "100000");
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 10.0);
}

TEST(HostileTemplate, ValuesCannotReferenceThemselves) {
  const std::string cycle_error = "template values never hold namespaces or loop objects";
  expect_render_error("{% set ns = namespace(a=1) %}{% set ns.self = ns %}", cycle_error);
  expect_render_error("{% set a = namespace() %}{% set b = namespace(x=a) %}{% set a.y = b %}", cycle_error);
  expect_render_error("{% set a = namespace() %}{% set b = namespace({'x': 1}) %}{% set b.a = a %}", cycle_error);
  expect_render_error("{% set ns = namespace() %}{% for x in [1] %}{% set ns.l = loop %}{% endfor %}", cycle_error);
  // Lists and dicts are values: "containing itself" is a copy, so nesting grows until its limit.
  expect_render_error("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}{% endfor %}",
                      "nested too deeply");
  expect_render_error("{% set ns = namespace(d={}) %}{% for i in range(1000) %}{% set ns.d = {'d': ns.d} %}"
                      "{% endfor %}",
                      "nested too deeply");
  // Doubling by self-reference: stopped by the size of one value, not by memory.
  expect_render_error("{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}",
                      "value too large");
  // Functions and plain data in a namespace stay allowed.
  EXPECT_EQ(ChatTemplate("{% set ns = namespace(f=range, l=[1, 2]) %}{% set ns.m = ns.l + [3] %}{{ ns.f(2) }}{{ ns.m }}")
                .render(kMessages, true, "", ""),
            "[0, 1][1, 2, 3]");
}

std::string repeated(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

TEST(HostileTemplate, DeepNestingIsBounded) {
  const size_t n = 100000;
  auto parse_error = [](const std::string& source, const std::string& needle) {
    try {
      ChatTemplate t(source);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  parse_error("{{ " + repeated("(", n) + "1" + repeated(")", n) + " }}", "nested too deeply");
  parse_error("{{ " + repeated("[", n) + repeated("]", n) + " }}", "nested too deeply");
  parse_error("{{ " + repeated("-", n) + "1 }}", "nested too deeply");
  parse_error("{{ 1" + repeated(" + 1", n) + " }}", "nested too deeply");
  parse_error("{{ x" + repeated(".a", n) + " }}", "nested too deeply");
  parse_error("{{ x" + repeated("|e", n) + " }}", "nested too deeply");
  parse_error(repeated("{% if true %}", n) + repeated("{% endif %}", n), "nested too deeply");
  parse_error(repeated("{% for x in [1] %}", n) + repeated("{% endfor %}", n), "nested too deeply");
  parse_error(repeated("{% macro m() %}", n) + repeated("{% endmacro %}", n), "nested too deeply");
  // Recursion at render time: a macro calling itself, directly or through another.
  expect_render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "macro calls nested deeper than");
  // A default argument that calls the macro again recursed before the call counted (found by a
  // sanitizer fuzz run: a stack overflow under ASan).
  expect_render_error("{%- macro m(a, b=m(None)) -%}{% endmacro -%}{{ m(1) }}", "macro calls nested deeper than");
  // Each call nests 150 expressions more: the bound on evaluation frames stops it first.
  expect_render_error("{% macro f(n) %}{{ f(" + repeated("-", 150) + "n) }}{% endmacro %}{{ f(0) }}",
                      "nested deeper than");  // evaluation frames or macro calls, whichever bound comes first
  expect_render_error("{% macro f() %}{{ g() }}{% endmacro %}{% macro g() %}{{ f() }}{% endmacro %}{{ f() }}",
                      "macro calls nested deeper than");
}

}  // namespace
}  // namespace phinfer
