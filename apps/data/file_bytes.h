// Whole-file reads for the dataset readers (idx.cpp, cifar.cpp), with errors that name the file.
#pragma once
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace mixgrad::data {

// std::runtime_error "<path>: <what>".
std::runtime_error file_error(const std::filesystem::path& path, const std::string& what);

// The whole file; throws file_error when it cannot be opened, sized or read.
std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path);

}  // namespace mixgrad::data
