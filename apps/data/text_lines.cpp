// Line streaming, tab splitting and quoting for the LRA text readers (see text_lines.h).
#include "apps/data/text_lines.h"

#include <fstream>

#include "apps/data/file_bytes.h"
#include "engine/file_io.h"

namespace mixgrad::data {

int64_t for_each_file_line(const std::filesystem::path& path,
                           const std::function<void(int64_t, std::string_view)>& fn) {
  io::require_regular_file(path);  // before opening: a FIFO would block std::ifstream
  std::ifstream in(path, std::ios::binary);
  if (!in) throw file_error(path, "cannot open file for reading");
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    std::string_view view(line);
    if (!view.empty() && view.back() == '\r') view.remove_suffix(1);
    fn(++number, view);
  }
  if (in.bad()) throw file_error(path, "read error after line " + std::to_string(number));
  return number;
}

void split_tabs(std::string_view line, std::vector<std::string_view>& fields) {
  fields.clear();
  while (true) {
    const size_t tab = line.find('\t');
    fields.push_back(line.substr(0, tab));
    if (tab == std::string_view::npos) return;
    line.remove_prefix(tab + 1);
  }
}

std::string quoted_field(std::string_view field) {
  std::string out = "\"";  // appended, not `"\"" + ...`: GCC 12 -O3 misreports that as -Wrestrict
  out += field.substr(0, 40);
  out += field.size() > 40 ? "...\"" : "\"";
  return out;
}

}  // namespace mixgrad::data
