// Line and tab splitting for the LRA text readers (ListOps and AAN TSV files): LF or CRLF line ends, no quoting.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace mixgrad::data {

// Streams the lines of a file (the release files are hundreds of MB, so they are never held whole): calls
// fn(line_number, line) with numbers from 1, lines split at '\n' with one trailing '\r' removed. A last line
// without '\n' is a line; the empty piece after a final '\n' is not. Returns the number of lines (0 = empty file).
// Throws file_error when the file cannot be opened or read, and when it is not a regular file (checked first, so a
// FIFO never blocks).
int64_t for_each_file_line(const std::filesystem::path& path, const std::function<void(int64_t, std::string_view)>& fn);

// The fields of `line` between single tabs (n tabs give n + 1 fields, empty ones included); `fields` is reused.
void split_tabs(std::string_view line, std::vector<std::string_view>& fields);

// `field` in double quotes for an error message, cut to 40 characters so a bad line cannot flood the message.
std::string quoted_field(std::string_view field);

}  // namespace mixgrad::data
