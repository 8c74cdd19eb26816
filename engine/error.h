// The engine's exception type and the check macro every op uses to reject bad input with a clear message.
#pragma once
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>

namespace mixgrad {

// Thrown for invalid user input (shapes, dtypes, devices, files); the message names the op and what was expected.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace mixgrad

// MIXGRAD_CHECK(cond, "fmt string", args...): throws mixgrad::Error with the formatted message when cond is false.
#define MIXGRAD_CHECK(cond, ...)                                      \
  do {                                                                \
    if (!(cond)) throw ::mixgrad::Error(::fmt::format(__VA_ARGS__)); \
  } while (0)
