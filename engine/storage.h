// A reference-counted block of device memory; tensors are views (offset + shape) onto one.
#pragma once
#include <cstddef>
#include <memory>

#include "engine/allocator.h"

namespace mixgrad {

class Storage {
 public:
  Storage(Device device, size_t nbytes) : device_(device), nbytes_(nbytes), data_(device_allocate(device, nbytes)) {}
  ~Storage() { device_free(device_, data_, nbytes_); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  Device device_;
  size_t nbytes_;
  void* data_;
};

}  // namespace mixgrad
