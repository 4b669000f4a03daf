"""The sibling methods of the two related papers, comparable with Zipper-LoRA on the same data:

- `lors`: LoRS-Merging (low-rank + sparse pruned task vectors, merged by task arithmetic), method "lors";
- `experts`: LoRA language experts, fused per language ("experts_fusion") or distilled into one
  Vanilla-LoRA ("experts_kd");
- `lid_classifier`: language-agnostic inference for every method (`predict_languages`), with zipasr's
  LID classifier or Whisper's language head, and the LID accuracy report;
- `add_language`: a new language for a trained Zipper-LoRA model, the others left bit-identical.

Commands: python -m zipasr.bin.{lors_merge,experts,add_language,train_lid} --help.
Details and the choices the papers leave open: docs/sibling_methods.md.
"""
