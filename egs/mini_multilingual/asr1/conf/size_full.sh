# --full true: every Stage-2 method and both encoder regimes (each regime trains its own Stage 1 and 2).
# Budget: 3 h on an idle 2-core CPU.
corpus_config=conf/corpus.yaml
llm_opts=""
encoder_opts=""
warm_opts=""           # conf defaults of zipasr.mini.warm_projector: 300 steps of 16000 mel frames
stage1_steps=900        # as the default: Stage 1 keeps the encoder frozen, so 900 steps cost what 500 did
stage2_steps=120
methods="vanilla independent flylora zipper_static zipper_hard zipper_soft zipper_soft_initb"
regimes="full chunked"
decode_opts=""           # conf/decode.yaml, as the default (beam 8, lexicon, joint CTC/attention): greedy decoding
                         # without the CTC head gave dev_target CER 41.3 / 87.3 % (high / low) against 6.0 / 55.8
                         # with the default's Zipper-Soft model (NOTES.md, "Budgets")
# Sibling methods (docs/sibling_methods.md), built from stage2_independent after Stage 2 (stage 7):
# lors (LoRS-Merging), experts_fusion (LoRA experts fused per language), experts_kd (experts distilled
# into one Vanilla-LoRA). They need "independent" in ${methods}.
sibling_methods="lors experts_fusion experts_kd"
sibling_steps=120
lid_opts="--max_per_language 200"
agnostic_methods="zipper_soft"   # each language-agnostic decode of test_all costs ~4 min per regime
stage1_target_decode=true   # the Stage-1 model on test_all (the tables' Stage-1 row)
