// Valid and hostile input files for the hardening and mutation tests: IDX and gzip bytes (including a gzip bomb made
// on the fly), raw safetensors files, deeply nested JSON, a tiny ViT checkpoint, CIFAR records, ListOps TSV and
// Pathfinder metadata text.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mixgrad::testing {

// IDX bytes: magic 00 00 type ndim, big-endian dims, then `payload`.
std::vector<uint8_t> idx_file(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& payload,
                              uint8_t type = 0x08);
// One gzip member holding `bytes`.
std::vector<uint8_t> gzip_bytes(const std::vector<uint8_t>& bytes);
// One gzip member holding `prefix` followed by `zeros` zero bytes, compressed as they stream (never held whole):
// a small file that inflates to far more than its header announces.
std::vector<uint8_t> gzip_bomb(const std::vector<uint8_t>& prefix, uint64_t zeros);

// A safetensors file: 8-byte little-endian length of `header` (or `length` when given), header, data.
std::vector<uint8_t> safetensors_file(const std::string& header, const std::vector<uint8_t>& data,
                                      uint64_t length = UINT64_MAX);
// `depth` nested JSON arrays: "[[[...]]]".
std::string nested_json(size_t depth);

// The bytes of a tiny ViT checkpoint (tiny_vit_config(), with its metadata and the normalisation `vit eval` and
// `predict` read) and of a tiny LRA one.
std::vector<uint8_t> tiny_vit_checkpoint();
std::vector<uint8_t> tiny_lra_checkpoint();

// `n` CIFAR-10 records (label i % 10, pixels (i + k) % 256).
std::vector<uint8_t> cifar10_records(int n);
// A ListOps TSV file: header and three rows.
std::string listops_tsv_text();
// Pathfinder metadata lines for imgs/0/sample_0.png (label 1) and one more line.
std::string pathfinder_metadata_text();

std::vector<uint8_t> as_bytes(const std::string& s);

}  // namespace mixgrad::testing
