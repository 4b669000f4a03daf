# --quick true: the same stages on a quarter of the corpus with fewer steps. Budget: 15 min on an idle 2-core CPU.
# A pipeline check at a realistic data size, not a smaller experiment: 120 LLM steps cannot form the copy
# skill, so Stage 1 does not align and the models do not recognise speech (NOTES.md, "Budgets and what was measured").
corpus_config=conf/corpus_quick.yaml
llm_opts="--set steps=120"
encoder_opts="--set steps=120"
warm_opts="--set steps=50"
stage1_steps=80
stage2_steps=10
methods="vanilla independent zipper_soft zipper_soft_initb"
regimes="full"
decode_opts="--batch_size 64 --beam 1 --ctc_weight 0"   # greedy, fewer and larger batches: every quick decode
                         # runs to the max_len_ratio bound, and the quick models say nothing about the methods
# Sibling methods (docs/sibling_methods.md): run by --full true (and lors by --micro true).
sibling_methods=""
sibling_steps=40
lid_opts="--max_per_language 100"
agnostic_methods="zipper_soft"   # each costs as much as a decode
stage1_target_decode=true   # the Stage-1 model on test_all (the tables' Stage-1 row)
