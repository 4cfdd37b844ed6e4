#pragma once
// One exception type for everything a user can act on: the message names the file, tensor or field,
// what was expected and what was found.
#include <stdexcept>
#include <string>

#include "phinfer/export.h"

namespace phinfer {

class PHINFER_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace phinfer
