// Whole-file reads for the dataset readers (idx.cpp, cifar.cpp, ...), with errors that name the file.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/error.h"

namespace mixgrad::data {

// mixgrad::Error "<path>: <what>".
Error file_error(const std::filesystem::path& path, const std::string& what);

// The whole file; throws file_error when it cannot be opened, sized or read, and when it is not a regular file (a
// FIFO, directory or device: refused at once, never read or waited on; engine/file_io.h).
std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path);

}  // namespace mixgrad::data
