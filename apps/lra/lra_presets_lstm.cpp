// The LSTM presets (specs/lra.md §6.5). No LSTM configuration or result is published for LRA, so both are ours:
// "paper" = the MEGA repository's LSTM run with the task's MEGA command line (§7.2: layers, width d, hidden = the
// FFN width, cls_out, dropout, pixel normalisation and the whole recipe), masked-mean pooling ("mp");
// "mini" = a 1-layer bidirectional LSTM (d 64, hidden 64 per direction) on the transformer mini preset's data and
// epochs.
#include <fmt/format.h>

#include "apps/lra/lra_family_presets.h"

namespace mixgrad::app::lra {

namespace {

LraPreset lstm_paper(const TaskInfo& t, LraPreset base) {
  LraPreset p = mega_preset(t, "paper", "gated", std::move(base));
  models::LraConfig& m = p.model;
  m.lstm_hidden = m.mlp_dim;  // MEGA's encoder_ffn_embed_dim
  m.lstm_pool = "mean";
  m.hidden_dropout = 0;  // act_dropout is 0 in every MEGA LRA command
  m.pool = "mean";
  p.note = fmt::format(
      "ours (no LSTM configuration is published, specs/lra.md §6.5): the MEGA repository's LSTM with the task's MEGA "
      "command line (§7.2): {} layer(s), d {}, hidden {} per direction, cls_out {}, dropout {}, masked-mean pooling, "
      "MEGA's recipe",
      m.depth, m.embed_dim, m.lstm_hidden, m.head_dim, m.dropout);
  return p;
}

LraPreset lstm_mini(const TaskInfo& t, LraPreset p) {
  models::LraConfig& m = p.model;
  m.depth = 1, m.embed_dim = 64, m.lstm_hidden = 64, m.mlp_dim = 128, m.head_dim = 128;
  m.lstm_pool = "mean", m.pool = "mean", m.pos = "none", m.hidden_dropout = 0, m.attn_dropout = 0;
  m.dropout = t.pixels ? 0.0 : 0.1;
  p.recipe.beta2 = 0.98, p.recipe.eps = 1e-8, p.recipe.clip_norm = 1.0;
  p.note = fmt::format("{}; ours: a 1-layer bidirectional LSTM (d 64, hidden 64 per direction, masked-mean pooling)",
                       p.note);
  return p;
}

}  // namespace

LraPreset lstm_preset(const TaskInfo& t, const std::string& preset, const std::string& mixer, LraPreset base) {
  (void)mixer;  // the LSTM takes no mixer ("none")
  return preset == "paper" ? lstm_paper(t, std::move(base)) : lstm_mini(t, std::move(base));
}

}  // namespace mixgrad::app::lra
